"""Password hashing with argon2id (RFC 9106), via argon2-cffi."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

# A hash of nothing anyone knows, checked when the account does not exist so that an unknown email
# costs the same work as a wrong password. Written out rather than computed at import: hashing costs
# 64 MiB and tens of milliseconds in every process that imports this module, most never needing it.
_DUMMY_LITERAL = "$argon2id$v=19$m=65536,t=3,p=4$WdFDDOfRBLEde16POTlyJw$NSBbso1Yv9sdaUxuruYwfoSwtBDgY7Fm4Ur1HTeH8h0"


@functools.cache
def _dummy() -> str:
    """The dummy hash, with the hasher's parameters (a new one, once, if the library's defaults change)."""
    if _hasher.check_needs_rehash(_DUMMY_LITERAL):
        return _hasher.hash("keyhall-dummy-password")
    return _DUMMY_LITERAL


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (a dummy hash is checked when it does not)."""
    try:
        return _hasher.verify(stored_hash or _dummy(), password) and bool(stored_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str) -> str | None:
    """A reason the password is refused, or None (NIST SP 800-63B §5.1.1: length, not composition)."""
    if len(password) < 12:
        return "must be at least 12 characters"
    if len(password) > 1024:
        return "must be at most 1024 characters"
    return None
