"""Dispatch by path shape answers exactly what the app's whole route list would."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Router

from keyhall.api import routing
from keyhall.api.routing import PrefixDispatch, first_segment, install_prefix_dispatch


def build() -> FastAPI:
    app = FastAPI()
    api = APIRouter(prefix="/v1/things")

    @api.get("/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"api": thing_id}

    @api.delete("/{thing_id}")
    async def delete_thing(thing_id: str) -> dict[str, str]:
        return {"deleted": thing_id}

    pages = APIRouter()

    @pages.get("/login", name="login")
    async def login() -> dict[str, str]:
        return {"page": "login"}

    @pages.get("/")
    async def root() -> dict[str, str]:
        return {"page": "root"}

    anything = APIRouter()

    @anything.get("/{first}/catch")
    async def catch(first: str) -> dict[str, str]:
        return {"catch": first}

    app.include_router(pages)
    app.include_router(api)
    app.include_router(anything)
    app.mount("/mounted/v2", Router())
    install_prefix_dispatch(app)
    return app


def test_first_segment() -> None:
    assert first_segment("/v1/organizations") == "v1"
    assert first_segment("/") == ""
    assert first_segment("/login") == "login"


def test_each_request_reaches_the_route_the_whole_list_would() -> None:
    client = TestClient(build())
    assert client.get("/v1/things/a").json() == {"api": "a"}
    assert client.get("/login").json() == {"page": "login"}
    assert client.get("/").json() == {"page": "root"}
    # a route whose first segment is a parameter is tried for every first segment, known or not
    assert client.get("/v1/catch").json() == {"catch": "v1"}
    assert client.get("/elsewhere/catch").json() == {"catch": "elsewhere"}
    assert client.get("/nowhere").status_code == 404
    assert client.post("/v1/things/a").status_code == 405  # the partial match is kept
    assert client.get("/login/", follow_redirects=False).status_code == 307  # and the slash redirect


def test_routes_added_after_the_first_request_are_dispatched() -> None:
    app = build()
    client = TestClient(app)
    assert client.get("/late").status_code == 404

    async def late() -> dict[str, str]:
        return {"late": "yes"}

    app.add_api_route("/late", late)
    assert client.get("/late").json() == {"late": "yes"}


def test_the_apps_own_routes_and_url_for_are_unchanged() -> None:
    app = build()
    assert any(isinstance(route, Mount) for route in app.routes)
    assert "/v1/things/{thing_id}" in app.openapi()["paths"]

    @app.get("/links")
    async def links(request: Request) -> dict[str, str]:
        return {"login": str(request.url_for("login"))}  # a route outside this request's segment

    assert TestClient(app).get("/links").json() == {"login": "http://testserver/login"}


def _dispatch(app: FastAPI) -> PrefixDispatch:
    dispatch = app.router.middleware_stack
    assert isinstance(dispatch, PrefixDispatch)
    return dispatch


def test_a_path_is_matched_only_against_the_routers_of_its_shape() -> None:
    app = build()
    client = TestClient(app)
    assert client.get("/v1/things/a").status_code == 200  # builds the app's middleware stack
    routes = _dispatch(app).route_for("/v1/things/a").routes
    assert len(routes) == 1  # the things router alone: no page, no catch-all of another shape, no mount
    assert _dispatch(app).route_for("/v1/things/a/").routes == routes  # the slash redirect's routes too
    assert len(_dispatch(app).route_for("/v1/catch").routes) == 1  # the catch-all alone


def test_segments_named_like_literals_mixed_segments_and_mounts_still_match() -> None:
    app = build()
    files = APIRouter()

    @files.get("/files/{name}.xml")
    async def xml_file(name: str) -> dict[str, str]:
        return {"xml": name}

    app.include_router(files)
    mounted = Router()
    mounted.add_route("/inside", lambda request: PlainTextResponse("inside"))
    app.mount("/mount/here", mounted)
    client = TestClient(app)
    assert client.get("/v1/things/login").json() == {"api": "login"}  # a parameter that is also a literal
    assert client.get("/login/catch").json() == {"catch": "login"}
    assert client.get("/files/report.xml").json() == {"xml": "report"}
    assert client.get("/mount/here/inside").text == "inside"
    assert client.get("/mount/elsewhere/inside").status_code == 404


def test_past_the_shape_limit_paths_are_matched_by_first_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "MAX_SHAPES", 2)
    client = TestClient(build())
    for path in ("/a/b/c/d", "/e/f/g/h/i", "/j/k/l/m/n/o"):  # made-up shapes fill the table
        assert client.get(path).status_code == 404
    assert client.get("/v1/things/a").json() == {"api": "a"}
    assert client.get("/v1/catch").json() == {"catch": "v1"}
    assert client.get("/login").json() == {"page": "login"}
    assert client.get("/").json() == {"page": "root"}
    assert client.post("/v1/things/a").status_code == 405
    assert client.get("/login/", follow_redirects=False).status_code == 307
