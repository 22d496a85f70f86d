"""API keys: ``kh_<key id>.<secret>`` bearer tokens, stored as a SHA-256 of the secret.

The secret is 256 random bits, so a fast hash is safe (no dictionary to attack) and keeps
request authentication cheap; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "kh_"


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret: str
    secret_hash: str

    @property
    def token(self) -> str:
        return f"{TOKEN_PREFIX}{self.key_id}.{self.secret}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_key() -> IssuedKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(key_id=key_id, secret=secret, secret_hash=hash_secret(secret))


def split_token(token: str) -> tuple[str, str] | None:
    """Split a bearer token into (key id, secret); None when it is not shaped like one."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX) :].partition(".")
    if not sep or not key_id or not secret or len(token) > 200:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
