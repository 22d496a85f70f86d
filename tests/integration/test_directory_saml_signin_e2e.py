"""End to end through the real npm saml-idp: a person the directory sends signs in through the
organization's SAML connection (``user_provisioning: manual``: nobody else may), linked by the
directory's ``externalId`` = the assertion's NameID; ``active: false`` ends their refresh token and
userinfo at once and refuses their next sign-in; reactivated, they sign in again."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_saml_signin_e2e import (
    SamlSetup,
    follow_completion,
    make_saml_setup,
    new_browser,
    post_acs,
    product_client,
    start,
    verify_id_token,
)
from tests.support.api import auth
from tests.support.live import LiveKeyhall
from tests.support.saml_idp import SamlIdp
from tests.support.scim import GROUP_URN, SCIM_JSON, patch_body, user_body

pytestmark = pytest.mark.peers


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> SamlSetup:
    s = make_saml_setup(live_keyhall, saml_idp, "DirSaml")
    with s.live.api() as api:
        manual = api.patch(s.connection_path, json={"user_provisioning": "manual"}, headers=auth(s.owner))
    assert manual.status_code == 200, manual.text
    return s


def attempt(s: SamlSetup) -> tuple[httpx.Response, dict[str, Any] | None]:
    """A whole sign-in; the final response, and the product's tokens when it succeeded."""
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        answer = post_acs(s, browser, action, saml_response, relay_state)
        if answer.status_code != 303:
            return answer, None
        done = follow_completion(s, browser, answer)
        if done.status_code != 303 or not done.headers["location"].startswith(s.product_redirect):
            return done, None
        token: dict[str, Any] = product.fetch_token(f"{s.live.url}/oauth2/token",
                                                    authorization_response=done.headers["location"],
                                                    code_verifier=started.verifier, state=started.state)
        return done, token


def scim(directory: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{directory['scim_base_url']}{path}", json=body, trust_env=False, timeout=15,
                         headers={"Authorization": f"Bearer {directory['token']}", "Content-Type": SCIM_JSON})


def test_a_directory_person_signs_in_with_saml_and_is_switched_off_at_once(setup: SamlSetup) -> None:
    s = setup
    refused, _ = attempt(s)
    assert refused.status_code == 403
    with s.live.api() as api:
        directory = api.post(f"/v1/organizations/{s.org['id']}/directories", json={"name": "Entra",
                             "provider": "entra"}, headers=auth(s.owner)).json()
    email = s.user()["email"]
    created = scim(directory, "POST", "/Users", user_body(email, externalId=email))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    scim(directory, "POST", "/Groups", {"schemas": [GROUP_URN], "displayName": "Finance",
                                        "members": [{"value": user_id}]})

    _, token = attempt(s)
    assert token is not None
    assert verify_id_token(s, token["id_token"])["groups"] == ["Finance"]
    off = scim(directory, "PATCH", f"/Users/{user_id}", patch_body({"op": "Replace", "path": "active",
                                                                    "value": "False"}))
    assert off.status_code == 200, off.text
    refreshed = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, auth=(s.client_id, s.client_secret),
                           data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
    assert refreshed.status_code == 400
    info = httpx.get(f"{s.live.url}/oauth2/userinfo", trust_env=False,
                     headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.status_code == 401
    refused, none = attempt(s)
    assert none is None
    assert refused.status_code == 403
    assert "disabled" in refused.text

    on = scim(directory, "PATCH", f"/Users/{user_id}", patch_body({"op": "replace", "value": {"active": True}}))
    assert on.status_code == 200, on.text
    _, again = attempt(s)
    assert again is not None
