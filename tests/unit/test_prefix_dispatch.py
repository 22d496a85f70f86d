"""Dispatch by first path segment answers exactly what the app's whole route list would."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.routing import Mount, Router

from keyhall.api.routing import first_segment, install_prefix_dispatch


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
