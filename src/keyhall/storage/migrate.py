"""Schema migrations, run from code: ``upgrade`` brings a database to the newest revision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Any | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def unbounded(connection: Any) -> Iterator[None]:
    """``keyhall.storage.postgres.unbounded`` on PostgreSQL; nothing to lift on SQLite."""
    if connection.dialect.name != "postgresql":
        yield
        return
    # Imported here: psycopg (some 9 MB) is loaded only for PostgreSQL.
    from keyhall.storage import postgres

    with postgres.unbounded(connection):
        yield


MIGRATION_LOCK = 7_114_229_001  # any constant: instances starting together migrate one at a time


def upgrade(engine: Engine, revision: str = "head") -> None:
    # A migration (or the wait for another instance's) may take longer than any request should.
    with engine.begin() as connection, unbounded(connection):
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection, unbounded(connection):
        command.downgrade(alembic_config(connection), revision)


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config())
    head: str | None = script.get_current_head()
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        rev: str | None = MigrationContext.configure(connection).get_current_revision()
        return rev


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
