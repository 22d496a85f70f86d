"""The product's back channel (``/oauth2/token``, ``/oauth2/revoke``) answers every error as an
RFC 6749 §5.2 document — also the ones raised before its handler runs: an oversized body (413,
declared or streamed) and more form fields than the parser takes (400). A client library reads
``error``; the native ``{"error": {"code", ...}}`` shape would leave it with nothing to show."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.api import Keyhall

PATHS = ("/oauth2/token", "/oauth2/revoke")
FORM = {"content-type": "application/x-www-form-urlencoded"}


def assert_rfc6749(response: object, status: int, mentions: str) -> None:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", response)
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == "invalid_request"
    assert mentions in body["error_description"].lower(), body


@pytest.mark.parametrize("path", PATHS)
def test_oversized_body_is_an_rfc6749_error(keyhall: Keyhall, path: str) -> None:
    limit = keyhall.runtime.settings.max_body_bytes
    body = b"grant_type=authorization_code&code=" + b"a" * limit
    declared = keyhall.client.post(path, content=body, headers=FORM)
    assert_rfc6749(declared, 413, "exceeds")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while streaming
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    streamed = keyhall.client.post(path, content=chunks(), headers=FORM)
    assert_rfc6749(streamed, 413, "exceeds")


@pytest.mark.parametrize("path", PATHS)
def test_too_many_form_fields_is_an_rfc6749_error(keyhall: Keyhall, path: str) -> None:
    body = "&".join(f"f{n}=x" for n in range(1001))
    response = keyhall.client.post(path, content=body, headers=FORM)
    assert_rfc6749(response, 400, "fields")


def test_the_native_api_keeps_its_own_shape(keyhall: Keyhall) -> None:
    limit = keyhall.runtime.settings.max_body_bytes
    response = keyhall.client.post("/v1/organizations", content=b"{" + b" " * limit + b"}",
                                   headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
