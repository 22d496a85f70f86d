"""Test databases: a fresh SQLite file, or a fresh PostgreSQL database created and dropped per run.

``KEYHALL_TEST_DATABASE_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``) selects
PostgreSQL: the suite creates its own databases on that server and drops them afterwards, so runs
cannot collide. Without it, SQLite files in a temporary directory are used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.peers import peer_unavailable


def server_url() -> str | None:
    return os.environ.get("KEYHALL_TEST_DATABASE_URL") or None


@contextmanager
def fresh_database(tmp_dir: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it afterwards."""
    base = server_url()
    if base is None:
        yield f"sqlite:///{tmp_dir / f'keyhall-{uuid.uuid4().hex[:8]}.db'}"
        return
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"keyhall_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        peer_unavailable(f"PostgreSQL at {url.render_as_string(hide_password=True)}: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
