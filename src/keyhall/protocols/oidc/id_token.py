"""ID token validation for a relying party (OpenID Connect Core 1.0 §3.1.3.7, §2, §10.1).

Pure code: the caller passes the token, the provider's JWK Set (RFC 7517 §5) and the current
time; nothing is fetched. All JOSE work (parsing the JWS Compact Serialization, importing keys,
checking signatures) is done by joserfc.

The checks, in order, each failing with an ``IdTokenError`` whose ``reason`` names it:

1. the token is a three-part JWS (RFC 7515 §7.1) — encrypted ID tokens are not accepted
   (``malformed``);
2. its ``alg`` is one of ``allowed_algs`` and asymmetric: ``none`` and the HMAC algorithms are
   always refused, whatever the caller allows, so that a public key is never used as a MAC
   secret (§3.1.3.7 steps 6 to 8, RFC 8725 §3.1, §3.2) (``alg_not_allowed``);
3. the signing key is taken from the JWKS only, never from the token's own ``jwk``/``jku``/
   ``x5u``/``x5c`` headers: the key its ``kid`` names, or, without a ``kid``, every key that
   fits the algorithm (§10.1) (``unknown_kid``), and the signature must verify with it
   (``bad_signature``);
4. claims, only once the signature holds: ``iss``, ``sub``, ``aud``, ``exp``, ``iat`` present
   (§2) (``missing_claim``); ``iss`` exactly the expected issuer (step 2, ``wrong_issuer``);
   ``aud`` contains the client id (step 3, ``wrong_audience``); with several audiences, ``azp``
   present, and any ``azp`` equal to the client id (steps 4 and 5, ``azp_mismatch``); now before
   ``exp`` (step 9, ``expired``); ``iat`` and any ``nbf`` not in the future (step 10, RFC 7519
   §4.1.5, ``issued_in_future``) — both time checks allow ``leeway_seconds`` of clock skew;
   ``nonce`` equal to the one sent, when one was (step 11, ``nonce_mismatch``).

Messages are plain English and never carry the token or the nonce.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

from keyhall.errors import IdTokenError, IdTokenReason

DEFAULT_ALLOWED_ALGS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
#: Algorithms that never verify an ID token signed by a provider's published key.
_NEVER_ALLOWED = frozenset({"none", "HS256", "HS384", "HS512"})
_REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat")
_MAX_HEADER_BYTES = 4096  # joserfc's default (512) is too small for headers carrying x5c chains


class _IdTokenAlgorithms(JWSRegistry):
    """A JWS registry that knows exactly the algorithms it is given, and nothing else.

    joserfc's own registry warns when "EdDSA" is used (RFC 9864 prefers the fully specified
    "Ed25519"); OpenID providers still sign with "EdDSA", so accepting it is deliberate here.
    """

    max_header_length = _MAX_HEADER_BYTES

    def get_alg(self, name: str) -> JWSAlgModel:
        if self.allowed is None or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


def unverified_kid(token: str) -> str | None:
    """The ``kid`` header of a JWS, read without any verification (RFC 7515 §4.1.4).

    Only for choosing which JWKS to load; None when the token has no usable ``kid`` or is not
    a JWS at all (``validate_id_token`` then says why).
    """
    try:
        header = _extract(token, _IdTokenAlgorithms(strict_check_header=False)).headers()
    except IdTokenError:
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def signing_alg(token: str) -> str | None:
    """The ``alg`` header of a JWS (RFC 7515 §4.1.1), read without verification: for describing a
    token that ``validate_id_token`` accepted (which checks the algorithm), never for trusting one."""
    try:
        header = _extract(token, _IdTokenAlgorithms(strict_check_header=False)).headers()
    except IdTokenError:
        return None
    alg = header.get("alg")
    return alg if isinstance(alg, str) else None


def validate_id_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    client_id: str,
    nonce: str | None,
    now: datetime,
    leeway_seconds: int = 60,
    allowed_algs: Sequence[str] = DEFAULT_ALLOWED_ALGS,
) -> dict[str, Any]:
    """Verify an ID token (OIDC Core 1.0 §3.1.3.7) and return its claims; see the module doc.

    ``jwks`` is the provider's JWK Set document (``{"keys": [...]}``); ``now`` must be
    timezone-aware. Raises IdTokenError.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    algorithms = [alg for alg in allowed_algs if alg not in _NEVER_ALLOWED]
    registry = _IdTokenAlgorithms(algorithms=algorithms, strict_check_header=False)
    signed = _extract(token, registry)
    header = signed.headers()
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in registry.algorithms:
        shown = repr(_clip(alg)) if isinstance(alg, str) else "a non-string"
        raise IdTokenError(
            f"the ID token is signed with algorithm {shown}, which is not accepted"
            f" (accepted: {', '.join(algorithms) or 'none'})",
            reason="alg_not_allowed",
            details={"alg": _clip(alg) if isinstance(alg, str) else None},
        )
    _verify_signature(signed, registry.algorithms[alg], header.get("kid"), jwks, registry)
    claims = _load_claims(signed.payload)
    _check_claims(claims, issuer=issuer, client_id=client_id, nonce=nonce, now=now, leeway=leeway_seconds)
    return claims


# --- structure and signature ---------------------------------------------------------------------


def _extract(token: str, registry: JWSRegistry) -> jws.CompactSignature:
    if not isinstance(token, str) or not token:
        raise IdTokenError("the ID token is empty or not a string", reason="malformed")
    if token.count(".") == 4:
        raise IdTokenError("the ID token is encrypted (JWE); Keyhall accepts signed ID tokens only", reason="malformed")
    if token.count(".") != 2:
        raise IdTokenError("the ID token is not a JWS in compact serialization (RFC 7515 §7.1)", reason="malformed")
    try:
        signed = jws.extract_compact(token.encode("ascii"), registry=registry)
        if not isinstance(signed.headers(), dict):
            raise TypeError("header is not an object")
        registry.check_header(signed.headers())  # RFC 7515 §4.1.11: "crit" names only what is understood
    except (JoseError, ValueError, TypeError) as exc:
        raise IdTokenError(f"the ID token cannot be read as a JWS: {_jose_reason(exc)}", reason="malformed") from exc
    return signed


def _verify_signature(
    signed: jws.CompactSignature, alg: JWSAlgModel, kid: object, jwks: Mapping[str, Any], registry: JWSRegistry
) -> None:
    if kid is not None and not isinstance(kid, str):
        raise IdTokenError('the ID token\'s "kid" header is not a string', reason="malformed")
    keys = _verification_keys(jwks)
    if kid is not None:
        named = [key for key in keys if key.kid == kid]
        if not named:
            raise IdTokenError(
                f'the ID token is signed with key "{_clip(kid)}", which the identity provider\'s JWKS does not hold',
                reason="unknown_kid",
                details={"kid": _clip(kid)},
            )
        candidates = [key for key in named if _fits(key, alg)]
        if not candidates:
            raise IdTokenError(
                f'the key "{_clip(kid)}" ({named[0].key_type}, alg {named[0].alg or "unset"}) cannot verify'
                f" an {alg.name} signature",
                reason="bad_signature",
                details={"kid": _clip(kid)},
            )
    else:
        candidates = [key for key in keys if _fits(key, alg)]
        if not candidates:
            raise IdTokenError(
                f"the ID token names no key (kid) and the identity provider's JWKS has no key for {alg.name}",
                reason="unknown_kid",
            )
    for key in candidates:
        try:
            if jws.validate_compact(signed, key, registry=registry):
                return
        except JoseError:
            continue  # e.g. an EC key of another curve than the algorithm's
    raise IdTokenError(
        "the ID token's signature does not verify with the identity provider's key",
        reason="bad_signature",
        details={"kid": _clip(kid)} if isinstance(kid, str) else None,
    )


def _verification_keys(jwks: Mapping[str, Any]) -> list[Key]:
    """The public JWKS keys meant for verifying signatures (RFC 7517 §4.2, §4.3, §5)."""
    members = jwks.get("keys") if isinstance(jwks, Mapping) else None
    usable: list[Key] = []
    for member in members if isinstance(members, list) else []:
        if not isinstance(member, dict) or member.get("kty") == "oct" or member.get("use", "sig") != "sig":
            continue
        key_ops = member.get("key_ops")
        if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
            continue
        try:
            canonical = json.dumps(member, sort_keys=True)
        except (TypeError, ValueError):
            continue
        key = _imported_key(canonical)
        if key is not None:
            usable.append(key)
    return usable


@functools.lru_cache(maxsize=256)
def _imported_key(canonical_jwk: str) -> Key | None:
    """One JWK parsed into a key object, once per process per distinct JWK (the JWKS document itself
    is fetched and cached by the relying party; a key is its content, so this never goes stale)."""
    try:
        return JWKRegistry.import_key(json.loads(canonical_jwk))
    except (JoseError, ValueError, TypeError, KeyError):
        return None  # §5: keys that are not understood are ignored


def _fits(key: Key, alg: JWSAlgModel) -> bool:
    """Whether the key's type suits the algorithm and its ``alg``, if any, is that one (RFC 7517 §4.4)."""
    return key.key_type == alg.key_type and key.alg in (None, alg.name)


def _load_claims(payload: bytes | None) -> dict[str, Any]:
    try:
        claims = json.loads(payload or b"")
    except (ValueError, RecursionError) as exc:
        raise IdTokenError("the ID token's payload is not JSON", reason="malformed") from exc
    if not isinstance(claims, dict):
        raise IdTokenError("the ID token's payload is not a JSON object", reason="malformed")
    return claims


# --- claims ------------------------------------------------------------------------------------


def _check_claims(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, nonce: str | None, now: datetime, leeway: int
) -> None:
    missing = [name for name in _REQUIRED_CLAIMS if name not in claims or claims[name] is None]
    if missing:
        raise IdTokenError(
            f"the ID token lacks the required claim{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
            " (OpenID Connect Core 1.0 §2)",
            reason="missing_claim",
            details={"claims": missing},
        )
    iss, sub, aud = claims["iss"], claims["sub"], claims["aud"]
    if not isinstance(iss, str) or not isinstance(sub, str) or not sub:
        _malformed("iss and sub must be non-empty strings")
    if len(sub) > 255:  # OIDC Core §2: "It MUST NOT exceed 255 ASCII characters in length"
        _malformed("sub is longer than 255 characters")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(item, str) for item in audiences):
        _malformed("aud must be a string or a list of strings")
    exp, iat, nbf = (_numeric_date(claims, name) for name in ("exp", "iat", "nbf"))
    if iss != issuer:
        _fail(f'the ID token was issued by "{_clip(iss)}", not by "{_clip(issuer)}"', "wrong_issuer")
    if client_id not in audiences:
        _fail(f'the ID token is not meant for this client: its audience lacks "{_clip(client_id)}"', "wrong_audience")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        _fail("the ID token has several audiences but no authorized party (azp)", "azp_mismatch")
    if azp is not None and azp != client_id:
        _fail(f'the ID token\'s authorized party (azp) is not "{client_id}"', "azp_mismatch")
    moment = now.timestamp()
    if exp is not None and moment >= exp + leeway:
        _fail(f"the ID token expired at {_when(exp)}", "expired")
    for name, value in (("iat", iat), ("nbf", nbf)):
        if value is not None and value > moment + leeway:
            _fail(f"the ID token's {name} ({_when(value)}) is in the future; check the clocks", "issued_in_future")
    if nonce is not None:
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(
                sent.encode("utf-8", "surrogatepass"), nonce.encode("utf-8", "surrogatepass")):
            what = "has no nonce" if sent is None else "carries a nonce other than the one sent"
            _fail(f"the ID token {what} (replayed or mixed-up login)", "nonce_mismatch")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 §2): a JSON number of seconds since the epoch."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _malformed(f"{name} must be a finite number of seconds (NumericDate)")
    return float(value)


def _when(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g} s after the epoch"


def _fail(message: str, reason: IdTokenReason) -> NoReturn:
    raise IdTokenError(message, reason=reason)


def _malformed(problem: str) -> NoReturn:
    raise IdTokenError(f"the ID token's claims are malformed: {problem}", reason="malformed")


def _clip(text: object, limit: int = 120) -> str:
    shown = str(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _jose_reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
