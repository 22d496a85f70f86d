"""End to end: a person the directory sends signs in through the organization's connection to the
real npm oidc-provider (with ``user_provisioning: manual``, so only the directory's people may); after
the directory sets ``active: false`` their refresh token, their access token at userinfo and their next
sign-in all fail at once; after reactivation they sign in again. Their directory groups reach the ID
token's ``groups`` claim. Every change is audited under ``directory:<id>``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_access_revocation import (
    assert_refused,
    audit,
    payload,
    refresh,
    sign_in_page,
    tokens_for,
    userinfo,
)
from tests.integration.test_logout import deliver, verified_logout_token, with_logout
from tests.integration.test_oidc_signin_e2e import verify_id_token
from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.logout_receiver import logout_receiver
from tests.support.oidc_idp import OidcIdp
from tests.support.scim import GROUP_URN, SCIM_JSON, patch_body, user_body


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Directory",
                             connection_extra={"user_provisioning": "manual", "group_provisioning": "sync"})


def scim(directory: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{directory['scim_base_url']}{path}", json=body, trust_env=False, timeout=15,
                         headers={"Authorization": f"Bearer {directory['token']}", "Content-Type": SCIM_JSON})


def make_directory(s: SignInSetup) -> dict[str, Any]:
    with s.live.api() as api:
        made = api.post(f"/v1/organizations/{s.org['id']}/directories", json={"name": "Okta", "provider": "okta"},
                        headers=auth(s.owner))
    assert made.status_code == 201, made.text
    return dict(made.json())


def current_groups(s: SignInSetup, token: dict[str, Any], expected: list[str]) -> dict[str, Any]:
    """Refresh ``token``: the new ID token and userinfo both carry ``expected`` as ``groups``."""
    refreshed = refresh(s, token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new = dict(refreshed.json())
    assert verify_id_token(s, new["id_token"])["groups"] == expected
    info = userinfo(s, new["access_token"])
    assert info.status_code == 200, info.text
    assert info.json()["groups"] == expected
    return new


def test_a_directory_person_signs_in_is_switched_off_at_once_and_back_on(setup: SignInSetup) -> None:
    s = setup
    assert sign_in_page(s).status_code == 403  # manual provisioning: nobody the directory has not sent
    directory = make_directory(s)
    # Okta's externalId is its user id, which is also the OIDC subject the IdP asserts.
    created = scim(directory, "POST", "/Users", user_body("alice@example.com", externalId="alice"))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    group = scim(directory, "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Engineering",
                                                "members": [{"value": user_id}]})
    assert group.status_code == 201, group.text

    token = tokens_for(s)
    claims = verify_id_token(s, token["id_token"])
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["Engineering"]
    assert userinfo(s, token["access_token"]).status_code == 200

    # Membership changes through SCIM reach the next refresh-token exchange and userinfo, without a
    # new sign-in: a new group with the person in it, a rename, a removal.
    admins = scim(directory, "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Admins",
                                                 "members": [{"value": user_id}]})
    assert admins.status_code == 201, admins.text
    renamed = scim(directory, "PATCH", f"/Groups/{group.json()['id']}",
                   patch_body({"op": "replace", "path": "displayName", "value": "Eng"}))
    assert renamed.status_code == 200, renamed.text
    token = current_groups(s, token, ["Admins", "Eng"])
    removed = scim(directory, "PATCH", f"/Groups/{admins.json()['id']}",
                   patch_body({"op": "remove", "path": f'members[value eq "{user_id}"]'}))
    assert removed.status_code == 200, removed.text
    token = current_groups(s, token, ["Eng"])

    off = scim(directory, "PATCH", f"/Users/{user_id}", patch_body({"op": "replace", "path": "active",
                                                                    "value": False}))
    assert off.status_code == 200, off.text
    assert_refused(s, token)
    refused = sign_in_page(s)
    assert refused.status_code == 403
    assert "disabled" in refused.text
    [disabled] = audit(s, "user.disabled")
    assert disabled["actor"] == f"directory:{directory['id']}"
    assert disabled["target_id"] == user_id
    assert disabled["changes"]["sessions_revoked"] == 1

    on = scim(directory, "PATCH", f"/Users/{user_id}", patch_body({"op": "Replace", "path": "active",
                                                                   "value": "True"}))
    assert on.status_code == 200, on.text
    again = tokens_for(s)
    assert userinfo(s, again["access_token"]).status_code == 200
    assert verify_id_token(s, again["id_token"])["sub"] == claims["sub"]  # the same account
    assert [e["actor"] for e in audit(s, "user.enabled")] == [f"directory:{directory['id']}"]

    gone = scim(directory, "DELETE", f"/Users/{user_id}")
    assert gone.status_code == 204
    assert_refused(s, again)
    assert sign_in_page(s).status_code == 403


def test_scim_deprovisioning_tells_the_product_by_back_channel_logout(setup: SignInSetup) -> None:
    """``active: false`` and DELETE through SCIM end the person's sessions as the native API does: the
    product's back-channel logout endpoint (a real HTTP server) receives a signed logout token for
    the session it holds, and refresh and userinfo refuse at once."""
    with logout_receiver() as receiver:
        s = with_logout(setup, receiver)
        directory = make_directory(s)
        created = scim(directory, "POST", "/Users", user_body("alice@example.com", externalId="alice"))
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        deliver(s.live.runtime)
        receiver.take()

        first = tokens_for(s)
        off = scim(directory, "PATCH", f"/Users/{user_id}", patch_body({"op": "replace", "path": "active",
                                                                        "value": False}))
        assert off.status_code == 200, off.text
        assert_refused(s, first)
        assert deliver(s.live.runtime)["delivered"] == 1
        [disabled] = receiver.take()
        claims = verified_logout_token(s, disabled)
        assert claims["sid"] == payload(first["id_token"])["sid"]
        assert claims["sub"] == payload(first["id_token"])["sub"]

        on = scim(directory, "PATCH", f"/Users/{user_id}", patch_body({"op": "replace", "path": "active",
                                                                       "value": True}))
        assert on.status_code == 200, on.text
        second = tokens_for(s)
        assert userinfo(s, second["access_token"]).status_code == 200
        assert scim(directory, "DELETE", f"/Users/{user_id}").status_code == 204
        assert_refused(s, second)
        assert deliver(s.live.runtime)["delivered"] == 1
        [deleted] = receiver.take()
        assert verified_logout_token(s, deleted)["sid"] == payload(second["id_token"])["sid"]
        assert receiver.refused == []
