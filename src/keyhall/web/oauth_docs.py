"""What the OpenAPI document says about the ``/oauth2`` endpoints (``openapi_extra`` of their routes).

The handlers read their inputs from the raw query or form (so that every error takes the shape
OAuth 2.0 prescribes), which FastAPI cannot see; these declarations document them instead: the
authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636 §4.3 and Keyhall's routing
hints), the token request (RFC 6749 §4.1.3, §6), revocation (RFC 7009 §2.1) and UserInfo (OIDC
Core §5.3). They describe; the handlers decide.
"""

from __future__ import annotations

from typing import Any


def _query(name: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", **schema}}


def _form(properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {
        name: {"type": "string", "description": text} for name, text in properties.items()}}
    if required:
        schema["required"] = required
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


_OAUTH_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}}}}
# HTTP Basic, or client_secret in the form, or nothing (public clients).
_CLIENT_AUTH: list[dict[str, list[str]]] = [{"clientSecretBasic": []}, {}]
_CLIENT_FIELDS = {
    "client_id": "the client (required unless sent with HTTP Basic)",
    "client_secret": "client_secret_post: the secret (or send both with HTTP Basic instead)",
}

AUTHORIZE: dict[str, Any] = {
    "parameters": [
        _query("response_type", "only the authorization code flow", required=True, enum=["code"]),
        _query("client_id", "the application's client_id", required=True),
        _query("redirect_uri", "exactly one of the application's registered redirect URIs", required=True),
        _query("scope", "space-separated; must include openid (also profile, email, groups, offline_access)",
               required=True),
        _query("state", "returned unchanged with the code"),
        _query("nonce", "copied into the ID token"),
        _query("code_challenge", "PKCE: base64url SHA-256 of the verifier (required for public clients)"),
        _query("code_challenge_method", "PKCE method", enum=["S256"]),
        _query("response_mode", "how the code returns", enum=["query"]),
        _query("prompt", "none, login, or select_account"),
        _query("max_age", "seconds since the person last signed in before they must again"),
        _query("login_hint", "the person's email address: routes by its domain"),
        _query("organization", "route to this organization's sign-in (id or slug)"),
        _query("connection", "route to this connection (id)"),
        _query("domain", "route by this email domain"),
    ],
    "responses": {
        "200": {"description": "a sign-in page (HTML), or the error page for an unknown client or redirect URI"},
        "302": {"description": "to the identity provider, or back to redirect_uri with code and state (or error)"},
    },
}

TOKEN: dict[str, Any] = {
    "requestBody": _form({
        "grant_type": "authorization_code or refresh_token",
        "code": "authorization_code: the code from the redirect",
        "redirect_uri": "authorization_code: the redirect_uri of the authorization request",
        "code_verifier": "authorization_code: the PKCE verifier",
        "refresh_token": "refresh_token: the refresh token (it rotates: use the new one next time)",
        "scope": "refresh_token: optionally fewer scopes than granted",
        **_CLIENT_FIELDS,
    }, ["grant_type"]),
    "security": _CLIENT_AUTH,
    "responses": {
        "200": {"description": "access_token, token_type, expires_in, id_token, refresh_token (with offline_access)",
                "content": {"application/json": {"schema": {"type": "object"}}}},
        "400": {"description": "RFC 6749 §5.2 error", **_OAUTH_ERROR},
        "401": {"description": "invalid_client", **_OAUTH_ERROR},
    },
}

REVOKE: dict[str, Any] = {
    "requestBody": _form({
        "token": "the refresh or access token to revoke",
        "token_type_hint": "refresh_token or access_token",
        **_CLIENT_FIELDS,
    }, ["token"]),
    "security": _CLIENT_AUTH,
    "responses": {
        "200": {"description": "revoked, or the token was unknown (RFC 7009 §2.2): an empty body"},
        "400": {"description": "RFC 6749 §5.2 error", **_OAUTH_ERROR},
        "401": {"description": "invalid_client", **_OAUTH_ERROR},
    },
}

USERINFO: dict[str, Any] = {
    "security": [{"accessToken": []}],
    "responses": {
        "200": {"description": "the person's claims for the granted scopes",
                "content": {"application/json": {"schema": {"type": "object", "required": ["sub"]}}}},
        "401": {"description": "a missing, expired or revoked access token (WWW-Authenticate: Bearer)",
                **_OAUTH_ERROR},
    },
}
