"""Test sign-ins and sign-in traces, end to end against the real peers (npm oidc-provider and
saml-idp) on the session's live Keyhall: an owner asks for a test sign-in URL, a browser (httpx, one
cookie jar) opens it and signs in at the IdP for real, and lands on the result page; the trace is
readable through the API, redacted, by the organization only; no application receives a code."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import httpx
import pytest
from sqlalchemy import func, select

from keyhall.core.vocabulary import Role
from keyhall.storage.models import AuthorizationCodeRow
from tests.integration.test_ldap_signin_e2e import Form, make_ldap_setup, submit
from tests.integration.test_ldap_signin_e2e import product_client as ldap_product
from tests.integration.test_ldap_signin_e2e import start as start_ldap
from tests.integration.test_saml_signin_e2e import ATTRIBUTE_MAPPINGS, SamlSetup, make_saml_setup
from tests.support.accessibility import assert_accessible
from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp
from tests.support.saml_idp import SamlIdp
from tests.support.saml_material import make_certificate
from tests.support.slapd import Slapd, user_dn

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

pytestmark = pytest.mark.peers

RESULTS = "/test-sign-in/results/"


def browser() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=15, follow_redirects=False)


def start_test(live: LiveKeyhall, org_id: str, cid: str, token: str) -> httpx.Response:
    with live.api() as api:
        return api.post(f"/v1/organizations/{org_id}/connections/{cid}/test-sign-in", headers=auth(token))


def open_link(client: httpx.Client, url: str) -> str:
    """Open the test link; the IdP URL it sends the browser to."""
    opened = client.get(url)
    assert opened.status_code == 303, opened.text
    return opened.headers["location"]


def codes_issued(live: LiveKeyhall) -> int:
    with live.runtime.database.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(AuthorizationCodeRow)).scalar_one())


def get_json(live: LiveKeyhall, path: str, token: str, **params: Any) -> httpx.Response:
    with live.api() as api:
        return api.get(path, params=params, headers=auth(token))


def trace_of(live: LiveKeyhall, org_id: str, token: str, result_location: str) -> dict[str, Any]:
    trace_id = result_location.rsplit("/", 1)[-1]
    got = get_json(live, f"/v1/organizations/{org_id}/sign-in-traces/{trace_id}", token)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def steps_of(trace: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {s["name"]: (s["outcome"], s["detail"]) for s in trace["steps"]}


def assert_redacted(text: str, *secrets: str) -> None:
    for forbidden in ("eyJ", "PHNhbWxw", "PD94bWw", "SAMLResponse", "BEGIN", *secrets):
        assert forbidden not in text, forbidden


@pytest.fixture
def oidc_setup(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Tracer")


@pytest.fixture
def saml_setup(live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> SamlSetup:
    return make_saml_setup(live_keyhall, saml_idp, "TraceSaml")


def connection_of(live: LiveKeyhall, s: SignInSetup) -> dict[str, Any]:
    got = get_json(live, f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}", s.owner)
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


def test_oidc_test_sign_in_passes_marks_verified_and_issues_no_code(oidc_setup: SignInSetup) -> None:
    s, live = oidc_setup, oidc_setup.live
    assert s.connection["is_verified"] is False
    started = start_test(live, s.org["id"], s.connection["id"], s.owner)
    assert started.status_code == 201, started.text
    link = started.json()
    assert link["url"].startswith(f"{live.url}/test-sign-in/")
    assert link["expires_at"]
    codes_before = codes_issued(live)

    with browser() as admin:
        idp_url = open_link(admin, link["url"])
        assert idp_url.startswith(s.idp.base_url)
        callback = s.idp.scripted_login(idp_url, "alice")
        done = admin.get(callback)
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith(RESULTS)
        assert "code=" not in location
        page = admin.get(urljoin(live.url, location))
        assert page.status_code == 200, page.text
        assert "Test sign-in passed" in page.text
        assert "ID token signature and algorithm" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # The link is single use.
        assert admin.get(link["url"]).status_code == 404

    with browser() as stranger:  # another browser (no cookie) cannot read the result page
        assert stranger.get(urljoin(live.url, location)).status_code == 404
        stranger.cookies.set("keyhall_login", "not-the-test")
        assert stranger.get(urljoin(live.url, location)).status_code == 404

    assert codes_issued(live) == codes_before  # no application received a code
    assert connection_of(live, s)["is_verified"] is True
    trace = trace_of(live, s.org["id"], s.owner, location)
    assert trace["kind"] == "test"
    assert trace["outcome"] == "passed"
    assert trace["failure"] is None
    steps = steps_of(trace)
    assert [n for n in steps][:9] == ["request_sent", "idp_response", "token_call", "id_token_signature", "issuer",
                                      "audience", "nonce", "expiry", "tenant"]
    assert all(outcome == "passed" for outcome, _ in steps.values()), steps
    assert "RS256" in steps["id_token_signature"][1]
    assert s.idp.issuer in steps["issuer"][1]
    assert "clock skew" in steps["expiry"][1]
    assert "not a verified domain" in steps["email_domain"][1]
    emails = [a["values"] for a in trace["attributes"] if a["name"] == "email"]
    assert emails == [[trace["profile"]["email"]]]
    assert trace["profile"]["email_verified"] is False
    assert {a["name"] for a in trace["attributes"]} >= {"sub", "email"}
    assert_redacted(json.dumps(trace))


def test_saml_test_sign_in_passes_with_each_check(saml_setup: SamlSetup) -> None:
    s, live = saml_setup, saml_setup.live
    started = start_test(live, s.org["id"], s.cid, s.owner)
    assert started.status_code == 201, started.text
    with browser() as admin:
        idp_url = open_link(admin, started.json()["url"])
        assert idp_url.startswith(s.idp.sso_url + "?")
        action, saml_response, relay = s.idp.scripted_login(idp_url, user=s.user("alice"))
        done = admin.post(action, data={"SAMLResponse": saml_response, "RelayState": relay or ""})
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith(RESULTS)
        page = admin.get(urljoin(live.url, location))
        assert page.status_code == 200
        assert "Test sign-in passed" in page.text
        assert "InResponseTo" in page.text
        assert "Signature and algorithm" in page.text

    assert s.get_connection()["is_verified"] is True
    trace = trace_of(live, s.org["id"], s.owner, location)
    steps = steps_of(trace)
    assert list(steps)[:10] == ["request_sent", "response", "signature", "destination", "issuer", "audience",
                                "validity", "recipient", "in_response_to", "replay"]
    assert all(outcome == "passed" for outcome, _ in steps.values()), steps
    assert "rsa-sha256" in steps["signature"][1]
    assert s.idp.entity_id in steps["issuer"][1]
    assert s.idp.sp_entity_id in steps["audience"][1]
    assert s.acs_url in steps["destination"][1]
    mapped = {a["name"]: a["mapped_to"] for a in trace["attributes"]}
    assert mapped["email"] == ["email"]
    assert mapped["firstName"] == ["given_name"]
    assert trace["attributes"][0]["name"] == "NameID"
    assert trace["profile"]["given_name"] == "Alice"
    assert_redacted(json.dumps(trace), saml_response[:40])


def test_saml_wrong_certificate_fails_on_the_signature_step_with_a_remedy(
        live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> None:
    other_cert, _key = make_certificate("not-the-idp")
    s = make_saml_setup(live_keyhall, saml_idp, "WrongCert", pin_certificate=False)
    with live_keyhall.api() as api:  # the connection trusts another certificate only, and no metadata
        patched = api.patch(s.connection_path, json={"saml": {
            "metadata_url": None, "idp_entity_id": saml_idp.entity_id, "sso_url": saml_idp.sso_url,
            "certificates": [other_cert], "auto_update_certificates": False}}, headers=auth(s.owner))
        assert patched.status_code == 200, patched.text
    started = start_test(live_keyhall, s.org["id"], s.cid, s.owner)
    assert started.status_code == 201, started.text
    with browser() as admin:
        idp_url = open_link(admin, started.json()["url"])
        action, saml_response, relay = saml_idp.scripted_login(idp_url, user=s.user("bob"))
        done = admin.post(action, data={"SAMLResponse": saml_response, "RelayState": relay or ""})
        assert done.status_code == 303, done.text
        location = done.headers["location"]
        assert location.startswith(RESULTS)
        page = admin.get(urljoin(live_keyhall.url, location))
        assert page.status_code == 200
        assert "Test sign-in failed" in page.text
        assert 'role="alert"' in page.text
        assert "certificate" in page.text

    assert s.get_connection()["is_verified"] is False
    trace = trace_of(live_keyhall, s.org["id"], s.owner, location)
    assert trace["outcome"] == "failed"
    assert trace["failure"]["reason"] == "untrusted_certificate"
    assert "certificate" in trace["failure"]["remedy"]
    steps = steps_of(trace)
    assert steps["signature"][0] == "failed"
    assert steps["response"][0] == "passed"
    assert steps["request_sent"][0] == "passed"
    assert steps["destination"][0] == "skipped"
    assert steps["provisioning"][0] == "skipped"
    assert_redacted(json.dumps(trace), saml_response[:40])


def test_traces_api_filters_pages_and_hides_other_organizations(
        live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> None:
    s = make_saml_setup(live_keyhall, saml_idp, "TraceList")
    org_path = f"/v1/organizations/{s.org['id']}"
    for _ in range(2):  # two failed test sign-ins: a forged response at the ACS after opening the link
        started = start_test(live_keyhall, s.org["id"], s.cid, s.owner)
        with browser() as admin:
            idp_url = open_link(admin, started.json()["url"])
            relay = httpx.URL(idp_url).params["RelayState"]
            done = admin.post(s.acs_url, data={"SAMLResponse": "bm90IHhtbA==", "RelayState": relay})
            assert done.status_code == 303, done.text
            assert done.headers["location"].startswith(RESULTS)
    viewer = live_keyhall.issue_key(s.org["id"], Role.VIEWER)
    listed = get_json(live_keyhall, f"{org_path}/sign-in-traces", viewer, limit=1, outcome="failed",
                      connection_id=s.cid)
    assert listed.status_code == 200, listed.text
    first = listed.json()
    assert len(first["data"]) == 1
    assert first["next_cursor"]
    second = get_json(live_keyhall, f"{org_path}/sign-in-traces", viewer, limit=1, outcome="failed",
                      connection_id=s.cid, cursor=first["next_cursor"]).json()
    assert len(second["data"]) == 1
    assert second["data"][0]["id"] != first["data"][0]["id"]
    assert second["data"][0]["failure"]["reason"] == "malformed"
    assert get_json(live_keyhall, f"{org_path}/sign-in-traces", viewer, outcome="passed",
                    connection_id=s.cid).json()["data"] == []
    assert get_json(live_keyhall, f"{org_path}/sign-in-traces", viewer, outcome="maybe").status_code == 400
    assert_redacted(json.dumps(first) + json.dumps(second), "bm90IHhtbA")

    # A viewer may read but not start a test sign-in; another organization sees nothing of it.
    assert start_test(live_keyhall, s.org["id"], s.cid, viewer).status_code == 403
    with live_keyhall.api() as api:
        other = api.post("/v1/organizations", json={"name": f"Other {uuid.uuid4().hex[:8]}"},
                         headers=auth(live_keyhall.instance_token)).json()
    stranger = live_keyhall.issue_key(other["id"], Role.OWNER)
    trace_id = first["data"][0]["id"]
    assert get_json(live_keyhall, f"{org_path}/sign-in-traces/{trace_id}", stranger).status_code == 404
    assert get_json(live_keyhall, f"/v1/organizations/{other['id']}/sign-in-traces/{trace_id}",
                    stranger).status_code == 404
    assert start_test(live_keyhall, s.org["id"], s.cid, stranger).status_code == 404
    assert start_test(live_keyhall, other["id"], s.cid, stranger).status_code == 404
    assert get_json(live_keyhall, f"/v1/organizations/{other['id']}/sign-in-traces", stranger).json()["data"] == []

    # An inactive connection cannot be tested: 409 naming the field; the start of a test is audited.
    with live_keyhall.api() as api:
        patched = api.patch(s.connection_path, json={"status": "inactive"}, headers=auth(s.owner))
        assert patched.status_code == 200, patched.text
    refused = start_test(live_keyhall, s.org["id"], s.cid, s.owner)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["details"]["field"] == "status"
    audit = get_json(live_keyhall, f"{org_path}/audit-events", s.owner, action="connection.test_sign_in_started",
                     target_id=s.cid).json()["data"]
    assert len(audit) == 2


def test_a_failed_real_sign_in_leaves_a_trace(saml_setup: SamlSetup) -> None:
    """A real sign-in (no test) that fails at the ACS is traced too, as kind ``sign_in``."""
    s = saml_setup
    with browser() as person:
        refused = person.post(s.acs_url, data={"SAMLResponse": "bm90IHhtbA=="})
        assert refused.status_code == 400
    listed = get_json(s.live, f"/v1/organizations/{s.org['id']}/sign-in-traces", s.owner, connection_id=s.cid)
    traces = listed.json()["data"]
    assert [t["kind"] for t in traces] == ["sign_in"]
    assert traces[0]["failure"]["reason"] == "malformed"
    assert traces[0]["failure"]["remedy"]
    assert ATTRIBUTE_MAPPINGS  # the connection maps saml-idp's attributes (nothing received here)
    assert traces[0]["attributes"] == []


def test_saml_test_sign_in_in_chromium_shows_each_check(
        live_keyhall: LiveKeyhall, saml_idp: SamlIdp, browser_context: BrowserContext) -> None:
    """The whole test in a real browser: the link, saml-idp's form and auto-post, the result page;
    with the organization's domain verified, the email-domain verdict says email_verified is vouched."""
    from playwright.sync_api import expect

    s = make_saml_setup(live_keyhall, saml_idp, "TraceBrowser")
    live_keyhall.verify_domain(s.org["id"], s.owner, s.domain)
    started = start_test(live_keyhall, s.org["id"], s.cid, s.owner)
    assert started.status_code == 201, started.text
    page = browser_context.new_page()
    page.goto(started.json()["url"])
    page.wait_for_url(saml_idp.sso_url + "?**")
    for field, value in (("#userName", f"erin@{s.domain}"), ("#email", f"erin@{s.domain}"), ("#firstName", "Erin"),
                         ("#lastName", "Eames"), ("#displayName", "Erin Eames")):
        page.locator(field).fill(value)
    page.locator("#btn-sign-in").click()
    page.wait_for_url(f"{live_keyhall.url}{RESULTS}**")
    expect(page.get_by_role("heading", name="Test sign-in passed")).to_be_visible()
    expect(page.get_by_role("rowheader", name="Signature and algorithm")).to_be_visible()
    expect(page.get_by_text(f"{s.domain} is a verified domain of this organization")).to_be_visible()
    expect(page.get_by_role("rowheader", name="firstName")).to_be_visible()
    assert_accessible(page)
    assert s.get_connection()["is_verified"] is True


def test_ldap_test_sign_in_binds_for_real_and_a_wrong_password_fails_the_bind_step(
        live_keyhall: LiveKeyhall, slapd: Slapd) -> None:
    s = make_ldap_setup(live_keyhall, slapd, "TraceLdap")
    org_path = f"/v1/organizations/{s.org['id']}"

    def run(password: str) -> dict[str, Any]:
        started = start_test(live_keyhall, s.org["id"], s.cid, s.owner)
        assert started.status_code == 201, started.text
        with browser() as admin:
            form_url = urljoin(live_keyhall.url, open_link(admin, started.json()["url"]))
            assert form_url.startswith(f"{s.form_url}?tx=")
            page = admin.get(form_url)
            assert page.status_code == 200, page.text
            done = submit(admin, Form.parse(page), "alice", password)
            assert done.status_code == 303, done.text
            location = done.headers["location"]
            assert location.startswith(RESULTS)
            assert admin.get(urljoin(live_keyhall.url, location)).status_code == 200
        return trace_of(live_keyhall, s.org["id"], s.owner, location)

    refused = run("not-the-password")
    assert refused["failure"]["reason"] == "invalid_credentials"
    assert steps_of(refused)["bind"][0] == "failed"
    assert steps_of(refused)["search"][0] == "passed"
    assert get_json(live_keyhall, f"{org_path}/connections/{s.cid}", s.owner).json()["is_verified"] is False

    passed = run(slapd.passwords["alice"])
    assert passed["outcome"] == "passed"
    assert user_dn("alice") in steps_of(passed)["search"][1]
    assert passed["profile"]["email"]
    assert get_json(live_keyhall, f"{org_path}/connections/{s.cid}", s.owner).json()["is_verified"] is True
    assert_redacted(json.dumps([refused, passed]), slapd.passwords["alice"], slapd.service_password)

    # A real sign-in (through a product) with a wrong password is traced too, without the password.
    with browser() as person:
        wrong = submit(person, start_ldap(s, person, ldap_product(s), "bob").form, "bob", "wrong-password-typed")
        assert wrong.status_code == 401
    real = get_json(live_keyhall, f"{org_path}/sign-in-traces", s.owner, connection_id=s.cid, outcome="failed")
    sign_ins = [t for t in real.json()["data"] if t["kind"] == "sign_in"]
    assert [t["failure"]["reason"] for t in sign_ins] == ["invalid_credentials"]
    assert steps_of(sign_ins[0])["bind"][0] == "failed"
    assert_redacted(json.dumps(sign_ins), "wrong-password-typed", slapd.passwords["bob"])
