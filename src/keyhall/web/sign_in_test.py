"""The test sign-in's browser pages: the single-use link an administrator opens, and the result
page that only the browser which ran the test can read (``keyhall.login.sign_in_test``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from keyhall.api.deps import RuntimeDep, UowDep
from keyhall.api.http import request_id
from keyhall.login import sign_in_test
from keyhall.login.flow import LoginFailed
from keyhall.web.rendering import fail, login_cookie, login_error_page, page, render, set_login_cookie

router = APIRouter(tags=["pages"], include_in_schema=False)

STEP_NAMES = {
    "request_sent": "Request sent", "idp_response": "IdP's answer", "token_call": "Token call",
    "id_token_signature": "ID token signature and algorithm", "issuer": "Issuer", "audience": "Audience",
    "nonce": "Nonce", "expiry": "Expiry and clock skew", "tenant": "Tenant", "response": "SAML Response",
    "signature": "Signature and algorithm", "destination": "Destination", "validity": "NotBefore / NotOnOrAfter",
    "recipient": "Recipient", "in_response_to": "InResponseTo", "replay": "Replay", "search": "Directory search",
    "bind": "Bind", "attributes": "Attributes and mapping", "email_domain": "Email domain",
    "provisioning": "Provisioning", "sign_in": "Sign-in",
}
OUTCOME_MARKS = {"passed": "✓", "failed": "✗", "skipped": "○"}


@router.get("/test-sign-in/{ticket}")
def open_test(ticket: str, request: Request, uow: UowDep, runtime: RuntimeDep) -> Response:
    try:
        opened = sign_in_test.open_ticket(uow, runtime, ticket, request_id=request_id(request))
    except LoginFailed as exc:
        if exc.reason == "test_link_invalid":
            return login_error_page("Test sign-in link not valid", exc.message, status=404)
        return fail(uow, runtime, request, exc)
    response = render(opened.step)
    set_login_cookie(response, opened.browser_secret, runtime.settings.public_url)
    return response


@router.get("/test-sign-in/results/{trace_id}")
def test_result(trace_id: str, request: Request, uow: UowDep) -> Response:
    trace = sign_in_test.result(uow, trace_id, login_cookie(request))
    if trace is None:
        return login_error_page("Not found", "There is no test sign-in result here for this browser.", status=404)
    title = "Test sign-in failed" if trace.failure else "Test sign-in passed"
    return page("test_result.html", title=title, trace=trace, step_names=STEP_NAMES, outcome_marks=OUTCOME_MARKS)
