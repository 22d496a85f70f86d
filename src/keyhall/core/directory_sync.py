"""What a directory may do through SCIM, bound to storage: who it is, and the rules every change
shares (audit under ``directory:<id>``, the directory's last sync time, If-Match, one transaction).

The users and groups operations are ``directory_users`` and ``directory_groups``; the SCIM
surface (``api/scim``) authenticates with ``authenticate`` and makes one call per request.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from keyhall.core import audit, events
from keyhall.core.directories import MAX_TOKEN_LENGTH, Directory, groups_claim
from keyhall.core.ports import UnitOfWork
from keyhall.core.sessions import end_user_sessions
from keyhall.errors import InvalidInput, PreconditionFailed, Unauthenticated
from keyhall.protocols.scim.discovery import MAX_RESULTS
from keyhall.protocols.scim.filters import Predicate, parse_filter
from keyhall.security.api_keys import hash_secret

SYNC_TIME_STEP = timedelta(seconds=10)


@dataclass(frozen=True)
class Sync:
    """One authenticated SCIM request of a directory: where it writes and as whom."""

    uow: UnitOfWork
    directory: Directory
    request_id: str | None
    now: datetime
    base_url: str  # the directory's SCIM base URL, for meta.location

    def audit(self, action: str, target_type: str, target_id: str, changes: dict[str, Any]) -> None:
        """Audit the change under ``directory:<id>`` and announce it as ``directory.<action>``
        (``directory.user.disabled``, ``directory.group.updated``, ...) in the event log."""
        self.uow.audit.add(audit.event(
            organization_id=self.directory.organization_id, actor=self.directory.actor, action=action,
            target_type=target_type, target_id=target_id, request_id=self.request_id, now=self.now,
            changes=changes))
        events.emit(self.uow, "directory." + action.removeprefix("directory_"),
                    organization_id=self.directory.organization_id, now=self.now,
                    data={"directory_id": self.directory.id, "type": target_type, "id": target_id,
                          "changes": audit.mask_secrets(changes)})

    def end_sessions(self, user_id: str, *, reason: str) -> int:
        """End the user's sessions (products with a back-channel logout URI hear of it); how many."""
        return end_user_sessions(self.uow, user_id, self.now, reason=reason, actor=self.directory.actor,
                          request_id=self.request_id)

    def refresh_groups_claims(self, user_ids: Collection[str]) -> None:
        """Bring the ``groups`` claim of those of ``user_ids`` who have signed in up to date with
        their directory groups, through their connection's group mappings, in this transaction: the
        next refresh-token exchange and userinfo carry it (a sign-in computes it afresh anyway)."""
        linked = self.uow.directory_users.linked_connections(user_ids) if user_ids else {}
        if not linked:
            return
        names = self.uow.directory_users.groups_of(list(linked))
        mappings: dict[str, list[dict[str, str]]] = {}
        for connection_id in set(linked.values()):
            connection = self.uow.connections.get_any(connection_id)
            mappings[connection_id] = connection.group_mappings if connection is not None else []
        self.uow.directory_users.set_groups_claims({
            user_id: groups_claim([name for _, name in names.get(user_id, [])], mappings[connection_id])
            for user_id, connection_id in linked.items()})

    def commit(self) -> None:
        """Commit, recording the sync time (at most every ``SYNC_TIME_STEP``: an initial sync of
        thousands of users does not rewrite the directory's row thousands of times)."""
        last = self.directory.last_sync_at
        if last is None or self.now - last >= SYNC_TIME_STEP:
            self.uow.directories.touch(self.directory.id, self.now)
        self.uow.commit()


def authenticate(uow: UnitOfWork, directory_id: str, token: str | None) -> Directory:
    """The directory whose token this is. An unknown directory and a wrong (or rotated) token look
    the same: 401, so that a token cannot probe which directory ids exist."""
    directory = uow.directories.authenticated(directory_id, hash_secret(token)) \
        if directory_id and token and len(token) <= MAX_TOKEN_LENGTH else None
    if directory is None:
        raise Unauthenticated("the bearer token is not this directory's current token")
    return directory


def check_version(current: int, expected: int | None) -> None:
    if expected is not None and current != expected:
        raise PreconditionFailed(f"the resource changed since you read it (version {current})")


@dataclass(frozen=True)
class Window:
    """A list request: its filter, and the 1-based ``startIndex``/``count`` of RFC 7644 §3.4.2.4."""

    where: Predicate | None
    offset: int
    limit: int
    start_index: int


def window(resource: str, filter_text: str | None, start_index: str | None, count: str | None) -> Window:
    where = parse_filter(filter_text, "User" if resource == "User" else "Group") if filter_text else None
    start = _integer(start_index, "startIndex", default=1)
    size = _integer(count, "count", default=MAX_RESULTS)
    start = max(start, 1)  # RFC 7644 §3.4.2.4: a value less than 1 is interpreted as 1
    size = min(max(size, 0), MAX_RESULTS)  # negative means 0; above the maximum, the maximum
    return Window(where=where, offset=start - 1, limit=size, start_index=start)


def _integer(value: str | None, name: str, *, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name}: must be an integer", field=name, details={"scim_type": "invalidValue"}) from None
