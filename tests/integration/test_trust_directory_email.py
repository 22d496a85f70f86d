"""SAML and LDAP directories vouch for their addresses only in domains their organization verified.

SAML assertions and LDAP entries say nothing of email verification: the organization's own
directory asserting an address counts as the IdP's word, and Keyhall's ``email_verified`` also
needs the domain DNS-verified by that organization. Before the fix, a domain merely listed on the
connection was enough. Against the npm saml-idp, slapd, the test DNS server and the live Keyhall.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_ldap_signin_e2e import LdapSetup, make_ldap_setup, submit
from tests.integration.test_ldap_signin_e2e import browser as ldap_browser
from tests.integration.test_ldap_signin_e2e import product_client as ldap_product
from tests.integration.test_ldap_signin_e2e import start as ldap_start
from tests.integration.test_ldap_signin_e2e import verify_id_token as ldap_id_token
from tests.integration.test_saml_signin_e2e import (
    SamlSetup,
    follow_completion,
    make_saml_setup,
    new_browser,
    post_acs,
    product_client,
    redeem,
    start,
)
from tests.support.api import auth
from tests.support.live import LiveKeyhall
from tests.support.saml_idp import SamlIdp
from tests.support.slapd import Slapd
from tests.support.trust import new_organization

pytestmark = pytest.mark.peers

DIRECTORY_DOMAIN = "example.test"  # the test directory's addresses (tests/support/slapd.py)


@pytest.fixture
def saml(live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> Iterator[SamlSetup]:
    yield make_saml_setup(live_keyhall, saml_idp, "SamlTrust")
    saml_idp.reset()


def saml_claims(s: SamlSetup, email: str) -> dict[str, Any]:
    """A SAML sign-in in which the organization's IdP asserts ``email``; the ID token's claims."""
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        user = s.user("alice", email=email, userName=email)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=user)
        done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
        assert done.status_code == 303, done.text
        return redeem(s, product, done.headers["location"], started)


def test_a_saml_directory_is_trusted_only_for_its_organizations_verified_domains(
        saml: SamlSetup, live_keyhall: LiveKeyhall) -> None:
    s = saml
    victim_domain = f"victim-{uuid.uuid4().hex[:8]}.test"
    victim, victim_owner = new_organization(live_keyhall, "SamlVictim")
    live_keyhall.verify_domain(victim["id"], victim_owner, victim_domain)

    listed = saml_claims(s, f"alice@{s.domain}")
    assert listed["email"] == f"alice@{s.domain}"
    assert listed["email_verified"] is False  # routed by the connection, but not proven

    live_keyhall.verify_domain(s.org["id"], s.owner, s.domain)
    assert saml_claims(s, f"alice@{s.domain}")["email_verified"] is True
    forged = saml_claims(s, f"ceo@{victim_domain}")
    assert forged["email"] == f"ceo@{victim_domain}"
    assert forged["email_verified"] is False


def ldap_claims(s: LdapSetup, slapd: Slapd) -> dict[str, Any]:
    with ldap_browser() as client, ldap_product(s) as product:
        started = ldap_start(s, client, product)
        done = submit(client, started.form, "alice", slapd.passwords["alice"])
        assert done.status_code == 303, done.text
        token = product.fetch_token(f"{s.live.url}/oauth2/token", authorization_response=done.headers["location"],
                                    state=started.state, code_verifier=started.verifier)
    return ldap_id_token(s, token["id_token"])


def test_an_ldap_directory_is_trusted_only_for_its_organizations_verified_domains(
        live_keyhall: LiveKeyhall, slapd: Slapd) -> None:
    s = make_ldap_setup(live_keyhall, slapd, "LdapTrust")
    with s.live.api() as api:
        listed = api.patch(s.connection_path, json={"domains": [s.domain, DIRECTORY_DOMAIN]}, headers=auth(s.owner))
        assert listed.status_code == 200, listed.text

    claims = ldap_claims(s, slapd)
    assert claims["email"] == f"alice@{DIRECTORY_DOMAIN}"
    assert claims["email_verified"] is False  # listed on the connection, not proven

    live_keyhall.verify_domain(s.org["id"], s.owner, DIRECTORY_DOMAIN)
    assert ldap_claims(s, slapd)["email_verified"] is True
