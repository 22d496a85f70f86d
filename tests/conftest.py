from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from keyhall.app import create_app
from keyhall.runtime import Runtime
from tests.support.api import Keyhall
from tests.support.database import fresh_database
from tests.support.settings import make_settings

pytest_plugins = [
    "tests.support.oidc_idp",
    "tests.support.static_http",
    "tests.support.live",
    "tests.support.browser",
    "tests.support.saml_idp",
    "tests.support.slapd",
    "tests.support.dns_server",
]


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
