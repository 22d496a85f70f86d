"""The request's unit of work ends after the handler, seeing its exception, as a ``yield`` dependency would."""

from __future__ import annotations

from types import SimpleNamespace, TracebackType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from keyhall.api.deps import UowDep
from keyhall.api.http import install_error_handlers
from keyhall.errors import Conflict


class StoredClash(Exception):
    """Stands for a database integrity error."""


class RecordingUnitOfWork:
    def __init__(self) -> None:
        self.ended_with: list[type[BaseException] | None] = []

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.ended_with.append(exc_type)
        if isinstance(exc, StoredClash):
            raise Conflict("the change clashes with stored data") from exc


class RecordingDatabase:
    def __init__(self, *, at_once: bool) -> None:
        self.at_once = at_once
        self.made: list[RecordingUnitOfWork] = []

    def unit_of_work(self, *, read_only: bool) -> RecordingUnitOfWork:
        self.made.append(RecordingUnitOfWork())
        return self.made[-1]

    def ends_at_once(self, uow: object) -> bool:
        return self.at_once


def build(database: RecordingDatabase) -> FastAPI:
    app = FastAPI()
    app.state.runtime = SimpleNamespace(database=database)
    install_error_handlers(app)

    @app.get("/fine")
    async def fine(uow: UowDep) -> dict[str, Any]:
        return {"ended_yet": bool(database.made[-1].ended_with)}

    @app.get("/clash")
    def clash(uow: UowDep) -> None:
        raise StoredClash

    return app


@pytest.mark.parametrize("at_once", [True, False])
def test_the_unit_of_work_ends_once_after_a_successful_handler(at_once: bool) -> None:
    database = RecordingDatabase(at_once=at_once)
    response = TestClient(build(database)).get("/fine")
    assert response.json() == {"ended_yet": False}
    assert [uow.ended_with for uow in database.made] == [[None]]


@pytest.mark.parametrize("at_once", [True, False])
def test_the_handlers_exception_reaches_the_unit_of_work_and_its_translation_is_answered(at_once: bool) -> None:
    database = RecordingDatabase(at_once=at_once)
    response = TestClient(build(database), raise_server_exceptions=False).get("/clash")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == Conflict.code
    assert [uow.ended_with for uow in database.made] == [[StoredClash]]
