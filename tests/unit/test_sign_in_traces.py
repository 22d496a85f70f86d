"""The pure rules of sign-in traces (``keyhall.core.sign_in_traces``): step order and outcomes,
the failing step per reason, remedies, and redaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyhall.core.sign_in_traces import (
    STEPS,
    StepOutcome,
    TraceKind,
    TraceNotes,
    failed_step,
    new_trace,
    redact_attributes,
    redact_text,
    remedy,
    trace_steps,
)
from keyhall.core.vocabulary import SECRET_MASK

NOW = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def outcomes(protocol: str, notes: TraceNotes, reason: str | None = None) -> dict[str, StepOutcome]:
    return {s.name: s.outcome for s in trace_steps(protocol, notes, failed_reason=reason)}


def test_a_failure_passes_the_steps_before_and_skips_the_steps_after() -> None:
    notes = TraceNotes()
    notes.passed("request_sent", "AuthnRequest to https://idp.example/sso")
    steps = trace_steps("saml", notes, failed_reason="untrusted_certificate", failure_detail="no pinned key")
    assert [s.name for s in steps] == list(STEPS["saml"])
    by_name = {s.name: s for s in steps}
    assert by_name["request_sent"].detail == "AuthnRequest to https://idp.example/sso"
    assert by_name["response"].outcome is StepOutcome.PASSED
    assert by_name["signature"].outcome is StepOutcome.FAILED
    assert by_name["signature"].detail == "no pinned key"
    assert {by_name[n].outcome for n in ("destination", "replay", "provisioning")} == {StepOutcome.SKIPPED}


def test_success_without_a_note_means_the_check_did_not_apply() -> None:
    notes = TraceNotes()
    for name in STEPS["oidc"]:
        if name != "tenant":
            notes.passed(name, "ok")
    found = outcomes("oidc", notes)
    assert found["tenant"] is StepOutcome.SKIPPED
    assert {v for k, v in found.items() if k != "tenant"} == {StepOutcome.PASSED}


@pytest.mark.parametrize(("protocol", "reason", "step"), [
    ("oidc", "wrong_issuer", "issuer"), ("oidc", "expired", "expiry"), ("oidc", "nonce_mismatch", "nonce"),
    ("oidc", "alg_not_allowed", "id_token_signature"), ("oidc", "malformed", "id_token_signature"),
    ("oidc", "idp_error:access_denied", "idp_response"), ("oidc", "token_error", "token_call"),
    ("saml", "expired", "validity"), ("saml", "malformed", "response"), ("saml", "wrong_recipient", "recipient"),
    ("saml", "in_response_to_mismatch", "in_response_to"), ("saml", "replayed", "replay"),
    ("saml", "sha1_refused", "signature"), ("ldap", "invalid_credentials", "bind"),
    ("oidc", "provisioning_disabled", "provisioning"),
])
def test_each_reason_fails_its_step(protocol: str, reason: str, step: str) -> None:
    assert failed_step(protocol, reason) == step
    assert outcomes(protocol, TraceNotes(), reason)[step] is StepOutcome.FAILED


def test_an_unknown_reason_fails_a_sign_in_step_of_its_own() -> None:
    found = outcomes("saml", TraceNotes(), "something_new")
    assert found["sign_in"] is StepOutcome.FAILED
    assert set(found.values()) == {StepOutcome.PASSED, StepOutcome.FAILED}


def test_remedies_say_what_to_change_at_the_idp() -> None:
    assert "certificate" in remedy("saml", "untrusted_certificate")
    assert "acs_url" in remedy("saml", "wrong_destination")
    assert "clock" in remedy("oidc", "issued_in_future")
    assert "redirect" in remedy("oidc", "idp_error:access_denied")
    assert remedy("saml", "something_new")  # never empty


def test_attributes_keep_values_and_mappings_but_never_a_password() -> None:
    kept = redact_attributes({"mail": ["a@corp.example"], "userPassword": ["hunter2"], "client_secret": "s",
                              "memberOf": ["cn=eng", "cn=ops"], "verified": True, "nested": [{"x": 1}]},
                             {"email": "mail", "groups": "memberOf"})
    by_name = {a.name: a for a in kept}
    assert "userPassword" not in by_name
    assert "client_secret" not in by_name
    assert by_name["mail"].values == ["a@corp.example"]
    assert by_name["mail"].mapped_to == ["email"]
    assert by_name["memberOf"].mapped_to == ["groups"]
    assert by_name["verified"].values == ["true"]
    assert by_name["nested"].values == []


def test_details_that_look_like_tokens_are_masked() -> None:
    jwt_like = "eyJhbGciOiJSUzI1NiJ9." + "a" * 60 + ".sig"
    assert redact_text(f"got {jwt_like} back") == f"got {SECRET_MASK} back"
    assert redact_text("x" * 600) is not None
    assert len(redact_text("word " * 200) or "") == 500


def test_a_new_trace_carries_the_failure_and_the_binding() -> None:
    notes = TraceNotes(attributes={"email": ["a@b.example"]}, failure_detail="the Response is addressed elsewhere")
    trace = new_trace(organization_id="org", connection_id="conn", protocol="saml", kind=TraceKind.TEST,
                      notes=notes, mappings={}, now=NOW, started_by="key:k1",
                      failure=("wrong_destination", "Keyhall could not accept the sign-in", None),
                      browser_binding="b" * 64)
    assert trace.outcome is StepOutcome.FAILED
    assert trace.failure is not None
    assert trace.failure["reason"] == "wrong_destination"
    assert "acs_url" in trace.failure["remedy"]
    assert {s.name: s.detail for s in trace.steps}["destination"] == "the Response is addressed elsewhere"
    assert trace.browser_binding == "b" * 64
    assert trace.started_by == "key:k1"
