"""A write handler's own rendering (``api.native.rendered.json_response``) sends what FastAPI would
have sent for the route's response model: the model's fields only, by alias, checked."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field, ValidationError

from keyhall.api.responses import json_response


class Out(BaseModel):
    name: str
    kind: str = Field(serialization_alias="type")
    note: str | None = None


DATA = {"name": "acme", "kind": "oidc", "secret_hash": "not in the model"}


def test_the_body_is_the_models_fields_by_alias_as_fastapi_renders_them() -> None:
    app = FastAPI()

    @app.post("/by-fastapi", status_code=201, response_model=Out)
    def by_fastapi() -> dict[str, str]:
        return DATA

    @app.post("/by-handler", status_code=201, response_model=Out)
    def by_handler() -> Response:
        return json_response(Out, DATA, status_code=201, headers={"ETag": '"3"'})

    client = TestClient(app)
    fastapi, handler = client.post("/by-fastapi"), client.post("/by-handler")
    assert handler.status_code == fastapi.status_code == 201
    assert handler.content == fastapi.content
    assert json.loads(handler.content) == {"name": "acme", "type": "oidc", "note": None}
    assert handler.headers["content-type"] == "application/json"
    assert handler.headers["etag"] == '"3"'


def test_data_that_does_not_fit_the_model_is_refused_not_sent() -> None:
    with pytest.raises(ValidationError):
        json_response(Out, {"name": "acme"})
