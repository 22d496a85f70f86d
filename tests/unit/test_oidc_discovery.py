"""Provider metadata (OpenID Connect Discovery 1.0) and JWKS (RFC 7517) parsing, from bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, RSAKey

from keyhall.errors import DiscoveryError, IdPValidationError
from keyhall.protocols.oidc.discovery import (
    JwksSummary,
    ProviderMetadata,
    discovery_url_for,
    parse_jwks,
    parse_provider_metadata,
)

ISSUER = "https://idp.example.com/tenant"
FIELD = "oidc.issuer"


def good_document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "end_session_endpoint": f"{ISSUER}/logout",
        "scopes_supported": ["openid", "email", "profile"],
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "email"],
    }
    for name, value in changes.items():
        if value is _DROP:
            doc.pop(name, None)
        else:
            doc[name] = value
    return doc


_DROP = object()


def parse(doc: object, expected_issuer: str | None = ISSUER) -> ProviderMetadata:
    return parse_provider_metadata(json.dumps(doc).encode(), expected_issuer=expected_issuer, field=FIELD)


def rsa_public_jwk(kid: str | None = "rsa-1", **extra: Any) -> dict[str, Any]:
    key = RSAKey.generate_key(2048).as_dict(private=False)
    if kid is not None:
        key["kid"] = kid
    return {**key, **extra}


def jwks_bytes(*keys: object) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


# --- discovery_url_for (Discovery §4) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://idp.example.com", "https://idp.example.com/.well-known/openid-configuration"),
        ("https://idp.example.com/", "https://idp.example.com/.well-known/openid-configuration"),
        ("https://idp.example.com/tenant/", "https://idp.example.com/tenant/.well-known/openid-configuration"),
        ("http://127.0.0.1:8080/realms/x", "http://127.0.0.1:8080/realms/x/.well-known/openid-configuration"),
    ],
)
def test_discovery_url_appends_well_known_after_dropping_trailing_slash(issuer: str, expected: str) -> None:
    assert discovery_url_for(issuer) == expected


@pytest.mark.parametrize(
    ("issuer", "reason"),
    [
        ("", "is empty"),
        ("idp.example.com", "not an absolute http(s) URL"),
        ("ftp://idp.example.com", "not an absolute http(s) URL"),
        ("https://idp.example.com/?tenant=1", "must not have a query or fragment"),
        ("https://idp.example.com/#x", "must not have a query or fragment"),
    ],
)
def test_discovery_url_refuses_issuers_that_are_not_issuer_urls(issuer: str, reason: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        discovery_url_for(issuer)
    assert reason in caught.value.message
    assert caught.value.field == "oidc.issuer"


# --- parse_provider_metadata (Discovery §3, §4.3) -----------------------------------------------


def test_good_document_is_read_into_metadata() -> None:
    metadata = parse(good_document())
    assert metadata.issuer == ISSUER
    assert metadata.authorization_endpoint == f"{ISSUER}/authorize"
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert metadata.jwks_uri == f"{ISSUER}/jwks"
    assert metadata.userinfo_endpoint == f"{ISSUER}/userinfo"
    assert metadata.end_session_endpoint == f"{ISSUER}/logout"
    assert metadata.registration_endpoint is None
    assert metadata.revocation_endpoint is None
    assert metadata.introspection_endpoint is None
    assert metadata.scopes_supported == ("openid", "email", "profile")
    assert metadata.code_challenge_methods_supported == ("S256",)
    assert metadata.id_token_signing_alg_values_supported == ("RS256",)
    assert metadata.claims_supported == ("sub", "email")
    assert metadata.raw["subject_types_supported"] == ["public"]


def test_raw_document_is_read_only() -> None:
    metadata = parse(good_document())
    with pytest.raises(TypeError):
        metadata.raw["issuer"] = "https://evil.example"  # type: ignore[index]


def test_absent_optional_members_are_none() -> None:
    doc = good_document(
        userinfo_endpoint=_DROP,
        end_session_endpoint=_DROP,
        scopes_supported=_DROP,
        claims_supported=None,
    )
    metadata = parse(doc)
    assert metadata.userinfo_endpoint is None
    assert metadata.end_session_endpoint is None
    assert metadata.scopes_supported is None
    assert metadata.claims_supported is None


def test_without_expected_issuer_the_documents_issuer_is_taken() -> None:
    metadata = parse(good_document(issuer="https://other.example.com"), expected_issuer=None)
    assert metadata.issuer == "https://other.example.com"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body>Sign in</body></html>", "the discovery document is not JSON"),
        (b"", "the discovery document is not JSON"),
        (b"\xff\xfe\x00garbage", "the discovery document is not JSON"),
        (b"[1, 2]", "is JSON but not an object (found an array)"),
        (b'"issuer"', "is JSON but not an object (found a string)"),
        (b"null", "is JSON but not an object (found null)"),
        (b"[" * 100_000, "the discovery document is not JSON"),
    ],
)
def test_documents_that_are_not_json_objects_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse_provider_metadata(body, expected_issuer=ISSUER, field=FIELD)
    assert reason in caught.value.message
    assert caught.value.field == FIELD
    assert caught.value.code == "discovery_invalid"


def test_not_json_message_shows_how_the_body_starts() -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse_provider_metadata(b"<html>login page</html>", expected_issuer=ISSUER, field=FIELD)
    assert "<html>login page" in caught.value.message


def test_missing_issuer_is_refused() -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse(good_document(issuer=_DROP))
    assert caught.value.message == 'the discovery document has no "issuer"'
    assert caught.value.details["member"] == "issuer"


@pytest.mark.parametrize(
    ("issuer", "reason"),
    [(42, "is not a string"), ("not a url", "is not an absolute http(s) URL"), ("", "is empty")],
)
def test_issuer_that_is_not_an_issuer_url_is_refused(issuer: object, reason: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse(good_document(issuer=issuer), expected_issuer=None)
    assert 'the discovery document\'s "issuer"' in caught.value.message
    assert reason in caught.value.message


@pytest.mark.parametrize(
    "document_issuer",
    [
        "https://idp.example.com/tenant/",  # a trailing slash is a different issuer (§4.3)
        "https://IDP.example.com/tenant",  # no case folding either
        "https://idp.example.com/other",
    ],
)
def test_issuer_mismatch_names_both_values(document_issuer: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse(good_document(issuer=document_issuer))
    message = caught.value.message
    assert message.startswith("issuer mismatch")
    assert f'"{document_issuer}"' in message
    assert f'"{ISSUER}"' in message
    assert "§4.3" in message
    assert caught.value.details["expected_issuer"] == ISSUER
    assert caught.value.details["document_issuer"] == document_issuer


@pytest.mark.parametrize("member", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
def test_missing_required_endpoint_is_refused(member: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse(good_document(**{member: _DROP}))
    assert f'the discovery document has no "{member}"' in caught.value.message
    assert caught.value.details["member"] == member


@pytest.mark.parametrize("member", ["authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [("/relative/path", "'/relative/path'"), ("ftp://idp.example.com/x", "'ftp://"), (17, "a number")],
)
def test_endpoint_that_is_not_an_absolute_http_url_is_refused(member: str, value: object, shown: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse(good_document(**{member: value}))
    assert f'"{member}" is not an absolute http(s) URL' in caught.value.message
    assert shown in caught.value.message


@pytest.mark.parametrize(
    ("value", "found"),
    [("openid email", "a string"), (["openid", 3], "an array with non-string items"), ({"a": 1}, "an object")],
)
@pytest.mark.parametrize("member", ["scopes_supported", "code_challenge_methods_supported", "claims_supported"])
def test_list_members_of_the_wrong_type_are_refused(member: str, value: object, found: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse(good_document(**{member: value}))
    assert f'"{member}" must be a list of strings' in caught.value.message
    assert found in caught.value.message


def test_errors_carry_the_given_field() -> None:
    with pytest.raises(IdPValidationError) as caught:
        parse_provider_metadata(b"{}", expected_issuer=None, field="oidc.discovery_url")
    assert caught.value.field == "oidc.discovery_url"
    assert caught.value.details["field"] == "oidc.discovery_url"


# --- parse_jwks (RFC 7517 §5) -------------------------------------------------------------------


def test_jwks_with_signing_keys_is_summarized() -> None:
    ec_key = ECKey.generate_key("P-256").as_dict(private=False)
    ec_key.update({"kid": "ec-1", "alg": "ES256", "use": "sig"})
    summary = parse_jwks(jwks_bytes(rsa_public_jwk("rsa-1", alg="RS256"), ec_key), field="oidc.jwks_uri")
    assert summary == JwksSummary(key_count=2, kids=("rsa-1", "ec-1"), algs=("RS256", "ES256"), key_types=("RSA", "EC"))


def test_keys_without_kid_or_alg_still_count() -> None:
    summary = parse_jwks(jwks_bytes(rsa_public_jwk(kid=None)), field="oidc.jwks_uri")
    assert summary.key_count == 1
    assert summary.kids == ()
    assert summary.algs == ()
    assert summary.key_types == ("RSA",)


def test_unusable_keys_are_skipped_when_a_usable_one_remains() -> None:
    keys = [
        {"kty": "PQC-FUTURE", "kid": "new"},  # RFC 7517 §5: ignore unknown kty
        rsa_public_jwk("enc-1", use="enc"),
        rsa_public_jwk("good"),
    ]
    summary = parse_jwks(jwks_bytes(*keys), field="oidc.jwks_uri")
    assert summary.key_count == 1
    assert summary.kids == ("good",)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "the JWKS is not JSON"),
        (b"[]", "the JWKS is JSON but not an object"),
        (b"{}", 'the JWKS has no "keys" list'),
        (b'{"keys": {"kty": "RSA"}}', 'the JWKS has no "keys" list'),
        (b'{"keys": []}', "the JWKS is empty"),
    ],
)
def test_jwks_structure_errors(body: bytes, reason: str) -> None:
    with pytest.raises(DiscoveryError) as caught:
        parse_jwks(body, field="oidc.jwks_uri")
    assert reason in caught.value.message
    assert caught.value.field == "oidc.jwks_uri"


def test_jwks_without_usable_signing_key_says_why_for_each_key() -> None:
    oct_key = OctKey.generate_key(256).as_dict(private=True)
    keys: list[object] = [
        rsa_public_jwk("enc-only", use="enc"),
        rsa_public_jwk("wrap-only", key_ops=["wrapKey"]),
        {"kty": "RSA", "kid": "broken", "e": "AQAB"},
        {"kty": "XYZ", "kid": "alien"},
        oct_key,
        "a string",
    ]
    with pytest.raises(DiscoveryError) as caught:
        parse_jwks(jwks_bytes(*keys), field="oidc.jwks_uri")
    message = caught.value.message
    assert message.startswith("the JWKS has no usable signing key: ")
    assert 'key #1 (kid "enc-only") is for use "enc", not signatures' in message
    assert 'key #2 (kid "wrap-only") has "key_ops" without "verify"' in message
    assert 'key #3 (kid "broken") is malformed' in message
    assert "key #4 (kid \"alien\") has an unsupported key type 'XYZ'" in message
    assert "key #5 is a symmetric (oct) key" in message
    assert "key #6 is not an object (found a string)" in message
    assert len(caught.value.details["skipped"]) == 6


def test_jwks_publishing_a_private_key_is_refused() -> None:
    private = RSAKey.generate_key(2048).as_dict(private=True)
    private["kid"] = "leaked"
    with pytest.raises(DiscoveryError) as caught:
        parse_jwks(jwks_bytes(rsa_public_jwk("fine"), private), field="oidc.jwks_uri")
    assert 'publishes private key material (key (kid "leaked"))' in caught.value.message
    assert str(private["d"]) not in caught.value.message  # the key itself is never echoed
