"""Recording sign-in traces (``core.sign_in_traces``): the protocol modules note what each check
found in a ``TraceNotes`` as the sign-in goes; ``record`` turns the notes (and the failure, if any)
into a stored trace. Test sign-ins are always recorded (``login.sign_in_test_outcome``); a real
sign-in is recorded when it fails through a connection (``flow.record_failure``).

Redaction: no secret, token or raw assertion ever reaches the notes; attribute values are kept,
password-like attributes are not (``core.sign_in_traces.redact_attributes``)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from keyhall.core.connections import Connection
from keyhall.core.ports import UnitOfWork
from keyhall.core.sign_in_traces import SignInTrace, TraceKind, TraceNotes, new_trace
from keyhall.core.users import Profile, User

#: Claims an IdP's ID token carries that say nothing about the person (kept out of the attributes).
_PROTOCOL_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "sid",
                              "auth_time", "jti"})


def browser_binding(secret: str) -> str:
    """What a trace stores of the browser secret (the login cookie) that may read its result page."""
    return hashlib.sha256(secret.encode()).hexdigest()


def note_claims(notes: TraceNotes | None, claims: Mapping[str, Any]) -> None:
    """The person's claims an OpenID provider sent (ID token and userinfo), as received."""
    if notes is not None:
        notes.attributes = {k: v if isinstance(v, list) else [v] for k, v in claims.items()
                            if k not in _PROTOCOL_CLAIMS}


def note_attributes(notes: TraceNotes | None, attributes: dict[str, list[str]]) -> None:
    if notes is not None:
        notes.attributes = {k: list(v) for k, v in attributes.items()}


def note_profile(notes: TraceNotes | None, profile: Profile, *, domain_verified: bool, idp_vouched: bool) -> None:
    """The mapped profile and the email-domain verdict (whether ``email_verified`` is vouched)."""
    if notes is None:
        return
    notes.profile = asdict(profile)
    mapped = [k for k, v in notes.profile.items() if v not in (None, [], "") and k != "email_verified"]
    notes.passed("attributes", f"{len(notes.attributes)} received; mapped to {', '.join(mapped) or 'nothing'}")
    domain = profile.email.rpartition("@")[2] if profile.email else None
    if domain is None:
        verdict = "no email address was received: email_verified is false"
    elif domain_verified and idp_vouched:
        verdict = f"{domain} is a verified domain of this organization: email_verified is vouched"
    elif domain_verified:
        verdict = f"{domain} is a verified domain of this organization, but the IdP did not vouch for the address"
    else:
        verdict = f"{domain} is not a verified domain of this organization: email_verified is false"
    notes.passed("email_domain", verdict)


def note_provisioned(notes: TraceNotes | None, user: User, *, created: bool) -> None:
    if notes is not None:
        notes.user_id = user.id
        notes.passed("provisioning", f"{'created' if created else 'updated'} user {user.id}")


def record(uow: UnitOfWork, conn: Connection, *, kind: TraceKind, notes: TraceNotes | None, now: datetime,
           started_by: str | None = None, failure: tuple[str, str, str | None] | None = None,
           browser_secret: str | None = None) -> SignInTrace:
    """Store the trace of one sign-in through ``conn`` (the caller commits)."""
    trace = new_trace(organization_id=conn.organization_id, connection_id=conn.id, protocol=conn.protocol.value,
                      kind=kind, notes=notes or TraceNotes(), mappings=conn.attribute_mappings, now=now,
                      started_by=started_by, failure=failure,
                      browser_binding=browser_binding(browser_secret) if browser_secret else None)
    uow.sign_in_traces.add(trace)
    return trace
