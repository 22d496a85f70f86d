"""The audit trail: who changed what, when, under which request id — secrets masked."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from keyhall.core.vocabulary import SECRET_MASK

SECRET_KEYS = frozenset({"client_secret", "bind_password", "sp_private_key", "secret", "password", "token"})


@dataclass
class AuditEvent:
    id: str
    organization_id: str | None
    actor: str
    action: str
    target_type: str
    target_id: str | None
    request_id: str | None
    changes: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.min)


def _is_secret_name(key: object) -> bool:
    return isinstance(key, str) and key.rsplit(".", 1)[-1] in SECRET_KEYS


def _mask_all(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_all(v) for v in value]
    return SECRET_MASK if value not in (None, "") else value


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with every secret-named entry (``client_secret``, ``oidc.client_secret``
    in a diff, ...) replaced by the mask, however deeply it is nested."""
    if isinstance(value, Mapping):
        return {k: (_mask_all(v) if _is_secret_name(k) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Field-level changes ``{name: {"from": old, "to": new}}``; nested dicts diffed by key."""
    changes: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            inner = diff(old, new)
            for sub, change in inner.items():
                changes[f"{key}.{sub}"] = change
        else:
            changes[key] = {"from": old, "to": new}
    return changes


def event(
    *,
    organization_id: str | None,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    request_id: str | None,
    now: datetime,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent(
        id=str(uuid.uuid4()),
        organization_id=organization_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        request_id=request_id,
        changes=mask_secrets(dict(changes or {})),
        created_at=now,
    )
