"""Sign-in traces: the ordered steps and checks of one sign-in through a connection, for the
organization's administrators and support ("why did this login fail").

Pure rules, no HTTP or SQL. ``login.traces`` records a trace for every test sign-in
(``login.sign_in_test``) and for every failed real sign-in through a connection; storage keeps
it for ``KEYHALL_TRACE_RETENTION_DAYS``.

- ``STEPS``: per protocol, the checks in the order the sign-in makes them.
- ``TraceNotes``: what the login layer learns as it goes (the evidence of each check that
  passed, the attributes received); filled in by ``login.oidc``, ``login.saml``, ``login.ldap``.
- ``trace_steps``: the notes and the typed failure reason (if any) → the steps, each
  ``passed`` / ``failed`` / ``skipped``: the steps before the failing check passed, the ones
  after it were never reached.
- ``remedy``: what to change at the IdP for a failure reason.
- ``redact_attributes``: the attributes as they may be stored — values kept (support needs them),
  but never a password-like attribute.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from keyhall.core.vocabulary import SECRET_MASK, Protocol


class StepOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class TraceKind(StrEnum):
    TEST = "test"  # a test sign-in an administrator started (no code for any application)
    SIGN_IN = "sign_in"  # a real sign-in that failed


@dataclass(frozen=True)
class TraceStep:
    name: str
    outcome: StepOutcome
    detail: str


@dataclass(frozen=True)
class MappedAttribute:
    """One attribute the IdP sent, and the profile fields it mapped to (``[]``: not used)."""

    name: str
    values: list[str]
    mapped_to: list[str]


@dataclass
class SignInTrace:
    id: str
    organization_id: str
    connection_id: str
    protocol: str
    kind: TraceKind
    outcome: StepOutcome  # passed or failed
    steps: list[TraceStep]
    attributes: list[MappedAttribute]
    profile: dict[str, Any]  # what the attributes mapped to (core mapping), email verdict included
    failure: dict[str, str] | None  # {"reason", "message", "remedy"} when the sign-in failed
    started_by: str | None  # the actor of a test sign-in
    user_id: str | None
    created_at: datetime
    browser_binding: str | None = None  # hash of the test sign-in's browser secret; never shown


@dataclass
class TraceNotes:
    """What the sign-in learned as it went: ``evidence[step]`` says how a check passed."""

    evidence: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # as received; redacted when recorded
    profile: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    failure_detail: str | None = None  # the failed check's own words, when they say more than the reason

    def passed(self, step: str, detail: str) -> None:
        self.evidence[step] = detail


#: The checks of a sign-in, in the order they are made (login.oidc / protocols.oidc.id_token;
#: protocols.saml.response; idp.ldap_client), then what every protocol shares.
COMMON_TAIL = ("attributes", "email_domain", "provisioning")
STEPS: dict[str, tuple[str, ...]] = {
    Protocol.OIDC.value: ("request_sent", "idp_response", "token_call", "id_token_signature", "issuer", "audience",
                          "nonce", "expiry", "tenant", *COMMON_TAIL),
    Protocol.SAML.value: ("request_sent", "response", "signature", "destination", "issuer", "audience", "validity",
                          "recipient", "in_response_to", "replay", *COMMON_TAIL),
    Protocol.LDAP.value: ("request_sent", "search", "bind", *COMMON_TAIL),
}

#: Failure reason → the step that failed. A reason not listed fails the step named ``sign_in``.
_FAILED_STEP: dict[str, str] = {
    # OIDC: the callback, the token call, the ID token (OIDC Core §3.1.3.7)
    "issuer_mismatch": "idp_response", "missing_code": "idp_response", "state_invalid": "idp_response",
    "transaction_not_bound": "idp_response",
    "token_error": "token_call", "idp_unreachable": "token_call", "bad_token_response": "token_call",
    "jwks_invalid": "token_call", "idp_busy": "token_call", "service_unavailable": "token_call",
    "alg_not_allowed": "id_token_signature", "unknown_kid": "id_token_signature",
    "id_token_invalid": "id_token_signature", "missing_claim": "id_token_signature",
    "wrong_issuer": "issuer", "wrong_audience": "audience", "azp_mismatch": "audience",
    "nonce_mismatch": "nonce", "expired": "expiry", "issued_in_future": "expiry",
    "userinfo_failed": "attributes", "tenant_mismatch": "tenant", "tenant_not_configured": "tenant",
    # SAML (saml-core-2.0-os, saml-profiles-2.0-os §4.1.4)
    "dtd_forbidden": "response", "too_large": "response", "status_not_success": "response",
    "multiple_assertions": "response", "missing_subject": "recipient", "decryption_failed": "signature",
    "unsigned": "signature", "bad_signature": "signature", "untrusted_certificate": "signature",
    "signature_wrapping": "signature", "algorithm_not_allowed": "signature", "sha1_refused": "signature",
    "wrong_destination": "destination", "wrong_recipient": "recipient", "not_yet_valid": "validity",
    "in_response_to_mismatch": "in_response_to", "unsolicited": "in_response_to", "replayed": "replay",
    # LDAP (RFC 4513 §5.1.3)
    "directory_unavailable": "search", "user_not_found": "search", "ambiguous_user": "search",
    "invalid_credentials": "bind", "empty_password": "bind", "account_locked": "bind",
    # any protocol: configuration and provisioning
    "connection_misconfigured": "request_sent", "connection_inactive": "request_sent",
    "invalid_subject": "attributes", "email_required": "attributes",
    "provisioning_disabled": "provisioning", "user_disabled": "provisioning", "not_provisioned": "provisioning",
    "email_not_verified": "email_domain",
}
#: Steps whose failure means something else for SAML than for OIDC.
_SAML_FAILED_STEP = {"expired": "validity", "malformed": "response", "wrong_issuer": "issuer",
                     "state_invalid": "in_response_to"}
_OIDC_FAILED_STEP = {"malformed": "id_token_signature"}

#: What to change at the IdP, per failure reason (then per failed step).
_REMEDIES: dict[str, str] = {
    "untrusted_certificate": "The IdP signed with a certificate this connection does not trust. Upload the IdP's "
                             "current signing certificate (or re-import its metadata) in the connection, or make "
                             "the IdP sign with the certificate configured here.",
    "bad_signature": "The signature does not verify with the configured certificate. Re-import the IdP's metadata "
                     "or upload its current signing certificate.",
    "unsigned": "Configure the IdP to sign the SAML Response or the Assertion (RSA-SHA256).",
    "sha1_refused": "Configure the IdP to sign with RSA-SHA256 instead of SHA-1.",
    "algorithm_not_allowed": "Configure the IdP to sign with RSA-SHA256 (or ECDSA-SHA256).",
    "alg_not_allowed": "Configure the IdP to sign ID tokens with RS256 or ES256.",
    "wrong_destination": "Set the IdP's ACS (reply) URL to exactly the connection's acs_url.",
    "wrong_recipient": "Set the IdP's ACS (reply) URL to exactly the connection's acs_url.",
    "wrong_audience": "Set the IdP's audience (SP entity ID / client id) to exactly the value shown for this "
                      "connection.",
    "wrong_issuer": "The IdP's issuer (entity ID) differs from the one configured: re-import its metadata or "
                    "correct the issuer in the connection.",
    "issuer_mismatch": "The IdP's issuer differs from the one configured: correct the issuer in the connection.",
    "expired": "Check the IdP's clock (and the token or assertion lifetime): the answer had already expired.",
    "not_yet_valid": "The IdP's clock is ahead of Keyhall's: synchronise it (NTP).",
    "issued_in_future": "The IdP's clock is ahead of Keyhall's: synchronise it (NTP).",
    "nonce_mismatch": "The IdP must return the nonce it was sent in the ID token; start the test again.",
    "in_response_to_mismatch": "The IdP answered another request; start the test again from Keyhall.",
    "unsolicited": "Start the sign-in from Keyhall, or allow IdP-initiated sign-in on the connection.",
    "replayed": "The same assertion arrived twice; start the test again.",
    "status_not_success": "The IdP refused to sign the person in: check that the user is assigned to the "
                          "application at the IdP.",
    "token_error": "The IdP refused the code exchange: check the client id and secret, and that the redirect URI "
                   "registered at the IdP is exactly the connection's redirect_uri.",
    "idp_unreachable": "Keyhall could not reach the IdP: check its URLs and that Keyhall's network may reach it.",
    "user_not_found": "No directory entry matched the username: check the user search base and filter.",
    "invalid_credentials": "The directory refused the password: check the username and password used.",
    "directory_unavailable": "Keyhall could not reach the directory: check host, port, TLS and the service "
                             "account.",
    "invalid_subject": "Configure the IdP to send a stable identifier (sub or NameID) of at most 255 characters.",
    "email_required": "Configure the IdP to send the person's email in the attribute the connection maps to email.",
    "provisioning_disabled": "Just-in-time provisioning is off for this connection: create the user first or turn "
                             "user_provisioning on.",
    "connection_misconfigured": "Complete the connection's IdP settings (entity ID, SSO URL, certificate or "
                                "endpoints).",
}
_STEP_REMEDIES: dict[str, str] = {
    "signature": "Check the IdP's signing certificate and algorithm against the connection's configuration.",
    "id_token_signature": "Check the IdP's signing keys (JWKS) and algorithm (RS256 or ES256).",
    "idp_response": "Start the test again from Keyhall in the same browser; check the IdP's redirect URI.",
    "tenant": "Sign in with an account of the organization's own tenant, or correct the tenant configured.",
    "attributes": "Check which attributes the IdP sends and the connection's attribute mappings.",
}
DEFAULT_REMEDY = "Check the connection's settings against the IdP's, then run the test again."

#: Attribute names never kept in a trace, whatever their values (compared lower-case, without separators).
_PASSWORD_NAMES = ("password", "userpassword", "passwd", "secret", "unicodepwd", "pwd")


def failed_step(protocol: str, reason: str) -> str:
    """The step a failure ``reason`` belongs to (``idp_error:*`` is the IdP's answer)."""
    if reason.startswith("idp_error:"):
        return "idp_response"
    special = _SAML_FAILED_STEP if protocol == Protocol.SAML.value else _OIDC_FAILED_STEP
    return special.get(reason) or _FAILED_STEP.get(reason) or "sign_in"


def remedy(protocol: str, reason: str) -> str:
    """What to change (at the IdP, mostly) so that a sign-in failing for ``reason`` succeeds."""
    if reason.startswith("idp_error:"):
        return ("The IdP answered with an error: check that the user is assigned to the application and that the "
                "redirect URI registered at the IdP is exactly the connection's redirect_uri.")
    return _REMEDIES.get(reason) or _STEP_REMEDIES.get(failed_step(protocol, reason)) or DEFAULT_REMEDY


def trace_steps(protocol: str, notes: TraceNotes, *, failed_reason: str | None = None,
                failure_detail: str | None = None) -> list[TraceStep]:
    """The steps in order: passed (with their evidence), the failed one, then skipped ones.

    A step without evidence on a successful sign-in did not apply (skipped); on a failed one, a
    step before the failing check passed even when it left no note."""
    catalogue = STEPS.get(protocol, ("request_sent", *COMMON_TAIL))
    failing = failed_step(protocol, failed_reason) if failed_reason else None
    if failing is not None and failing not in catalogue:
        catalogue = (*catalogue, failing)
    steps: list[TraceStep] = []
    reached_failure = False
    for name in catalogue:
        if name == failing:
            detail = failure_detail or f"failed: {failed_reason}"
            steps.append(TraceStep(name, StepOutcome.FAILED, detail))
            reached_failure = True
        elif reached_failure:
            steps.append(TraceStep(name, StepOutcome.SKIPPED, "not reached"))
        elif name in notes.evidence:
            steps.append(TraceStep(name, StepOutcome.PASSED, notes.evidence[name]))
        elif failing is not None:
            steps.append(TraceStep(name, StepOutcome.PASSED, "checked"))
        else:
            steps.append(TraceStep(name, StepOutcome.SKIPPED, "not applicable"))
    return steps


def _is_password_name(name: str) -> bool:
    flat = "".join(ch for ch in name.lower() if ch.isalnum())
    return any(flat.endswith(word) for word in _PASSWORD_NAMES)


def redact_attributes(attributes: Mapping[str, Any], mappings: Mapping[str, str]) -> list[MappedAttribute]:
    """The attributes received (values as text, at most 20 per attribute of 256 characters each)
    and the profile fields ``mappings`` (field → attribute name, the connection's) read from each.
    A password-like attribute is dropped entirely."""
    defaults = {"email": "email", "email_verified": "email_verified", "name": "name", "given_name": "given_name",
                "family_name": "family_name", "groups": "groups"}
    sources: dict[str, list[str]] = {}
    for profile_field, source in {**defaults, **mappings}.items():
        if source:
            sources.setdefault(str(source), []).append(profile_field)
    kept: list[MappedAttribute] = []
    for name, raw in list(attributes.items())[:100]:
        if _is_password_name(str(name)):
            continue
        values = raw if isinstance(raw, list | tuple) else [raw]
        shown = [(str(v).lower() if isinstance(v, bool) else str(v))[:256] for v in values[:20]
                 if v is not None and not isinstance(v, dict | list)]
        kept.append(MappedAttribute(name=str(name)[:256], values=shown, mapped_to=sources.get(str(name), [])))
    return kept


def redact_text(text: str | None, limit: int = 500) -> str | None:
    """A detail as it may be stored: clipped; a value that looks like a JWT or base64 XML is masked."""
    if text is None:
        return None
    words = [SECRET_MASK if (word.count(".") >= 2 and len(word) > 60) or len(word) > 200 else word
             for word in text.split(" ")]
    joined = " ".join(words)
    return joined if len(joined) <= limit else joined[: limit - 3] + "..."


def new_trace(*, organization_id: str, connection_id: str, protocol: str, kind: TraceKind, notes: TraceNotes,
              mappings: Mapping[str, str], now: datetime, started_by: str | None = None,
              failure: tuple[str, str, str | None] | None = None,
              browser_binding: str | None = None) -> SignInTrace:
    """A trace from what the sign-in learned; ``failure``: (reason, message for the person, detail)."""
    reason, message, detail = failure if failure else (None, None, None)
    steps = trace_steps(protocol, notes, failed_reason=reason,
                        failure_detail=redact_text(notes.failure_detail or detail or message))
    return SignInTrace(
        id=str(uuid.uuid4()), organization_id=organization_id, connection_id=connection_id, protocol=protocol,
        kind=kind, outcome=StepOutcome.FAILED if reason else StepOutcome.PASSED, steps=steps,
        attributes=redact_attributes(notes.attributes, mappings), profile=dict(notes.profile),
        failure={"reason": reason, "message": str(message), "remedy": remedy(protocol, reason)} if reason else None,
        started_by=started_by, user_id=notes.user_id, created_at=now, browser_binding=browser_binding,
    )
