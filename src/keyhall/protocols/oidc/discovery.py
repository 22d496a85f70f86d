"""OpenID Connect Discovery 1.0 provider metadata and RFC 7517 JWK Sets, read from bytes.

Pure code: no HTTP client, no I/O. The caller fetches the documents and passes their bodies in;
every problem raises ``DiscoveryError`` with the ``field`` it is given and a reason an
organization's owner can act on.

- ``discovery_url_for`` builds the configuration URL from an issuer (Discovery §4).
- ``parse_provider_metadata`` checks a provider configuration response (Discovery §3, §4.2,
  §4.3): a JSON object whose ``issuer`` is exactly the expected one, with the endpoints Keyhall
  needs for the authorization code flow.
- ``parse_jwks`` checks a JWK Set (RFC 7517 §5) through joserfc and summarizes its usable
  signature-verification keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from joserfc.errors import InvalidKeyTypeError, JoseError
from joserfc.jwk import DictKey, JWKRegistry, KeySet

from keyhall.errors import DiscoveryError

WELL_KNOWN_PATH = "/.well-known/openid-configuration"

_REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")
_OPTIONAL_ENDPOINTS = (
    "userinfo_endpoint",
    "end_session_endpoint",
    "registration_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
)
_LIST_MEMBERS = (
    "scopes_supported",
    "response_types_supported",
    "grant_types_supported",
    "code_challenge_methods_supported",
    "token_endpoint_auth_methods_supported",
    "id_token_signing_alg_values_supported",
    "claims_supported",
)
# Private members of asymmetric JWKs (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of an OpenID Provider's configuration (Discovery §3) that Keyhall uses.

    ``raw`` is the whole document, read-only, for anything not named here.
    """

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    registration_endpoint: str | None
    revocation_endpoint: str | None
    introspection_endpoint: str | None
    scopes_supported: tuple[str, ...] | None
    response_types_supported: tuple[str, ...] | None
    grant_types_supported: tuple[str, ...] | None
    code_challenge_methods_supported: tuple[str, ...] | None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None
    id_token_signing_alg_values_supported: tuple[str, ...] | None
    claims_supported: tuple[str, ...] | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class JwksSummary:
    """What a JWK Set offers for verifying ID token signatures (RFC 7517 §5).

    ``key_count`` counts usable signing keys; ``kids``, ``algs`` and ``key_types`` list the
    distinct ``kid``, ``alg`` and ``kty`` values those keys declare, in document order.
    """

    key_count: int
    kids: tuple[str, ...]
    algs: tuple[str, ...]
    key_types: tuple[str, ...]


def discovery_url_for(issuer: str) -> str:
    """The provider configuration URL of an issuer (Discovery §4).

    §4: any terminating ``/`` of the issuer is removed before ``/.well-known/openid-configuration``
    is appended. The issuer must be an absolute http(s) URL without query or fragment (§2 and
    OpenID Connect Core 1.0 §2); otherwise DiscoveryError (field ``oidc.issuer``).
    """
    problem = _issuer_problem(issuer)
    if problem is not None:
        raise DiscoveryError(f"the issuer {issuer!r} {problem}", field="oidc.issuer")
    return issuer.rstrip("/") + WELL_KNOWN_PATH


def parse_provider_metadata(document: bytes, *, expected_issuer: str | None, field: str) -> ProviderMetadata:
    """Read and check a provider configuration response (Discovery §4.2, §3).

    The issuer in the document must be exactly ``expected_issuer`` when one is given (§4.3:
    simple string comparison, no normalization). ``authorization_endpoint``, ``token_endpoint``
    and ``jwks_uri`` must be absolute http(s) URLs (Keyhall uses the authorization code flow, so
    the token endpoint that §3 lets implicit-only providers omit is required here). Optional
    endpoints, when present, must be URLs too; the ``*_supported`` members must be lists of
    strings.
    """
    doc = _load_json_object(document, "discovery document", field)
    issuer = doc.get("issuer")
    if issuer is None:
        raise DiscoveryError('the discovery document has no "issuer"', field=field, details={"member": "issuer"})
    if not isinstance(issuer, str) or _issuer_problem(issuer) is not None:
        problem = "is not a string" if not isinstance(issuer, str) else _issuer_problem(issuer)
        raise DiscoveryError(f'the discovery document\'s "issuer" {problem}', field=field, details={"member": "issuer"})
    if expected_issuer is not None and issuer != expected_issuer:
        raise DiscoveryError(
            f'issuer mismatch: the discovery document says "{_clip(issuer)}" but the configured issuer is'
            f' "{_clip(expected_issuer)}"; they must be identical (OpenID Connect Discovery 1.0 §4.3)',
            field=field,
            details={"expected_issuer": expected_issuer, "document_issuer": issuer},
        )
    required = {name: _required_endpoint(doc, name, field) for name in _REQUIRED_ENDPOINTS}
    optional = {name: _optional_endpoint(doc, name, field) for name in _OPTIONAL_ENDPOINTS}
    lists = {name: _string_list(doc, name, field) for name in _LIST_MEMBERS}
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=required["authorization_endpoint"],
        token_endpoint=required["token_endpoint"],
        jwks_uri=required["jwks_uri"],
        userinfo_endpoint=optional["userinfo_endpoint"],
        end_session_endpoint=optional["end_session_endpoint"],
        registration_endpoint=optional["registration_endpoint"],
        revocation_endpoint=optional["revocation_endpoint"],
        introspection_endpoint=optional["introspection_endpoint"],
        scopes_supported=lists["scopes_supported"],
        response_types_supported=lists["response_types_supported"],
        grant_types_supported=lists["grant_types_supported"],
        code_challenge_methods_supported=lists["code_challenge_methods_supported"],
        token_endpoint_auth_methods_supported=lists["token_endpoint_auth_methods_supported"],
        id_token_signing_alg_values_supported=lists["id_token_signing_alg_values_supported"],
        claims_supported=lists["claims_supported"],
        raw=MappingProxyType(doc),
    )


def parse_jwks(document: bytes, *, field: str) -> JwksSummary:
    """Read a JWK Set (RFC 7517 §5) and summarize its signature-verification keys.

    As §5 advises, keys whose ``kty`` is not understood or whose members are missing or out of
    range are ignored, and so are keys that cannot verify signatures: ``use`` other than
    ``sig``, ``key_ops`` without ``verify`` (§4.2, §4.3), and symmetric (``oct``) keys, which a
    public JWKS must not hold. A set with no usable key left is refused, naming why each key was
    skipped. A set that publishes private key material is refused outright.
    """
    doc = _load_json_object(document, "JWKS", field)
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise DiscoveryError('the JWKS has no "keys" list (RFC 7517 §5)', field=field)
    if not keys:
        raise DiscoveryError('the JWKS is empty: its "keys" list holds no key', field=field)
    usable: list[DictKey] = []
    skipped: list[str] = []
    for position, key in enumerate(keys, start=1):
        reason = _unusable_reason(key, field)
        if reason is None:
            usable.append(key)
        else:
            skipped.append(f"key #{position}{_kid_label(key)} {reason}")
    if not usable:
        raise DiscoveryError(
            "the JWKS has no usable signing key: " + "; ".join(skipped),
            field=field,
            details={"skipped": skipped},
        )
    key_set = KeySet.import_key_set({"keys": usable})
    return JwksSummary(
        key_count=len(key_set.keys),
        kids=_distinct(key.get("kid") for key in usable),
        algs=_distinct(key.get("alg") for key in usable),
        key_types=_distinct(key.key_type for key in key_set.keys),
    )


# --- helpers -------------------------------------------------------------------------------------


def _load_json_object(document: bytes, what: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(document)
    except (ValueError, RecursionError) as exc:
        preview = document[:40].decode("utf-8", "replace")
        raise DiscoveryError(
            f"the {what} is not JSON ({type(exc).__name__}: {exc}); it starts with {preview!r}",
            field=field,
        ) from exc
    if not isinstance(value, dict):
        raise DiscoveryError(
            f"the {what} is JSON but not an object (found {_json_type(value)})",
            field=field,
        )
    return value


def _json_type(value: object) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _issuer_problem(issuer: str) -> str | None:
    """Why the string cannot be an issuer identifier, or None (Core §2, Discovery §2)."""
    if not issuer or issuer != issuer.strip():
        return "is empty or has surrounding spaces"
    if not _is_http_url(issuer):
        return "is not an absolute http(s) URL"
    parts = urlsplit(issuer)
    if parts.query or parts.fragment or issuer.endswith(("?", "#")):
        return "must not have a query or fragment"
    return None


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname) and value == value.strip()


def _required_endpoint(doc: Mapping[str, Any], name: str, field: str) -> str:
    value = _optional_endpoint(doc, name, field)
    if value is None:
        raise DiscoveryError(
            f'the discovery document has no "{name}" (required, OpenID Connect Discovery 1.0 §3)',
            field=field,
            details={"member": name},
        )
    return value


def _optional_endpoint(doc: Mapping[str, Any], name: str, field: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _is_http_url(value):
        shown = repr(_clip(value)) if isinstance(value, str) else _json_type(value)
        raise DiscoveryError(
            f'the discovery document\'s "{name}" is not an absolute http(s) URL (found {shown})',
            field=field,
            details={"member": name},
        )
    return value


def _string_list(doc: Mapping[str, Any], name: str, field: str) -> tuple[str, ...] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DiscoveryError(
            f'the discovery document\'s "{name}" must be a list of strings (found {_json_type(value)}'
            + (" with non-string items" if isinstance(value, list) else "")
            + ")",
            field=field,
            details={"member": name},
        )
    return tuple(value)


def _unusable_reason(key: object, field: str) -> str | None:
    """Why a JWK cannot verify ID token signatures, or None when it can."""
    if not isinstance(key, dict):
        return f"is not an object (found {_json_type(key)})"
    kty = key.get("kty")
    if kty == "oct":
        return "is a symmetric (oct) key, which has no place in a published JWKS"
    if any(member in key for member in _PRIVATE_MEMBERS):
        raise DiscoveryError(
            f"the JWKS publishes private key material (key{_kid_label(key)}); the identity provider's"
            " signing key is exposed and must be replaced",
            field=field,
        )
    use = key.get("use")
    if use is not None and use != "sig":
        return f'is for use "{use}", not signatures'
    key_ops = key.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return 'has "key_ops" without "verify"'
    for member in ("kid", "alg"):
        if member in key and not isinstance(key[member], str):
            return f'has a "{member}" that is not a string'
    try:
        JWKRegistry.import_key(key)
    except InvalidKeyTypeError:
        return f"has an unsupported key type {kty!r}"
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        return f"is malformed ({exc or type(exc).__name__})"
    return None


def _clip(text: str, limit: int = 200) -> str:
    """A document-supplied string, shortened for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kid_label(key: object) -> str:
    kid = key.get("kid") if isinstance(key, dict) else None
    return f' (kid "{_clip(kid, 80)}")' if isinstance(kid, str) else ""


def _distinct(values: Iterable[object]) -> tuple[str, ...]:
    seen: list[str] = []
    for value in values:
        if isinstance(value, str) and value not in seen:
            seen.append(value)
    return tuple(seen)
