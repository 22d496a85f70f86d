"""Proof Key for Code Exchange (RFC 7636), the ``S256`` method only.

Pure code. The relying party makes a ``code_verifier`` (§4.1), sends its ``S256``
``code_challenge`` (§4.2) with the authorization request and the verifier with the token
request (§4.5); a server checks the pair (§4.6). ``plain`` (§4.2) is not offered: it protects
nothing once the authorization request is seen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

#: §4.1: ``code-verifier = 43*128unreserved``, ``unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"``.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
#: 48 random bytes are 64 base64url characters, all in the §4.1 set (§7.1 asks for at least 256 bits).
_VERIFIER_BYTES = 48


def new_code_verifier() -> str:
    """A fresh high-entropy ``code_verifier`` of 64 characters (RFC 7636 §4.1, §7.1)."""
    return secrets.token_urlsafe(_VERIFIER_BYTES)


def is_valid_verifier(verifier: str) -> bool:
    """Whether ``verifier`` has the §4.1 form: 43 to 128 characters of the unreserved set."""
    return isinstance(verifier, str) and _VERIFIER.fullmatch(verifier) is not None


def s256_challenge(verifier: str) -> str:
    """The ``S256`` code challenge of a verifier (RFC 7636 §4.2).

    ``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` without padding (§3, Appendix A).
    Raises ValueError for a verifier outside §4.1.
    """
    if not is_valid_verifier(verifier):
        raise ValueError("a PKCE code verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_s256(verifier: str, challenge: str) -> bool:
    """Whether ``verifier`` matches an ``S256`` ``challenge`` (RFC 7636 §4.6).

    The comparison takes constant time; a verifier outside §4.1 never matches.
    """
    if not is_valid_verifier(verifier) or not isinstance(challenge, str):
        return False
    expected = s256_challenge(verifier).encode("ascii")
    return hmac.compare_digest(expected, challenge.encode("utf-8", "replace"))
