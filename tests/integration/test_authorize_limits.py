"""``/oauth2/authorize`` is unauthenticated and stores a sign-in transaction: the size of what one
request can make Keyhall store is capped (each value, the number of parameters, the total)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

import pytest
from sqlalchemy import func, select

from keyhall.provider.authorize import MAX_PARAMS, MAX_TOTAL_CHARS
from keyhall.storage.models import LoginTransactionRow
from tests.support.api import Keyhall, auth

REDIRECT_URI = "http://127.0.0.1:9/product/callback"  # never requested: the answers are read, not followed


@pytest.fixture(scope="module")
def client_id(keyhall: Keyhall) -> str:
    created = keyhall.client.post("/v1/applications", headers=auth(keyhall.instance_token),
                                  json={"name": "Size Caps", "redirect_uris": [REDIRECT_URI], "public": True})
    assert created.status_code == 201, created.text
    return str(created.json()["client_id"])


def base_request(client_id: str) -> dict[str, str]:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(secrets.token_bytes(32)).digest()).rstrip(b"=").decode()
    return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI, "scope": "openid",
            "code_challenge": challenge, "code_challenge_method": "S256", "state": "s"}


def stored_transactions(keyhall: Keyhall) -> int:
    with keyhall.runtime.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(LoginTransactionRow)).scalar_one())


def authorize(keyhall: Keyhall, params: dict[str, Any]) -> Any:
    return keyhall.client.get("/oauth2/authorize", params=params, follow_redirects=False)


@pytest.mark.parametrize(
    ("label", "extra"),
    [
        ("one value too long", {"nonce": "n" * 2049}),
        ("too many parameters", {f"x{i}": "1" for i in range(MAX_PARAMS)}),
        ("too large in total", {f"pad{i}": "p" * 2000 for i in range(5)}),
        ("a huge parameter name", {"n" * 9000: "v"}),
    ],
)
def test_oversized_requests_are_refused_and_store_nothing(keyhall: Keyhall, client_id: str, label: str,
                                                          extra: dict[str, str]) -> None:
    before = stored_transactions(keyhall)
    response = authorize(keyhall, {**base_request(client_id), **extra})
    assert response.status_code == 400, label
    assert "too" in response.text, label
    assert stored_transactions(keyhall) == before, label


def test_a_request_within_the_caps_is_served(keyhall: Keyhall, client_id: str) -> None:
    request = {**base_request(client_id), "state": "s" * 2048, "nonce": "n" * 2048}
    assert sum(len(k) + len(v) for k, v in request.items()) <= MAX_TOTAL_CHARS
    before = stored_transactions(keyhall)
    response = authorize(keyhall, request)
    assert response.status_code in (200, 303), response.text
    assert stored_transactions(keyhall) == before + 1
