"""Keyhall vouches only for what was proven: ``email_verified`` in the ID token needs the IdP's word
*and* a domain the connection's own organization verified in DNS.

Against the real npm oidc-provider (accounts in domains chosen here), the live Keyhall and the
test DNS server that proves domains for real. Before the fix, Keyhall passed the IdP's
``email_verified`` on as it was: any organization's IdP could assert ``ceo@victim`` verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.api import auth
from tests.support.live import LiveKeyhall
from tests.support.oidc_idp import OidcIdp
from tests.support.trust import failure_reason, new_organization, oidc_sign_in, oidc_tenant

pytestmark = pytest.mark.peers

RUN = uuid.uuid4().hex[:8]
OWN = f"own-{RUN}.test"  # the signing-in organization's domain
VICTIM = f"victim-{RUN}.test"  # a domain another organization has verified
STRICT = f"strict-{RUN}.test"  # for the organization that refuses unverified emails
MANUAL = f"manual-{RUN}.example.com"  # pre-created users: an address the users API accepts

ACCOUNTS = (
    {"sub": "vera", "email": f"vera@{OWN}", "email_verified": True, "name": "Vera Verified"},
    {"sub": "uma", "email": f"uma@{OWN}", "email_verified": False, "name": "Uma Unverified"},
    {"sub": "ceo", "email": f"ceo@{VICTIM}", "email_verified": True, "name": "Not The CEO"},
    {"sub": "sam", "email": f"sam@{STRICT}", "email_verified": True, "name": "Sam Strict"},
    {"sub": "ursula", "email": f"ursula@{STRICT}", "email_verified": False, "name": "Ursula"},
    {"sub": "mia", "email": f"mia@{MANUAL}", "email_verified": True, "name": "Mia Manual"},
)


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcIdp]:
    with OidcIdp.start(accounts=ACCOUNTS) as provider:
        yield provider


def test_email_verified_needs_the_idp_and_a_domain_the_connections_organization_verified(
        live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    victim, victim_owner = new_organization(live_keyhall, "Victim")
    live_keyhall.verify_domain(victim["id"], victim_owner, VICTIM)
    s = oidc_tenant(live_keyhall, idp, "Own", domains=[OWN])

    # Listed on the connection (and routing, in development mode) but not proven: not vouched for.
    listed = oidc_sign_in(s, "vera").claims()
    assert listed["email"] == f"vera@{OWN}"
    assert listed["email_verified"] is False

    live_keyhall.verify_domain(s.org["id"], s.owner, OWN)
    proven = oidc_sign_in(s, "vera").claims()
    assert proven["email_verified"] is True
    # The IdP itself did not vouch for uma's address: neither does Keyhall.
    assert oidc_sign_in(s, "uma").claims()["email_verified"] is False
    # This organization's IdP asserts an address in a domain another organization owns: the claim
    # passes through, but Keyhall does not vouch for it (the product must not link accounts on it).
    forged = oidc_sign_in(s, "ceo").claims()
    assert forged["email"] == f"ceo@{VICTIM}"
    assert forged["email_verified"] is False
    assert forged["org_id"] == s.org["id"]

    # The verdict is what is stored with the users (and so what userinfo and refreshes say).
    with s.live.api() as api:
        users = api.get(f"/v1/organizations/{s.org['id']}/users", headers=auth(s.owner)).json()["data"]
    verdicts = {u["email"]: u["email_verified"] for u in users}
    assert verdicts == {f"vera@{OWN}": True, f"uma@{OWN}": False, f"ceo@{VICTIM}": False}


def test_require_verified_email_refuses_the_sign_in_and_audits_it(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "Strict", domains=[STRICT])
    assert s.connection["require_verified_email"] is False  # the default: such sign-ins pass, unverified
    path = f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}"
    with s.live.api() as api:
        for bad in (None, "maybe", [True]):
            refused = api.patch(path, json={"require_verified_email": bad}, headers=auth(s.owner))
            assert refused.status_code == 400, refused.text
            assert "require_verified_email" in refused.text
        on = api.patch(path, json={"require_verified_email": True}, headers=auth(s.owner))
        assert on.status_code == 200, on.text
        assert on.json()["require_verified_email"] is True
        assert api.get(path, headers=auth(s.owner)).json()["require_verified_email"] is True
        changed = api.get(f"/v1/organizations/{s.org['id']}/audit-events",
                          params={"action": "connection.updated"}, headers=auth(s.owner)).json()["data"]
        assert any(e["changes"].get("require_verified_email") == {"from": False, "to": True} for e in changed)

    # The domain is listed but not proven: even the IdP's "verified" address is refused.
    attempt = oidc_sign_in(s, "sam")
    request_id = attempt.refused(403)
    assert "verified" in attempt.answer.text
    assert failure_reason(s, request_id) == "email_not_verified"

    live_keyhall.verify_domain(s.org["id"], s.owner, STRICT)
    assert oidc_sign_in(s, "sam").claims()["email_verified"] is True
    # The domain is proven, but the IdP does not vouch for ursula's address.
    refused = oidc_sign_in(s, "ursula")
    assert failure_reason(s, refused.refused(403)) == "email_not_verified"
    with s.live.api() as api:
        users = api.get(f"/v1/organizations/{s.org['id']}/users", headers=auth(s.owner)).json()["data"]
    assert [u["email"] for u in users] == [f"sam@{STRICT}"]  # nobody was provisioned by a refused sign-in


def test_manual_provisioning_links_by_email_only_on_keyhalls_verdict(live_keyhall: LiveKeyhall,
                                                                     idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "Manual", domains=[MANUAL], user_provisioning="manual")
    with s.live.api() as api:
        made = api.post(f"/v1/organizations/{s.org['id']}/users",
                        json={"email": f"mia@{MANUAL}", "connection_id": s.connection["id"]}, headers=auth(s.owner))
        assert made.status_code == 201, made.text
    # The IdP says mia's address is verified, but the domain is not proven: no link by email.
    refused = oidc_sign_in(s, "mia")
    assert failure_reason(s, refused.refused(403)) == "not_provisioned"

    live_keyhall.verify_domain(s.org["id"], s.owner, MANUAL)
    claims = oidc_sign_in(s, "mia").claims()
    assert claims["email"] == f"mia@{MANUAL}"
    assert claims["email_verified"] is True
    with s.live.api() as api:
        users = api.get(f"/v1/organizations/{s.org['id']}/users", headers=auth(s.owner)).json()["data"]
    assert [(u["id"], u["kind"]) for u in users] == [(made.json()["id"], "sso")]  # the pre-created user, linked
