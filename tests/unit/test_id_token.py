"""ID token validation (OpenID Connect Core 1.0 §3.1.3.7): one good token, then every way to be bad.

Tokens are signed here with joserfc keys, at a fixed "now". The attack samples that joserfc
refuses to make (``alg: none``, an HMAC keyed with the RSA public key) are put together by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from keyhall.errors import IdPLoginError, IdTokenError
from keyhall.protocols.oidc.id_token import unverified_kid, validate_id_token

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://idp.example.com"
CLIENT_ID = "keyhall-client"
NONCE = "n-0S6_WzA2Mj"

RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
RSA_TWIN = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, another key
RSA_ANY_ALG = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})  # no "alg": RS*, PS* alike
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
ED = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})


def public_jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


JWKS = public_jwks(RSA, EC, ED)


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT_ID,
        "exp": int((NOW + timedelta(minutes=10)).timestamp()),
        "iat": int(NOW.timestamp()),
        "nonce": NONCE,
        "email": "alice@example.com",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def sign(payload: Mapping[str, Any], key: Key = RSA, *, alg: str = "RS256", kid: str | None = "rsa-1") -> str:
    header = {"alg": alg} if kid is None else {"alg": alg, "kid": kid}
    with warnings.catch_warnings():  # joserfc warns when signing with "EdDSA" (RFC 9864); only tests sign
        warnings.simplefilter("ignore", SecurityWarning)
        return jwt.encode(header, dict(payload), key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def validate(token: str, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"jwks": JWKS, "issuer": ISSUER, "client_id": CLIENT_ID, "nonce": NONCE, "now": NOW}
    options.update(overrides)
    return validate_id_token(token, **options)


def refused(token: str, reason: str, **overrides: Any) -> IdTokenError:
    with pytest.raises(IdTokenError) as caught:
        validate(token, **overrides)
    error = caught.value
    assert error.reason == reason, error.message
    assert error.details["reason"] == reason
    assert error.code == "id_token_invalid"
    assert isinstance(error, IdPLoginError)
    if token:
        assert token not in error.message
        assert token not in json.dumps(error.details)
    assert NONCE not in error.message
    return error


# --- good tokens ---------------------------------------------------------------------------------


def test_good_rs256_token_gives_its_claims() -> None:
    assert validate(sign(claims())) == claims()


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [(EC, "ES256", "ec-1"), (ED, "EdDSA", "ed-1"), (RSA_ANY_ALG, "PS256", None), (RSA_ANY_ALG, "RS512", "rsa-2")],
)
def test_other_asymmetric_algorithms(key: Key, alg: str, kid: str | None) -> None:
    token = sign(claims(), key, alg=alg, kid=kid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # accepting EdDSA must not warn
        assert validate(token, jwks=public_jwks(key, EC, ED))["sub"] == "alice"


def test_without_kid_every_fitting_key_is_tried() -> None:
    assert validate(sign(claims(), kid=None), jwks=public_jwks(RSA_TWIN, EC, RSA))["sub"] == "alice"


def test_audience_list_with_azp_of_this_client() -> None:
    assert validate(sign(claims(aud=[CLIENT_ID, "api"], azp=CLIENT_ID)))["aud"] == [CLIENT_ID, "api"]


def test_nonce_is_not_checked_when_none_was_sent() -> None:
    assert validate(sign(claims(nonce=None)), nonce=None)["sub"] == "alice"


def test_clock_skew_within_leeway_is_tolerated() -> None:
    token = sign(claims(exp=int(NOW.timestamp()) - 30, iat=int(NOW.timestamp()) + 30))
    assert validate(token)["sub"] == "alice"


def test_unverified_kid() -> None:
    assert unverified_kid(sign(claims())) == "rsa-1"
    assert unverified_kid(sign(claims(), kid=None)) is None
    assert unverified_kid("not a token") is None
    assert unverified_kid(b64(b'{"alg":"RS256","kid":7}') + ".e30.sig") is None


# --- structure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d.e",  # JWE compact serialization: encrypted ID tokens are not accepted
        b64(b"[1]") + ".e30.c2ln",
        b64(b'{"alg":"RS256"}') + ".!!!.c2ln",
        b64(b'{"alg":"RS256","kid":"rsa-1","crit":["urn:x"],"urn:x":1}') + ".e30.c2ln",  # RFC 7515 §4.1.11
    ],
)
def test_malformed_tokens(token: str) -> None:
    refused(token, "malformed")


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json"])
def test_signed_payload_that_is_not_a_json_object(payload: bytes) -> None:
    refused(jws.serialize_compact({"alg": "RS256", "kid": "rsa-1"}, payload, RSA, algorithms=["RS256"]), "malformed")


@pytest.mark.parametrize(
    "change",
    [{"sub": 42}, {"sub": ""}, {"iss": ["a"]}, {"aud": 7}, {"aud": [CLIENT_ID, 3]}, {"exp": "tomorrow"}, {"iat": True}],
)
def test_claims_of_the_wrong_type(change: dict[str, Any]) -> None:
    refused(sign(claims(**change)), "malformed")


# --- algorithms and keys -------------------------------------------------------------------------


def test_alg_none_is_refused_even_when_allowed() -> None:
    token = b64(b'{"alg":"none","kid":"rsa-1"}') + "." + b64(json.dumps(claims()).encode()) + "."
    refused(token, "alg_not_allowed")
    refused(token, "alg_not_allowed", allowed_algs=("none", "RS256"))


def test_hs256_keyed_with_the_rsa_public_key_is_refused() -> None:
    """The key-confusion attack: the public key, as published, used as an HMAC secret."""
    secret = RSA.as_pem(private=False)
    signing_input = b64(b'{"alg":"HS256","kid":"rsa-1"}') + "." + b64(json.dumps(claims()).encode())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    refused(token, "alg_not_allowed")
    refused(token, "alg_not_allowed", allowed_algs=("HS256", "RS256"))


def test_algorithm_outside_the_allowed_list() -> None:
    error = refused(sign(claims(), EC, alg="ES256", kid="ec-1"), "alg_not_allowed", allowed_algs=("RS256",))
    assert "ES256" in error.message


def test_tampered_payload_is_a_bad_signature() -> None:
    header, _payload, signature = sign(claims()).split(".")
    forged = b64(json.dumps(claims(sub="mallory")).encode())
    refused(f"{header}.{forged}.{signature}", "bad_signature")


def test_another_key_with_the_same_kid_is_a_bad_signature() -> None:
    refused(sign(claims(), RSA_TWIN), "bad_signature")


def test_unknown_kid() -> None:
    error = refused(sign(claims(), kid="rotated-away"), "unknown_kid")
    assert error.details["kid"] == "rotated-away"


def test_no_kid_and_no_key_for_the_algorithm() -> None:
    refused(sign(claims(), kid=None), "unknown_kid", jwks=public_jwks(EC))


def test_kid_naming_a_key_of_another_type() -> None:
    refused(sign(claims(), kid="ec-1"), "bad_signature")


def test_kid_naming_a_key_for_another_algorithm() -> None:
    same_key_any_alg = RSAKey.import_key({k: v for k, v in RSA.as_dict(private=True).items() if k != "alg"})
    token = sign(claims(), same_key_any_alg, alg="RS384")
    refused(token, "bad_signature")  # the JWKS says key rsa-1 is for RS256 only


def test_encryption_keys_are_not_signature_keys() -> None:
    member = RSA.as_dict(private=False) | {"use": "enc"}
    refused(sign(claims()), "unknown_kid", jwks={"keys": [member]})


def test_symmetric_keys_in_the_jwks_are_ignored() -> None:
    refused(sign(claims(), kid=None), "unknown_kid", jwks={"keys": [{"kty": "oct", "k": b64(b"secret" * 6)}]})


# --- claims --------------------------------------------------------------------------------------


def test_wrong_issuer() -> None:
    error = refused(sign(claims(iss="https://evil.example.com")), "wrong_issuer")
    assert "https://evil.example.com" in error.message


def test_wrong_audience() -> None:
    refused(sign(claims(aud="someone-else")), "wrong_audience")
    refused(sign(claims(aud=["someone-else", "api"], azp="someone-else")), "wrong_audience")


def test_several_audiences_without_azp() -> None:
    refused(sign(claims(aud=[CLIENT_ID, "api"])), "azp_mismatch")


def test_azp_of_another_client() -> None:
    refused(sign(claims(azp="another-client")), "azp_mismatch")
    refused(sign(claims(aud=[CLIENT_ID, "api"], azp="api")), "azp_mismatch")


def test_expired_beyond_the_leeway() -> None:
    refused(sign(claims(exp=int(NOW.timestamp()) - 61)), "expired")
    refused(sign(claims(exp=int(NOW.timestamp()) - 1)), "expired", leeway_seconds=0)


def test_issued_in_the_future() -> None:
    refused(sign(claims(iat=int(NOW.timestamp()) + 120)), "issued_in_future")
    refused(sign(claims(nbf=int(NOW.timestamp()) + 120)), "issued_in_future")


def test_nonce_missing_or_different() -> None:
    refused(sign(claims(nonce=None)), "nonce_mismatch")
    refused(sign(claims(nonce="another-login")), "nonce_mismatch")
    refused(sign(claims(nonce=7)), "nonce_mismatch")


@pytest.mark.parametrize("name", ["iss", "sub", "aud", "exp", "iat"])
def test_missing_required_claim(name: str) -> None:
    error = refused(sign(claims(**{name: None})), "missing_claim")
    assert error.details["claims"] == [name]
    assert name in error.message


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate(sign(claims()), now=NOW.replace(tzinfo=None))


def test_nonce_with_a_lone_surrogate_is_refused_not_crashed() -> None:
    """JSON may escape a lone surrogate (``"\\ud800"``), which Python reads as text ``str.encode`` refuses."""
    payload = json.dumps(claims(nonce="\ud800" + NONCE)).encode()  # ensure_ascii: the surrogate stays escaped
    token = jws.serialize_compact({"alg": "RS256", "kid": "rsa-1"}, payload, RSA)
    refused(token, "nonce_mismatch")
    refused(sign(claims(nonce="Ü" + NONCE)), "nonce_mismatch")
