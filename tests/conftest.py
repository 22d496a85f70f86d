from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.runtime import Runtime
from keyhall.security.secrets import new_key
from keyhall.settings import Settings
from tests.support.api import Keyhall
from tests.support.database import fresh_database

pytest_plugins = ["tests.support.oidc_idp", "tests.support.static_http"]


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_keys": new_key(),
        "allow_insecure_idp_urls": True,
        "public_url": "http://keyhall.test",
        "idp_timeout_seconds": 3.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Runtime]:
    settings = make_settings(tmp_path_factory.mktemp("data"), database_url)
    rt = Runtime.build(settings)
    rt.database.migrate()
    yield rt
    rt.database.dispose()


@pytest.fixture(scope="session")
def keyhall(runtime: Runtime) -> Iterator[Keyhall]:
    with TestClient(create_app(runtime.settings, runtime), raise_server_exceptions=False) as client:
        yield Keyhall(client, runtime)
