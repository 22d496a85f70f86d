"""Keyhall's own signing keys (RFC 7517 JWK, RFC 7515 JWS via joserfc).

One active key per algorithm signs new tokens. Rotation retires the active key but keeps it in the
JWKS until every token it signed has expired, so products verifying with a cached JWKS never see
a valid token they cannot check.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from keyhall.core.ports import SigningKeyRepository
from keyhall.core.tokens import SigningKey

SUPPORTED_ALGS = ("RS256", "ES256")
MAX_TOKEN_LIFETIME = timedelta(hours=1)  # the longest-lived token this key signs (ID/access tokens)


def generate_key(alg: str, now: datetime) -> SigningKey:
    if alg == "RS256":
        key: RSAKey | ECKey = RSAKey.generate_key(2048, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    pem = key.as_pem(private=True).decode()
    return SigningKey(kid=kid, alg=alg, private_pem=pem, public_jwk=public, created_at=now)


def active_key(keys: SigningKeyRepository, alg: str, now: datetime) -> SigningKey:
    """The key that signs now; generated on first use."""
    key = keys.active(alg)
    if key is not None:
        return key
    key = generate_key(alg, now)
    if keys.add_active(key):
        return key
    winner = keys.active(alg)  # another instance created it first: everyone signs with that one
    assert winner is not None
    return winner


def active_keys(keys: SigningKeyRepository, algs: tuple[str, str], now: datetime) -> dict[str, SigningKey]:
    """The keys that sign now for each of the two ``algs`` (an ID token's, an access token's; the same
    one twice when one key signs both), read together; any missing one generated."""
    found = keys.active_of(algs)
    return {alg: found.get(alg) or active_key(keys, alg, now) for alg in algs}


def rotate(keys: SigningKeyRepository, alg: str, now: datetime) -> SigningKey:
    """A new active key; the old one stays published for the longest token lifetime (plus margin)."""
    old = keys.active(alg)
    if old is not None:  # retired first: at most one key per algorithm is active at any moment
        keys.retire(old.kid, now, now + MAX_TOKEN_LIFETIME + timedelta(minutes=5))
    new = generate_key(alg, now)
    keys.add(new)
    return new


def published_jwks(keys: SigningKeyRepository, now: datetime) -> dict[str, Any] | None:
    """The JWKS document (one read, public halves only), or None while an algorithm has no active key
    yet (a new database): :func:`jwks` then makes them."""
    published = keys.published(now)
    if not set(SUPPORTED_ALGS) <= {key.alg for key in published if key.active}:
        return None
    return {"keys": [key.public_jwk for key in published]}


def jwks(keys: SigningKeyRepository, now: datetime) -> dict[str, Any]:
    """The JWKS document, with an active key of every supported algorithm (generated on first use):
    a write, for when :func:`published_jwks` found one missing."""
    for alg in SUPPORTED_ALGS:
        active_key(keys, alg, now)
    document = published_jwks(keys, now)
    assert document is not None  # every algorithm has its active key now
    return document


def _private(key: SigningKey) -> RSAKey | ECKey:
    return _import_private(key.kid, key.alg, key.private_pem)


@functools.lru_cache(maxsize=32)
def _import_private(kid: str, alg: str, pem: str) -> RSAKey | ECKey:
    """Parsing (and validating) an RSA private key costs tens of milliseconds; keys are immutable,
    so each is parsed once per process."""
    if alg == "RS256":
        return RSAKey.import_key(pem)
    return ECKey.import_key(pem)


def sign(key: SigningKey, claims: dict[str, Any], *, typ: str = "JWT") -> str:
    header = {"alg": key.alg, "kid": key.kid, "typ": typ}
    return jwt.encode(header, claims, _private(key), algorithms=[key.alg])


@functools.lru_cache(maxsize=16)
def _public_key_set(published: tuple[tuple[str, str], ...]) -> KeySet:
    """The JWK Set of these keys, parsed once per process (a kid is its key's thumbprint, so the
    same kids are the same keys; which kids are published is read from the database per call)."""
    return KeySet.import_key_set({"keys": [json.loads(jwk) for _, jwk in published]})


def verify(token: str, keys: SigningKeyRepository, now: datetime, *, typ: str | None = None,
           allow_expired: bool = False) -> dict[str, Any] | None:
    """Claims of a token Keyhall signed (signature, published key, ``exp`` unless ``allow_expired``), or None."""
    published = keys.published(now)
    if not published:
        return None
    try:
        keyset = _public_key_set(tuple((k.kid, json.dumps(k.public_jwk, sort_keys=True)) for k in published))
        decoded = jwt.decode(token, keyset, algorithms=list(SUPPORTED_ALGS))
    except (JoseError, ValueError):
        return None
    if typ is not None and decoded.header.get("typ") != typ:
        return None
    claims = dict(decoded.claims)
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or (exp <= now.timestamp() and not allow_expired):
        return None
    return claims
