"""Luzmo's official Python SDK (``luzmo-sdk``) against a real Keyhall server.

The SDK posts every call to ``{api_host}/0.1.0/{resource}`` (``api_host`` is a constructor
argument, so it reaches 127.0.0.1) and reads every error as ``response.json()["message"]`` plus,
for each ``validation`` item, its first reason, then raises ``RuntimeError("Something went
wrong")`` from an ``Exception("<reason phrase>: <message>\\n<field>: <reason>")``. Keyhall's
Luzmo dialect must answer errors in that shape, or the SDK fails with a KeyError instead of the
reason. Every kind of error under the dialect's prefix is checked for the shape the SDK reads;
the ones the SDK itself can provoke (a bad field, an invalid key, the mask with a moved
endpoint, the rate limit) go through the SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from luzmo.luzmo import Luzmo

from keyhall.core.vocabulary import Role
from tests.support.api import auth
from tests.support.live import LiveKeyhall, serving_keyhall
from tests.support.oidc_idp import OidcIdp

URL = "/0.1.0/ssoconfig"


def sdk_for(live: LiveKeyhall, token: str) -> Luzmo:
    key_id, secret = token.removeprefix("kh_").split(".", 1)
    return Luzmo(key_id, secret, api_host=live.url)


def owner_token(live: LiveKeyhall, name: str) -> str:
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": name}, headers=auth(live.instance_token))
    assert org.status_code == 201, org.text
    return live.issue_key(org.json()["id"], Role.OWNER)


def sdk_error(call: Any) -> str:
    """What the SDK tells its caller when Keyhall answers an error: the reason it read."""
    with pytest.raises(RuntimeError, match="Something went wrong") as caught:
        call()
    cause = caught.value.__cause__
    assert cause is not None
    assert not isinstance(cause, KeyError | TypeError | ValueError), f"the SDK could not read the error: {cause!r}"
    return str(cause)


def assert_luzmo_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The shape the SDK reads: a top-level message; validation, when present, maps fields to reasons."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body["message"], str)
    assert body["message"]
    for field, reasons in body.get("validation", {}).items():
        assert isinstance(field, str)
        assert isinstance(reasons, list)
        assert reasons
        assert all(isinstance(r, str) and r for r in reasons)
    return body


def test_a_bad_field_reaches_the_sdk_caller_with_its_reason(live_keyhall: LiveKeyhall) -> None:
    sdk = sdk_for(live_keyhall, owner_token(live_keyhall, "Luzmo SDK fields"))
    text = sdk_error(lambda: sdk.create("ssoconfig", {"config": {"client_id": "c", "issuer": "ftp://idp.example"}}))
    assert text.startswith("Bad Request: properties.config.issuer: ")
    assert "\nproperties.config.issuer: must be an absolute http(s) URL" in text

    text = sdk_error(lambda: sdk.create("ssoconfig", {"config": {"client_id": "c", "issuer": "https://i.example"},
                                                      "is_verified": True}))
    assert "\nproperties.is_verified: is read-only" in text


def test_an_invalid_key_reaches_the_sdk_caller_as_unauthorized(live_keyhall: LiveKeyhall) -> None:
    sdk = Luzmo("not-a-key", "not-a-token", api_host=live_keyhall.url)
    text = sdk_error(lambda: sdk.get("ssoconfig", {"where": {}}))
    assert text.startswith("Unauthorized: ")
    assert len(text) > len("Unauthorized: ")


def test_the_sdk_works_and_reads_the_moved_endpoint_refusal(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> None:
    sdk = sdk_for(live_keyhall, owner_token(live_keyhall, "Luzmo SDK roundtrip"))
    created = sdk.create("ssoconfig", {"config": {"client_id": "c", "client_secret": "s3cr3t",
                                                  "issuer": oidc_idp.issuer}})
    assert created["config"]["client_secret"] == "********"
    found = sdk.get("ssoconfig", {"where": {"id": created["id"]}})
    assert [row["id"] for row in found["rows"]] == [created["id"]]
    text = sdk_error(lambda: sdk.update("ssoconfig", created["id"], {"config": {
        "token_url": "https://elsewhere.example/token", "client_secret": "********"}}))
    assert "\nproperties.config.client_secret: " in text
    assert "properties.config.token_url" in text
    deleted = sdk.delete("ssoconfig", created["id"])
    assert deleted["id"] == created["id"]
    assert "Not Found: " in sdk_error(lambda: sdk.delete("ssoconfig", created["id"]))


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKeyhall]:
    with serving_keyhall(Path(tmp_path_factory.mktemp("throttled-data")), tmp_path_factory.mktemp("throttled-db"),
                         api_rate_limit_per_minute=2) as live:
        yield live


def test_the_rate_limit_reaches_the_sdk_caller(throttled: LiveKeyhall) -> None:
    """Two calls a minute: a run of calls spans at most two one-minute windows, so the fifth
    call at the latest is refused, and the SDK's caller reads why."""
    sdk = sdk_for(throttled, owner_token(throttled, "Luzmo SDK throttle"))
    refusal: RuntimeError | None = None
    answered = 0
    while refusal is None and answered < 5:
        try:
            assert sdk.get("ssoconfig", {"where": {}})["count"] == 0
            answered += 1
        except RuntimeError as error:
            refusal = error
    assert refusal is not None, "five calls at two a minute were all answered"
    assert answered >= 2, "refused before the budget was spent"
    assert str(refusal) == "Something went wrong"
    cause = refusal.__cause__
    assert not isinstance(cause, KeyError | TypeError | ValueError), f"the SDK could not read the error: {cause!r}"
    assert str(cause).startswith("Too Many Requests: ")


@pytest.mark.parametrize(("send", "status", "field"), [
    (lambda c: c.post(URL, content=b'{"action": "get", ', headers={"content-type": "application/json"}), 400, "body"),
    (lambda c: c.post(URL, json={"action": "get", "version": "0.1.0", "colour": 1}), 400, "colour"),
    (lambda c: c.post(URL, json={"action": "get", "version": "0.1.0"}), 401, None),
    (lambda c: c.post("/0.1.0/dashboard", json={"action": "get", "version": "0.1.0"}), 404, None),
    (lambda c: c.get(URL), 405, None),
    (lambda c: c.post(URL, content=json.dumps({"x": "y" * 1_100_000}).encode(),
                      headers={"content-type": "application/json"}), 413, None),
    (lambda c: c.post(URL, content=b"action=get", headers={"content-type": "text/plain"}), 415, None),
    (lambda c: c.post(URL, json={"action": "get", "version": "0.1.0", "token": "a\u0000b"}), 400, "token"),
], ids=["malformed_json", "unknown_member", "no_key", "unknown_resource", "wrong_method", "too_large",
        "wrong_content_type", "control_character"])
def test_every_error_under_the_prefix_has_the_shape_the_sdk_reads(
    live_keyhall: LiveKeyhall, send: Any, status: int, field: str | None
) -> None:
    with live_keyhall.api() as client:
        body = assert_luzmo_error(send(client), status)
    if field is not None:
        assert field in body["validation"]
    assert body["error"]["message"] == body["message"]  # the native object stays beside it
