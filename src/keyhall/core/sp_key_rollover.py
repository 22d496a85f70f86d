"""SP key rollover without a failed sign-in: a SAML connection's next SP key is published first.

``stage_next_sp_key`` makes a new SP key pair for a connection; its certificate appears in the SP
metadata (for signing and for encryption) at once, beside the active one, and both keys decrypt
assertions. At ``activates_at`` (``activate_due``, run by the background certificate work) it
becomes the connection's SP key: AuthnRequests are signed with it; the previous key still
decrypts for ``overlap``, then it is forgotten. Keyhall's own key is not how the connection
reaches its IdP, so ``is_verified`` stays. Each step is audited.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from keyhall.core import audit
from keyhall.core.certificates import SpKeyRollover
from keyhall.core.connections import Connection
from keyhall.core.ports import UnitOfWork
from keyhall.core.vocabulary import Protocol
from keyhall.errors import Conflict, NotFound
from keyhall.protocols.saml.certificates import isoformat_z, parse_certificate
from keyhall.security.sp_keys import generate_sp_keypair


def _audit(uow: UnitOfWork, conn: Connection, action: str, actor: str, request_id: str | None, now: datetime,
           changes: dict[str, object]) -> None:
    uow.audit.add(audit.event(organization_id=conn.organization_id, actor=actor, action=action,
                              target_type="connection", target_id=conn.id, request_id=request_id, now=now,
                              changes=changes))


def stage_next_sp_key(uow: UnitOfWork, connection_id: str, *, actor: str, now: datetime, activate_after: timedelta,
                      request_id: str | None = None) -> SpKeyRollover:
    """Make and publish the connection's next SP key, active ``activate_after`` from ``now``."""
    conn = uow.connections.get_any(connection_id)
    if conn is None or conn.protocol is not Protocol.SAML:
        raise NotFound("SAML connection not found", details={"id": connection_id})
    current = uow.certificate_watch.sp_rollover(conn.id) or SpKeyRollover()
    if current.next_private_key and current.next_activates_at is not None:
        raise Conflict(f"a next SP key is already published; it becomes active at "
                       f"{isoformat_z(current.next_activates_at)}", details={"id": conn.id})
    cert, key = generate_sp_keypair(f"keyhall-sp-{conn.id}", now=now)
    staged = SpKeyRollover(next_certificate=cert, next_private_key=key, next_activates_at=now + activate_after,
                           previous_private_key=current.previous_private_key, previous_until=current.previous_until)
    uow.certificate_watch.save_sp_rollover(conn.id, staged, now=now)
    _audit(uow, conn, "connection.sp_key.staged", actor, request_id, now, {
        "sp_next_certificate_sha256": parse_certificate(cert, field="sp_next_certificate").sha256_fingerprint,
        "activates_at": isoformat_z(now + activate_after)})
    return staged


def activate_due(uow: UnitOfWork, conn: Connection, *, actor: str, now: datetime, overlap: timedelta) -> bool:
    """Make a staged SP key active once its time has come, and forget a previous key past its
    overlap; True when something changed."""
    rollover = uow.certificate_watch.sp_rollover(conn.id)
    if rollover is None:
        return False
    if rollover.next_private_key and rollover.next_certificate and rollover.next_activates_at is not None \
            and now >= rollover.next_activates_at:
        previous = conn.secrets.get("sp_private_key")
        expected = conn.version
        conn.settings["sp_certificate"], conn.secrets["sp_private_key"] = (rollover.next_certificate,
                                                                           rollover.next_private_key)
        conn.version, conn.updated_at = conn.version + 1, now
        if not uow.connections.save(conn, expected_version=expected):
            raise Conflict("the connection changed meanwhile; its SP key becomes active next pass")
        uow.certificate_watch.save_sp_rollover(conn.id, SpKeyRollover(
            previous_private_key=previous, previous_until=now + overlap), now=now)
        _audit(uow, conn, "connection.sp_key.activated", actor, None, now, {
            "sp_certificate_sha256": parse_certificate(rollover.next_certificate,
                                                       field="sp_certificate").sha256_fingerprint,
            "previous_key_decrypts_until": isoformat_z(now + overlap)})
        return True
    if rollover.previous_private_key and rollover.previous_until is not None and now >= rollover.previous_until:
        uow.certificate_watch.save_sp_rollover(conn.id, SpKeyRollover(
            next_certificate=rollover.next_certificate, next_private_key=rollover.next_private_key,
            next_activates_at=rollover.next_activates_at), now=now)
        _audit(uow, conn, "connection.sp_key.previous_retired", actor, None, now, {})
        return True
    return False
