"""``keyhall serve`` on a database that needs migrating: the migration runs in a short-lived child
process (``keyhall.serving.migrate_apart``), so the server keeps none of Alembic and its scripts,
and a failed migration stops the start-up with a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import sys
from keyhall.runtime import Runtime
from keyhall.serving import migrate_apart
from keyhall.settings import load_settings

database = Runtime.build(load_settings()).database
before = database.at_schema_head()
migrate_apart(database)
loaded = sorted({name.split(".")[0] for name in sys.modules if name == "alembic" or name.startswith("alembic.")})
print(before, database.at_schema_head(), loaded)
"""


def _run(data_dir: Path, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHALL_")}
    env["KEYHALL_DATA_DIR"] = str(data_dir)
    if database_url:
        env["KEYHALL_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def test_a_start_that_migrates_keeps_no_migration_code(tmp_path: Path) -> None:
    done = _run(tmp_path / "data")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "[]"]
    again = _run(tmp_path / "data")  # up to date: nothing to do, nothing forked
    assert again.stdout.split() == ["True", "True", "[]"]


def test_a_failed_migration_stops_the_start(tmp_path: Path) -> None:
    database = tmp_path / "not-a-database.sqlite"
    database.write_bytes(b"this is not SQLite" * 100)
    done = _run(tmp_path / "data", f"sqlite:///{database}")
    assert done.returncode != 0
    assert "the database migration failed" in done.stderr
