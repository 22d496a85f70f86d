"""Alembic migrations (keyhall.storage.migrate) on a fresh SQLite or PostgreSQL database.

The models are the single description of the schema; the migrations must build exactly that
schema, in one linear chain of files named by date and slug.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from pprint import pformat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from sqlalchemy import Engine, inspect

from keyhall.security.secrets import SecretBox
from keyhall.storage import migrate
from keyhall.storage.database import SCHEMA_HEAD, Database
from keyhall.storage.engine import build_engine
from keyhall.storage.models import Base
from tests.support.database import fresh_database

VERSIONS = migrate.MIGRATIONS / "versions"
FILE_NAME = re.compile(r"^(?P<date>\d{4}_\d{2}_\d{2})_(?P<slug>[a-z0-9]+(?:_[a-z0-9]+)*)\.py$")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with fresh_database(tmp_path) as url:
        eng = build_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff: list[object] = compare_metadata(context, Base.metadata)
        return diff


def migration_files() -> list[Path]:
    return sorted(p for p in VERSIONS.glob("*.py") if p.name != "__init__.py")


def test_upgrade_from_empty_reaches_head(engine: Engine) -> None:
    assert migrate.current_revision(engine) is None
    assert migrate.is_up_to_date(engine) is False

    migrate.upgrade(engine)

    assert migrate.head_revision() is not None
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.is_up_to_date(engine) is True


def test_every_model_table_exists_after_upgrade(engine: Engine) -> None:
    migrate.upgrade(engine)
    expected = set(Base.metadata.tables)
    assert expected  # the models registered themselves
    missing = expected - table_names(engine)
    assert not missing, f"tables missing after upgrade: {sorted(missing)}"


def test_models_match_the_migrations(engine: Engine) -> None:
    migrate.upgrade(engine)
    diff = schema_diff(engine)
    assert diff == [], "models and migrations differ:\n" + pformat(diff)


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    assert schema_diff(engine) == []


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")

    assert migrate.current_revision(engine) is None
    assert not (set(Base.metadata.tables) & table_names(engine))

    migrate.upgrade(engine)
    assert migrate.is_up_to_date(engine)
    assert set(Base.metadata.tables) <= table_names(engine)
    diff = schema_diff(engine)
    assert diff == [], "models and migrations differ after downgrade/upgrade:\n" + pformat(diff)


def test_migration_files_are_named_by_date_and_slug() -> None:
    files = migration_files()
    assert files, f"no migrations in {VERSIONS}"
    for path in files:
        match = FILE_NAME.match(path.name)
        assert match, f"{path.name} is not named YYYY_MM_DD_slug.py"
        datetime.strptime(match["date"], "%Y_%m_%d")  # a real calendar date


def test_revisions_form_one_linear_chain() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    heads = script.get_heads()
    bases = script.get_bases()
    assert len(heads) == 1, f"more than one head: {heads}"
    assert len(bases) == 1, f"more than one base: {bases}"

    chain = list(script.walk_revisions("base", "heads"))  # newest first
    for revision in chain:
        assert not isinstance(revision.down_revision, tuple | list), f"{revision.revision} is a merge"
        assert not revision.branch_labels, f"{revision.revision} opens a branch"
    assert chain[0].revision == heads[0]
    assert chain[-1].revision == bases[0]
    for newer, older in itertools.pairwise(chain):
        assert newer.down_revision == older.revision
    assert chain[-1].down_revision is None

    # Every file is one step of the chain, and every step is a file.
    assert sorted(Path(str(r.path)).name for r in chain) == [p.name for p in migration_files()]


def test_the_schema_head_known_without_alembic_is_the_scripts_head(engine: Engine) -> None:
    assert migrate.head_revision() == SCHEMA_HEAD
    url = engine.url.render_as_string(hide_password=False)
    database = Database(url, SecretBox([Fernet.generate_key().decode()]))
    try:
        assert database.at_schema_head() is False  # a new database: no version table
        migrate.upgrade(engine, "20261207_0018")
        assert database.at_schema_head() is False  # an older schema
        database.migrate()
        assert database.at_schema_head() is True
        assert migrate.current_revision(engine) == SCHEMA_HEAD
    finally:
        database.engine.dispose()


def test_a_server_on_an_up_to_date_database_starts_without_loading_alembic(engine: Engine) -> None:
    migrate.upgrade(engine)
    url = engine.url.render_as_string(hide_password=False)
    program = ("import sys\n"
               "from cryptography.fernet import Fernet\n"
               "from keyhall.security.secrets import SecretBox\n"
               "from keyhall.storage.database import Database\n"
               f"database = Database({url!r}, SecretBox([Fernet.generate_key().decode()]))\n"
               "database.migrate()\n"
               "print(sorted(name for name in sys.modules if name.split('.')[0] == 'alembic'))\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
