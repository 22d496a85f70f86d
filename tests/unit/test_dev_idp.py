"""The development-mode test IdP's OpenID Connect rules (Authlib's authorization server), without
an HTTP server: it answers only Keyhall's own callbacks, a code is redeemed once and only by the
client, redirect URI and PKCE verifier it was issued for, codes and access tokens are not
interchangeable, and nothing signed by another key passes.
Also: development mode implies reaching IdPs on http and loopback (the test IdP is Keyhall)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from keyhall.dev.idp import DevIdp
from keyhall.dev.keys import load_key
from keyhall.dev.oidc_server import DevAuthorizationServer, Refused, Request
from keyhall.dev.people import PEOPLE
from keyhall.protocols.oidc.pkce import s256_challenge
from keyhall.settings import Settings

PUBLIC = "http://127.0.0.1:8000"
CALLBACK = f"{PUBLIC}/sso/c1/oidc/callback"
VERIFIER = "v" * 50


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> DevIdp:
    return DevIdp(public_url=PUBLIC, key=load_key(tmp_path_factory.mktemp("dev-idp")))


@pytest.fixture(scope="module")
def server(idp: DevIdp) -> DevAuthorizationServer:
    return idp.server()


def request(**overrides: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": "keyhall-demo", "redirect_uri": CALLBACK, "state": "s1",
            "nonce": "n1", "scope": "openid email profile", "code_challenge": s256_challenge(VERIFIER),
            "code_challenge_method": "S256", **overrides}


def authorize(server: DevAuthorizationServer, **overrides: str) -> str:
    return server.authorize(Request("POST", f"{server.issuer}/authorize", {}, request(**overrides), {}), PEOPLE[0])


def code_for(server: DevAuthorizationServer, **overrides: str) -> str:
    location = authorize(server, **overrides)
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s1"]
    assert query["iss"] == [server.issuer]
    return query["code"][0]


def redeem(server: DevAuthorizationServer, code: str, headers: dict[str, str] | None = None,
           **form: str) -> dict[str, Any]:
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "client_id": "keyhall-demo",
            "code_verifier": VERIFIER, **form}
    answer = server.token(Request("POST", f"{server.issuer}/token", headers or {}, {},
                                  {k: v for k, v in body.items() if v}))
    if answer.status != 200:
        raise Refused(str(answer.body["error"]), str(answer.body.get("error_description", "")))
    assert answer.headers.get("Cache-Control") == "no-store"
    return answer.body


def test_a_code_becomes_a_signed_id_token_and_userinfo(idp: DevIdp, server: DevAuthorizationServer) -> None:
    tokens = redeem(server, code_for(server))
    decoded = jwt.decode(tokens["id_token"], KeySet.import_key_set(idp.jwks()), algorithms=["RS256"])
    claims = decoded.claims
    assert decoded.header["kid"] == idp.key.kid
    assert claims["iss"] == f"{PUBLIC}/_dev/idp"
    assert claims["aud"] == "keyhall-demo"
    assert claims["nonce"] == "n1"
    assert claims["email"] == PEOPLE[0].email
    assert claims["name"] == PEOPLE[0].name
    assert claims["at_hash"]
    found = idp.userinfo(server, f"Bearer {tokens['access_token']}")
    assert found is not None
    assert found["sub"] == PEOPLE[0].sub


def test_a_confidential_client_authenticates_with_basic(server: DevAuthorizationServer) -> None:
    basic = "Basic " + base64.b64encode(b"keyhall-demo:any-secret").decode()
    assert redeem(server, code_for(server), {"Authorization": basic}, client_id="")["id_token"]


def test_a_code_is_redeemed_once(server: DevAuthorizationServer) -> None:
    code = code_for(server)
    redeem(server, code)
    with pytest.raises(Refused) as refused:
        redeem(server, code)
    assert refused.value.error == "invalid_grant"


def test_scope_decides_the_claims(idp: DevIdp, server: DevAuthorizationServer) -> None:
    tokens = redeem(server, code_for(server, scope="openid"))
    claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(idp.jwks()), algorithms=["RS256"]).claims
    assert "email" not in claims
    assert claims["sub"] == PEOPLE[0].sub


def test_a_public_client_must_use_pkce(server: DevAuthorizationServer) -> None:
    code = code_for(server)
    with pytest.raises(Refused, match="code_verifier"):
        redeem(server, code, code_verifier="")
    with pytest.raises(Refused):
        authorize(server, code_challenge_method="plain")


@pytest.mark.parametrize("redirect_uri", [
    "https://attacker.example/cb", "http://127.0.0.1:8000.attacker.example/sso/x", f"{PUBLIC}/_dev/app/callback", "",
    f"{PUBLIC}/sso/../_dev/app/callback", f"{PUBLIC}/sso/c1/oidc/callback?next=https://attacker.example",
])
def test_only_keyhalls_own_callbacks_get_a_code(server: DevAuthorizationServer, redirect_uri: str) -> None:
    with pytest.raises(Refused) as refused:
        authorize(server, redirect_uri=redirect_uri)
    assert "redirect" in refused.value.description.lower()


def test_a_wrong_pkce_verifier_is_refused(server: DevAuthorizationServer) -> None:
    with pytest.raises(Refused, match="Code challenge failed"):
        redeem(server, code_for(server), code_verifier="w" * 50)


@pytest.mark.parametrize("form", [{"client_id": "someone-else"}, {"redirect_uri": f"{PUBLIC}/sso/c2/oidc/callback"}])
def test_a_code_is_redeemed_only_as_it_was_issued(server: DevAuthorizationServer, form: dict[str, str]) -> None:
    with pytest.raises(Refused) as refused:
        redeem(server, code_for(server), **form)
    assert refused.value.error == "invalid_grant"


def test_an_access_token_is_no_code_and_a_code_no_access_token(idp: DevIdp, server: DevAuthorizationServer) -> None:
    code = code_for(server)
    assert idp.userinfo(server, f"Bearer {code}") is None
    with pytest.raises(Refused):
        redeem(server, redeem(server, code)["access_token"])


def test_a_code_signed_by_another_key_or_expired_is_refused(idp: DevIdp, server: DevAuthorizationServer) -> None:
    other = RSAKey.generate_key(2048, auto_kid=True)
    claims = {"purpose": "code", "iss": idp.issuer, "sub": PEOPLE[0].sub, "exp": int(time.time()) + 60,
              "client_id": "keyhall-demo", "redirect_uri": CALLBACK, "auth_time": 0, "scope": "openid",
              "jti": "j1", "challenge": s256_challenge(VERIFIER), "challenge_method": "S256"}
    forged = jwt.encode({"alg": "RS256", "kid": idp.key.kid}, claims, other)
    with pytest.raises(Refused) as refused:
        redeem(server, forged)
    assert refused.value.error == "invalid_grant"
    expired = jwt.encode({"alg": "RS256", "kid": idp.key.kid}, {**claims, "exp": int(time.time()) - 1}, idp.key)
    with pytest.raises(Refused) as refused:
        redeem(server, expired)
    assert refused.value.error == "invalid_grant"
    genuine = jwt.encode({"alg": "RS256", "kid": idp.key.kid}, {**claims, "jti": "j2"}, idp.key)
    assert redeem(server, genuine)["id_token"]  # the same claims, signed by the IdP: accepted


def test_the_key_is_kept_in_the_data_directory(tmp_path: Path) -> None:
    first = load_key(tmp_path)
    assert load_key(tmp_path).thumbprint() == first.thumbprint()
    assert (tmp_path / "dev-idp-key.json").stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["dev-idp-key.json"]  # no draft left behind


def test_development_mode_reaches_its_own_idp_on_loopback() -> None:
    assert Settings(_env_file=None, dev=True).allow_insecure_idp_urls is True  # type: ignore[call-arg]
    assert Settings(_env_file=None).allow_insecure_idp_urls is False  # type: ignore[call-arg]
