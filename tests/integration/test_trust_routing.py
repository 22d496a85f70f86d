"""A sign-in can only end at a connection its routing allowed.

The connections a sign-in may use (and whether, and for which organization, password sign-in may
be used) are fixed when it is routed and stored with it. These tests play the person who edits
URLs: the product routed them to Acme (``domain=``, ``connection=``), and they try another
organization's connection, LDAP form or local account with the same sign-in. Against the real
npm oidc-provider, slapd and the live Keyhall.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urljoin

import httpx
import pytest

from tests.integration.test_ldap_signin_e2e import LdapSetup, audit_by_request, make_ldap_setup, slapd_binds_as
from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp
from tests.support.slapd import Slapd, user_dn
from tests.support.trust import failure_reason, login_failures, product_client

pytestmark = pytest.mark.peers

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def browser() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=15)


def authorize(s: SignInSetup, client: httpx.Client, **params: str) -> tuple[httpx.Response, str]:
    """The product (Acme's) sends the browser to Keyhall; returns Keyhall's answer and the sign-in's tx."""
    with product_client(s) as product:
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize",
                                                       code_verifier=secrets.token_urlsafe(48), **params)
    answer = client.get(url)
    return answer, client.cookies["keyhall_login"]


def csrf_of(s: SignInSetup, client: httpx.Client, tx: str) -> str:
    """The sign-in's form token, as any of its pages shows it to the person."""
    page = client.get(f"{s.live.url}/login", params={"tx": tx})
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def local_account(s: SignInSetup, email: str) -> None:
    with s.live.api() as api:
        made = api.post(f"/v1/organizations/{s.org['id']}/users", json={"email": email, "password": PASSWORD},
                        headers=auth(s.owner))
    assert made.status_code == 201, made.text


def password_sign_in(s: SignInSetup, client: httpx.Client, tx: str, email: str) -> httpx.Response:
    """Post the password form for this sign-in, whether or not Keyhall offered it."""
    return client.post(f"{s.live.url}/login/password",
                       data={"tx": tx, "csrf": csrf_of(s, client, tx), "email": email, "password": PASSWORD})


def assert_no_code(response: httpx.Response, s: SignInSetup, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:1500])
    assert s.product_redirect not in response.headers.get("location", "")
    return response.headers["x-request-id"]


@pytest.fixture
def acme(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Acme")


@pytest.fixture
def other(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Other")


def test_a_sign_in_routed_by_domain_cannot_be_switched_to_another_organizations_connection(
        acme: SignInSetup, other: SignInSetup) -> None:
    with browser() as client:
        routed, tx = authorize(acme, client, domain=acme.domain)
        assert routed.status_code == 303
        assert f"client_id={acme.connection['oidc']['client_id']}" in routed.headers["location"]

        for cid in (other.connection["id"], other.connection["id"].upper()):
            switched = client.get(f"{acme.live.url}/sso/{cid}/start", params={"tx": tx})
            request_id = assert_no_code(switched, acme, 403)
            assert "location" not in switched.headers  # never sent on to the other organization's IdP
            assert failure_reason(other, request_id) == "connection_not_routed"

        # The connection the routing chose still starts.
        allowed = client.get(f"{acme.live.url}/sso/{acme.connection['id']}/start", params={"tx": tx})
        assert allowed.status_code == 303
        assert allowed.headers["location"].startswith(acme.idp.base_url)


def test_a_routed_sign_in_cannot_use_another_organizations_ldap_form(
        acme: SignInSetup, live_keyhall: LiveKeyhall, slapd: Slapd) -> None:
    directory: LdapSetup = make_ldap_setup(live_keyhall, slapd, "OtherLdap")
    form_url = f"{live_keyhall.url}/sso/{directory.cid}/ldap"
    binds = slapd_binds_as(slapd, user_dn("alice"))
    with browser() as client:
        routed, tx = authorize(acme, client, domain=acme.domain)
        assert routed.status_code == 303
        shown = client.get(form_url, params={"tx": tx})
        assert failure_reason(directory, assert_no_code(shown, acme, 403)) == "connection_not_routed"
        posted = client.post(form_url, data={"tx": tx, "csrf": csrf_of(acme, client, tx), "username": "alice",
                                             "password": slapd.passwords["alice"]})
        assert failure_reason(directory, assert_no_code(posted, acme, 403)) == "connection_not_routed"
    assert slapd_binds_as(slapd, user_dn("alice")) == binds  # the password never reached the directory
    assert directory.audit("login.succeeded") == []


def test_password_sign_in_follows_the_routing(acme: SignInSetup, other: SignInSetup) -> None:
    # Local accounts' addresses need no domain of the organization's (the users API accepts any real one).
    tag = secrets.token_hex(4)
    mine, theirs = f"carol-{tag}@example.com", f"dave-{tag}@example.com"
    local_account(acme, mine)
    local_account(other, theirs)

    # The product asked for Acme's SSO connection: no password sign-in at all.
    with browser() as client:
        _routed, tx = authorize(acme, client, connection=acme.connection["id"])
        assert_no_code(client.get(f"{acme.live.url}/login/password", params={"tx": tx}), acme, 403)
        refused = password_sign_in(acme, client, tx, mine)
        request_id = assert_no_code(refused, acme, 403)
    assert [(action, changes["reason"]) for action, changes in audit_by_request(acme.live, request_id)] == [
        ("login.failed", "password_not_routed")]

    # Routed to Acme by domain: another organization's local account does not sign in here.
    with browser() as client:
        _routed, tx = authorize(acme, client, domain=acme.domain)
        assert_no_code(password_sign_in(acme, client, tx, theirs), acme, 401)
    assert [e["changes"] for e in login_failures(other) if e["changes"].get("user_id")] == []

    # Routed to Acme by domain or by organization: Acme's own local account does.
    for params in ({"domain": acme.domain}, {"organization": acme.org["slug"]}):
        with browser() as client:
            _routed, tx = authorize(acme, client, **params)
            ok = password_sign_in(acme, client, tx, mine)
            assert ok.status_code == 303, ok.text
            assert ok.headers["location"].startswith(acme.product_redirect + "?")


def test_a_callback_for_a_connection_the_sign_in_was_rerouted_from_is_refused(
        acme: SignInSetup, other: SignInSetup) -> None:
    """The person types an address at the other organization, goes to its IdP, then types one at Acme:
    the sign-in is now Acme's, and the other IdP's answer cannot finish it."""
    with browser() as client:
        form, tx = authorize(acme, client)  # nothing picks the connection: the email form
        assert form.status_code == 200
        csrf = csrf_of(acme, client, tx)
        to_other = client.post(f"{acme.live.url}/login", data={"tx": tx, "csrf": csrf, "email": f"x@{other.domain}"})
        assert to_other.status_code == 303
        assert f"client_id={other.connection['oidc']['client_id']}" in to_other.headers["location"]
        to_acme = client.post(f"{acme.live.url}/login", data={"tx": tx, "csrf": csrf, "email": f"x@{acme.domain}"})
        assert to_acme.status_code == 303
        assert f"client_id={acme.connection['oidc']['client_id']}" in to_acme.headers["location"]

        callback = other.idp.scripted_login(to_other.headers["location"], "alice")
        answer = client.get(urljoin(acme.live.url, callback))
        assert failure_reason(other, assert_no_code(answer, acme, 403)) == "connection_not_routed"
    with other.live.api() as api:  # refused before anyone was provisioned through the other connection
        assert api.get(f"/v1/organizations/{other.org['id']}/users", headers=auth(other.owner)).json()["data"] == []
