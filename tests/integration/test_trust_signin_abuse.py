"""Abuse of the sign-in pages: counters keyed by canonical values, and nobody's text in the audit trail.

- The LDAP attempt counter is keyed by the stored connection id and the lower-cased, stripped
  username: another spelling of the id in the URL (connection ids are case-insensitive) or of the
  username does not start a fresh counter.
- Text an unauthenticated request carries (an unsigned SAML Response's StatusMessage, an OIDC
  callback's ``error``) is not written into the organization's audit log: a typed reason is.

Against slapd, the npm saml-idp, the npm oidc-provider and the live Keyhall.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from tests.integration.test_ldap_signin_e2e import (
    PASSWORD_LIMIT,
    Form,
    LdapSetup,
    make_ldap_setup,
    slapd_searches_for,
    submit,
)
from tests.integration.test_ldap_signin_e2e import browser as ldap_browser
from tests.integration.test_ldap_signin_e2e import product_client as ldap_product
from tests.integration.test_ldap_signin_e2e import start as ldap_start
from tests.integration.test_saml_signin_e2e import (
    SamlSetup,
    assert_refused,
    failed_reason,
    make_saml_setup,
    new_browser,
    redirect_params,
)
from tests.integration.test_saml_signin_e2e import product_client as saml_product
from tests.integration.test_saml_signin_e2e import start as saml_start
from tests.support.live import LiveKeyhall, make_signin_setup
from tests.support.oidc_idp import OidcIdp
from tests.support.saml_idp import SamlIdp
from tests.support.slapd import Slapd
from tests.support.trust import failure_reason, login_failures, product_client

pytestmark = pytest.mark.peers


def test_ldap_counter_is_keyed_by_the_stored_connection_id_and_the_canonical_username(
        live_keyhall: LiveKeyhall, slapd: Slapd) -> None:
    s: LdapSetup = make_ldap_setup(live_keyhall, slapd, "Canon")
    name = f"canon-{uuid.uuid4().hex[:10]}"
    with ldap_browser() as client, ldap_product(s) as product:
        form = ldap_start(s, client, product).form
        for _ in range(PASSWORD_LIMIT):
            assert submit(client, form, name, "wrong").status_code == 401
        assert slapd_searches_for(slapd, f"(uid={name})") == PASSWORD_LIMIT
        # The same connection spelt in capitals, and the same username with spaces and capitals.
        variant = Form(action=form.action.replace(s.cid, s.cid.upper()), fields=form.fields, message=None,
                       html=form.html)
        for target, username in ((variant, name), (form, f"  {name.upper()} "), (variant, f" {name.upper()}")):
            limited = submit(client, target, username, "wrong")
            assert limited.status_code == 429, limited.text
        assert slapd_searches_for(slapd, f"(uid={name})") == PASSWORD_LIMIT  # nothing more reached the directory


@pytest.fixture
def saml(live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> Iterator[SamlSetup]:
    yield make_saml_setup(live_keyhall, saml_idp, "SamlText")
    saml_idp.reset()


def unsigned_failure(s: SamlSetup, message: str) -> str:
    """A Response anyone can write: not signed, status Responder, with a StatusMessage of their choosing."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (f'<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
           f'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_{uuid.uuid4().hex}" Version="2.0" '
           f'IssueInstant="{now}" Destination="{s.acs_url}"><saml:Issuer>{s.idp.entity_id}</saml:Issuer>'
           f'<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"/>'
           f'<samlp:StatusMessage>{message}</samlp:StatusMessage></samlp:Status></samlp:Response>')
    return base64.b64encode(xml.encode()).decode()


def test_an_unsigned_status_message_is_not_written_into_the_audit_log(saml: SamlSetup) -> None:
    s = saml
    ref = secrets.token_hex(6)
    planted = f"Your account is suspended, call +1-555-{secrets.randbelow(10**4):04d} (ref {ref})"
    with new_browser() as browser, saml_product(s) as product:
        started = saml_start(s, browser, product)
        relay = redirect_params(started.idp_url)["RelayState"]
        answer = browser.post(s.acs_url, data={"SAMLResponse": unsigned_failure(s, planted), "RelayState": relay})
    request_id = assert_refused(answer, status=400)
    assert failed_reason(s, request_id) == "status_not_success"
    recorded = json.dumps(s.audit("login.failed"))
    assert planted not in recorded
    assert "suspended" not in recorded
    assert "+1-555" not in recorded  # no part of it (ids in the record may hold any digits)
    assert ref not in recorded
    assert planted not in answer.text


def test_an_oidc_callbacks_error_text_is_not_written_into_the_audit_log(live_keyhall: LiveKeyhall,
                                                                         oidc_idp: OidcIdp) -> None:
    s = make_signin_setup(live_keyhall, oidc_idp, "ErrorText")
    planted = f"call-support-{secrets.token_hex(6)}"
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier="v" * 50,
                                                       connection=s.connection["id"])
        started = browser.get(url)
        state = dict(httpx.URL(started.headers["location"]).params)["state"]
        answer = browser.get(f"{s.live.url}/sso/{s.connection['id']}/oidc/callback",
                             params={"state": state, "error": planted, "error_description": planted})
    assert answer.status_code == 403
    assert failure_reason(s, answer.headers["x-request-id"]) == "idp_error:other"
    assert planted not in json.dumps(login_failures(s))
