"""A forged pagination cursor is a 400 naming ``cursor`` on every list that takes one, never a 500
(a naive timestamp used to reach the database and fail there)."""

from __future__ import annotations

import base64

import pytest

from tests.support.api import Keyhall, Tenant, auth


def b64(raw: bytes | str) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


FORGED = {
    "not base64": "!!!not-base64!!!",
    "not ASCII": "é-cursor",
    "too long": "A" * 1000,
    "not text": b64(b"\xff\xfe\xfa\x00"),
    "no separator": b64("just some words"),
    "JSON": b64('{"created_at": "2026-01-01T00:00:00+00:00", "id": "x"}'),
    "JSON list": b64("[1, 2, 3]"),
    "naive timestamp": b64("2026-01-01T00:00:00|00000000-0000-0000-0000-000000000000"),
    "number for a time": b64("12345|abc"),
    "date out of range": b64("0001-01-01T00:00:00+14:00|abc"),
    "empty id": b64("2026-01-01T00:00:00+00:00|"),
    "NUL in the id": b64("2026-01-01T00:00:00+00:00|a\x00b"),
    "id too long": b64("2026-01-01T00:00:00+00:00|" + "x" * 300),
}


@pytest.fixture(scope="module")
def tenant(keyhall: Keyhall) -> Tenant:
    return keyhall.tenant("Cursor Forgery")


def lists(keyhall: Keyhall, tenant: Tenant) -> dict[str, tuple[str, str]]:
    org = f"/v1/organizations/{tenant.id}"
    return {
        "organizations": ("/v1/organizations", keyhall.instance_token),
        "connections": (f"{org}/connections", tenant.viewer),
        "domains": (f"{org}/domains", tenant.viewer),
        "keys": (f"{org}/keys", tenant.owner),
        "audit-events": (f"{org}/audit-events", tenant.viewer),
        "users": (f"{org}/users", tenant.owner),
        "configurations dialect": ("/api/v1/sso/configurations", tenant.viewer),
    }


@pytest.mark.parametrize("name", sorted(FORGED))
def test_every_list_refuses_a_forged_cursor_with_400(keyhall: Keyhall, tenant: Tenant, name: str) -> None:
    for what, (path, token) in lists(keyhall, tenant).items():
        response = keyhall.client.get(path, params={"cursor": FORGED[name]}, headers=auth(token))
        assert response.status_code == 400, f"{what}: {response.status_code} {response.text}"
        assert "cursor" in response.text, what
        if path.startswith("/v1/"):
            assert response.json()["error"]["details"]["field"] == "cursor", what


def test_a_cursor_the_api_returned_still_pages(keyhall: Keyhall, tenant: Tenant) -> None:
    for name in ("Cursor Forgery A", "Cursor Forgery B"):  # two audited changes at least
        changed = keyhall.client.patch(f"/v1/organizations/{tenant.id}", json={"name": name},
                                       headers=auth(tenant.owner))
        assert changed.status_code == 200, changed.text
    url = f"/v1/organizations/{tenant.id}/audit-events"
    first = keyhall.client.get(url, params={"limit": 1}, headers=auth(tenant.viewer))
    assert first.status_code == 200
    cursor = first.json()["next_cursor"]
    assert cursor
    second = keyhall.client.get(url, params={"limit": 1, "cursor": cursor}, headers=auth(tenant.viewer))
    assert second.status_code == 200
    assert second.json()["data"][0]["id"] != first.json()["data"][0]["id"]
