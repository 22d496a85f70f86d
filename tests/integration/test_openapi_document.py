"""``/openapi.json`` says what Keyhall really does: bearer API-key security on the operations that
authenticate, the 400 error body Keyhall answers instead of FastAPI's 422, and the inputs of the
``/oauth2`` endpoints. The operations themselves are fuzzed against it in tests/fuzz."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import Keyhall

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document(keyhall: Keyhall) -> dict[str, Any]:
    response = keyhall.client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items()
            for method, op in item.items() if method in METHODS]


def test_no_fastapi_422_and_the_real_400_body(document: dict[str, Any], keyhall: Keyhall) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path, op in operations(document):
        assert "422" not in op["responses"] or "HTTPValidationError" not in str(op["responses"]["422"]), (method, path)
    bad_limit = document["paths"]["/v1/organizations"]["get"]["responses"]["400"]
    assert bad_limit["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]

    # ... which is what a request with a bad parameter gets.
    answer = keyhall.client.get("/v1/organizations", params={"limit": "many"},
                                headers={"Authorization": f"Bearer {keyhall.instance_token}"})
    assert answer.status_code == 400
    assert set(answer.json()["error"]) == {"code", "message", "details"}
    assert "limit" in answer.json()["error"]["message"]


def test_bearer_security_on_the_operations_that_authenticate(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "http", "scheme": "bearer"}
    secured = {(method, path) for method, path, op in operations(document) if op.get("security") == [{"apiKey": []}]}
    for method, path, op in operations(document):
        if path.startswith("/v1/") or path.startswith(("/api/sso-connectors", "/api/v1/sso", "/organisations/",
                                                       "/organizations/")):
            assert (method, path) in secured, (method, path)
            unauthenticated = op["responses"]["401"]["content"]["application/json"]["schema"]
            if path.startswith(("/v1/", "/api/")):  # the native error body (the others: their vendor's)
                assert unauthenticated == {"$ref": "#/components/schemas/Error"}, (method, path)
    luzmo = document["paths"]["/0.1.0/ssoconfig"]["post"]
    assert luzmo["security"] == [{"apiKey": []}, {}]  # or the key and token in the envelope
    for open_path in ("/healthz", "/.well-known/openid-configuration", "/oauth2/jwks", "/oauth2/authorize"):
        assert ("GET", open_path) not in secured


def test_the_oauth2_endpoints_document_their_inputs(document: dict[str, Any]) -> None:
    paths = document["paths"]
    authorize = {p["name"]: p for p in paths["/oauth2/authorize"]["get"]["parameters"]}
    assert {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
            "code_challenge_method", "login_hint", "connection"} <= set(authorize)
    assert all(authorize[name]["required"] for name in ("response_type", "client_id", "redirect_uri", "scope"))
    assert authorize["code_challenge_method"]["schema"]["enum"] == ["S256"]

    token = paths["/oauth2/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert {"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "client_id",
            "client_secret"} <= set(form["properties"])
    assert form["required"] == ["grant_type"]
    assert {"clientSecretBasic": []} in token["security"]
    assert token["responses"]["400"]["content"]["application/json"]["schema"]["required"] == ["error"]

    revoke = paths["/oauth2/revoke"]["post"]["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert {"token", "token_type_hint"} <= set(revoke["schema"]["properties"])
    for method in ("get", "post"):
        assert paths["/oauth2/userinfo"][method]["security"] == [{"accessToken": []}]
