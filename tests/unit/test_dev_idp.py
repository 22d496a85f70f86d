"""The development-mode test IdP's rules, without a server: it answers only Keyhall's own
callbacks, a code is redeemed only by the client, redirect URI and PKCE verifier it was issued
for, codes and access tokens are not interchangeable, and nothing signed by another key passes.
Also: development mode implies reaching IdPs on http and loopback (the test IdP is Keyhall)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from keyhall.dev.idp import PEOPLE, DevIdp, Refused, load_key, s256
from keyhall.settings import Settings

PUBLIC = "http://127.0.0.1:8000"
CALLBACK = f"{PUBLIC}/sso/c1/oidc/callback"
VERIFIER = "v" * 50


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> DevIdp:
    return DevIdp(public_url=PUBLIC, key=load_key(tmp_path_factory.mktemp("dev-idp")))


def request(**overrides: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": "keyhall-demo", "redirect_uri": CALLBACK, "state": "s1",
            "nonce": "n1", "code_challenge": s256(VERIFIER), "code_challenge_method": "S256", **overrides}


def code_for(idp: DevIdp, **overrides: str) -> str:
    location = idp.code_redirect(request(**overrides), PEOPLE[0])
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["s1"]
    assert query["iss"] == [idp.issuer]
    return query["code"][0]


def redeem(idp: DevIdp, code: str, **form: str) -> dict[str, Any]:
    return idp.exchange({"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                         "client_id": "keyhall-demo", "code_verifier": VERIFIER, **form}, None)


def test_a_code_becomes_a_signed_id_token_and_userinfo(idp: DevIdp) -> None:
    tokens = redeem(idp, code_for(idp))
    claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(idp.jwks()), algorithms=["RS256"]).claims
    assert claims["iss"] == f"{PUBLIC}/_dev/idp"
    assert claims["aud"] == "keyhall-demo"
    assert claims["nonce"] == "n1"
    assert claims["email"] == PEOPLE[0].email
    assert idp.userinfo(f"Bearer {tokens['access_token']}")["sub"] == PEOPLE[0].sub


@pytest.mark.parametrize("redirect_uri", [
    "https://attacker.example/cb", "http://127.0.0.1:8000.attacker.example/sso/x", f"{PUBLIC}/_dev/app/callback", "",
    f"{PUBLIC}/sso/../_dev/app/callback", f"{PUBLIC}/sso/c1/oidc/callback?next=https://attacker.example",
])
def test_only_keyhalls_own_callbacks_get_a_code(idp: DevIdp, redirect_uri: str) -> None:
    with pytest.raises(Refused) as refused:
        idp.code_redirect(request(redirect_uri=redirect_uri), PEOPLE[0])
    assert "redirect_uri" in refused.value.description


def test_a_wrong_pkce_verifier_is_refused(idp: DevIdp) -> None:
    with pytest.raises(Refused, match="code_verifier"):
        redeem(idp, code_for(idp), code_verifier="w" * 50)


@pytest.mark.parametrize("form", [{"client_id": "someone-else"}, {"redirect_uri": f"{PUBLIC}/sso/c2/oidc/callback"}])
def test_a_code_is_redeemed_only_as_it_was_issued(idp: DevIdp, form: dict[str, str]) -> None:
    with pytest.raises(Refused) as refused:
        redeem(idp, code_for(idp), **form)
    assert refused.value.error == "invalid_grant"


def test_an_access_token_is_no_code_and_a_code_no_access_token(idp: DevIdp) -> None:
    code = code_for(idp)
    with pytest.raises(Refused):
        idp.userinfo(f"Bearer {code}")
    with pytest.raises(Refused):
        redeem(idp, redeem(idp, code)["access_token"])


def test_a_code_signed_by_another_key_or_expired_is_refused(idp: DevIdp) -> None:
    other = RSAKey.generate_key(2048, auto_kid=True)
    claims = {"purpose": "code", "iss": idp.issuer, "sub": PEOPLE[0].sub, "exp": int(time.time()) + 60,
              "client_id": "keyhall-demo", "redirect_uri": CALLBACK, "auth_time": 0}
    forged = jwt.encode({"alg": "RS256", "kid": idp.key.kid}, claims, other)
    with pytest.raises(Refused, match="not one this IdP issued"):
        redeem(idp, forged)
    expired = jwt.encode({"alg": "RS256", "kid": idp.key.kid}, {**claims, "exp": int(time.time()) - 1}, idp.key)
    with pytest.raises(Refused, match="expired"):
        redeem(idp, expired)


def test_the_key_is_kept_in_the_data_directory(tmp_path: Path) -> None:
    first = load_key(tmp_path)
    assert load_key(tmp_path).thumbprint() == first.thumbprint()
    assert (tmp_path / "dev-idp-key.json").stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["dev-idp-key.json"]  # no draft left behind


def test_development_mode_reaches_its_own_idp_on_loopback() -> None:
    assert Settings(_env_file=None, dev=True).allow_insecure_idp_urls is True  # type: ignore[call-arg]
    assert Settings(_env_file=None).allow_insecure_idp_urls is False  # type: ignore[call-arg]
