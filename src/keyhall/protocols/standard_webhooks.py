"""Standard Webhooks (https://www.standardwebhooks.com, specification v1.0.0), the sender's side.

Pure code. A message is POSTed with three headers (spec "Webhook headers"):

- ``webhook-id``: the message's unique id, the same on every retry (the receiver's idempotency key);
- ``webhook-timestamp``: integer seconds since the Unix epoch, when this attempt was signed;
- ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` signatures ("Signature
  scheme"), one per secret in use, so a receiver that knows either of the secrets of a rotation
  accepts the message ("Key rotation").

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}`` with the body's exact bytes.
Symmetric secrets are random bytes (24 to 64, spec "Symmetric signatures"), shown base64-encoded
with the ``whsec_`` prefix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # within the 24-64 bytes the specification recommends
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    """A fresh ``whsec_<base64>`` secret of ``SECRET_BYTES`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is base64 after its prefix") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a webhook secret holds {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes")
    return key


def timestamp_of(moment: datetime) -> str:
    """``webhook-timestamp``: whole seconds since the epoch (the time must be timezone-aware)."""
    if moment.tzinfo is None:
        raise ValueError("a webhook timestamp needs a timezone-aware time")
    return str(int(moment.timestamp()))


def signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """One ``v1,<base64>`` signature of the message under ``secret``."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign_headers(secrets_in_use: Sequence[str], message_id: str, moment: datetime, body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret in use (newest first)."""
    if not secrets_in_use:
        raise ValueError("a webhook message needs at least one secret to be signed with")
    if any(c in message_id for c in ". \t\r\n"):
        raise ValueError("a webhook message id holds no dots or whitespace")
    stamp = timestamp_of(moment)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": " ".join(signature(s, message_id, stamp, body) for s in secrets_in_use),
    }
