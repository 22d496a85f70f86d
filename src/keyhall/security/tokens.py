"""Constant-time comparison of a token that came with a request (a cookie, a form field, a query
parameter, a claim) with the one Keyhall expects.

``secrets.compare_digest`` raises ``TypeError`` on a ``str`` that is not ASCII, and ``str.encode``
raises on a lone surrogate; a request may carry either. Both sides are compared here as UTF-8
bytes (lone surrogates kept, so two different texts never compare equal), which never raises:
a hostile token is simply not the expected one.
"""

from __future__ import annotations

import hmac

__all__ = ["same_token"]


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def same_token(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of where they differ.

    False when either is missing or empty: an empty expected token never matches anything."""
    if not given or not expected:
        return False
    return hmac.compare_digest(_bytes(given), _bytes(expected))
