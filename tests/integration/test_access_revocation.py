"""End to end: access, once given, can be taken away at once (DESIGN.md, "Access can be taken away
at once"). A product (Authlib's OAuth 2.0 client) signs people in through Keyhall and the real npm
oidc-provider; then each way of taking access away is performed and the product's refresh token and
access token are tried against the live server: RFC 7009 revocation, disabling and deleting the
user, deactivating the connection, turning password sign-in off, and the absolute lifetime."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.integration.test_hot_path_statements import _counts, _work, statements
from tests.integration.test_oidc_signin_e2e import product_client, sign_in, verify_id_token
from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Revoke")


def tokens_for(s: SignInSetup, login: str = "alice") -> dict[str, Any]:
    """A whole sign-in through the IdP, and the product's token response."""
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        callback, verifier, _nonce = sign_in(s, browser, product, login)
        token: dict[str, Any] = product.fetch_token(f"{s.live.url}/oauth2/token", authorization_response=callback,
                                                    code_verifier=verifier)
    return token


def basic(s: SignInSetup) -> tuple[str, str]:
    return (s.client_id, s.client_secret or "")


def refresh(s: SignInSetup, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, auth=basic(s),
                      data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def userinfo(s: SignInSetup, access_token: str) -> httpx.Response:
    return httpx.get(f"{s.live.url}/oauth2/userinfo", trust_env=False,
                     headers={"Authorization": f"Bearer {access_token}"})


def revoke(s: SignInSetup, token: str, hint: str | None = None, *,
           client: tuple[str, str] | None = None) -> httpx.Response:
    data = {"token": token, **({"token_type_hint": hint} if hint else {})}
    return httpx.post(f"{s.live.url}/oauth2/revoke", trust_env=False, auth=client or basic(s), data=data)


def payload(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def assert_refused(s: SignInSetup, token: dict[str, Any]) -> None:
    """Neither the refresh token nor the access token of ``token`` works any more."""
    refreshed = refresh(s, token["refresh_token"])
    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"
    info = userinfo(s, token["access_token"])
    assert info.status_code == 401, info.text
    assert info.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def the_user(s: SignInSetup) -> dict[str, Any]:
    with s.live.api() as api:
        listed = api.get(f"/v1/organizations/{s.org['id']}/users", headers=auth(s.owner))
    assert listed.status_code == 200, listed.text
    users: list[dict[str, Any]] = listed.json()["data"]
    assert len(users) == 1
    return users[0]


def audit(s: SignInSetup, action: str) -> list[dict[str, Any]]:
    with s.live.api() as api:
        response = api.get(f"/v1/organizations/{s.org['id']}/audit-events", params={"action": action},
                           headers=auth(s.owner))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events


def test_discovery_lists_the_revocation_endpoint(live_keyhall: LiveKeyhall) -> None:
    discovery = httpx.get(f"{live_keyhall.url}/.well-known/openid-configuration", trust_env=False).json()
    assert discovery["revocation_endpoint"] == f"{live_keyhall.url}/oauth2/revoke"
    assert discovery["revocation_endpoint_auth_methods_supported"] == [
        "client_secret_basic", "client_secret_post", "none"]


def test_access_tokens_carry_no_internal_user_id(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    claims = payload(token["access_token"])
    user_id = the_user(s)["id"]
    assert "uid" not in claims
    assert user_id not in json.dumps(claims)  # the pairwise sub is not undone by any claim
    assert claims["sub"] == verify_id_token(s, token["id_token"])["sub"]
    assert userinfo(s, token["access_token"]).json()["sub"] == claims["sub"]


def test_access_tokens_are_es256_jwts_verifiable_with_the_jwks_and_id_tokens_keep_rs256(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    access_header = json.loads(base64.urlsafe_b64decode(token["access_token"].split(".")[0] + "=="))
    id_header = json.loads(base64.urlsafe_b64decode(token["id_token"].split(".")[0] + "=="))
    assert (access_header["alg"], access_header["typ"]) == ("ES256", "at+jwt")
    assert id_header["alg"] == "RS256"
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
    claims = jwt.decode(token["access_token"], keys, algorithms=["ES256"]).claims
    assert claims["sid"] == verify_id_token(s, token["id_token"])["sid"]
    assert claims["client_id"] == s.client_id


def test_a_replayed_code_ends_the_sign_in_it_produced(setup: SignInSetup) -> None:
    """RFC 6749 §4.1.2: the family a code starts is named when the code is issued, so the second
    redemption finds it and revokes it."""
    s = setup
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        callback, verifier, _nonce = sign_in(s, browser, product)
    form = {"grant_type": "authorization_code", "code": parse_qs(urlsplit(callback).query)["code"][0],
            "redirect_uri": s.product_redirect, "code_verifier": verifier}
    first = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, auth=basic(s), data=form)
    assert first.status_code == 200, first.text
    token = first.json()
    assert userinfo(s, token["access_token"]).status_code == 200
    replayed = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, auth=basic(s), data=form)
    assert replayed.status_code == 400, replayed.text
    assert replayed.json()["error"] == "invalid_grant"
    assert_refused(s, token)


def test_revoking_a_refresh_token_ends_the_sign_in(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    assert userinfo(s, token["access_token"]).status_code == 200
    response = revoke(s, token["refresh_token"], "refresh_token")
    assert response.status_code == 200, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    # The refresh token and every access token minted in its family are refused from now on.
    assert_refused(s, token)
    assert revoke(s, token["refresh_token"]).status_code == 200  # revoking twice is fine


def test_revoking_an_access_token_refuses_it_at_userinfo(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    # A wrong hint only changes the order of the search (RFC 7009 §2.1); client_secret_post works too.
    response = httpx.post(f"{s.live.url}/oauth2/revoke", trust_env=False,
                          data={"token": token["access_token"], "token_type_hint": "refresh_token",
                                "client_id": s.client_id, "client_secret": s.client_secret})
    assert response.status_code == 200, response.text
    refused = userinfo(s, token["access_token"])
    assert refused.status_code == 401
    # The sign-in itself stands: a refresh gives a new access token that works.
    refreshed = refresh(s, token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert userinfo(s, refreshed.json()["access_token"]).status_code == 200


def test_another_client_cannot_revoke_a_token(setup: SignInSetup, oidc_idp: OidcIdp) -> None:
    s = setup
    token = tokens_for(s)
    other = make_signin_setup(s.live, oidc_idp, "Other")
    for value, hint in ((token["refresh_token"], "refresh_token"), (token["access_token"], "access_token")):
        response = revoke(s, value, hint, client=basic(other))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "unauthorized_client"
    wrong_secret = revoke(s, token["refresh_token"], client=(s.client_id, "not-the-secret"))
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    # Nothing was revoked: both tokens still work for their own client.
    assert userinfo(s, token["access_token"]).status_code == 200
    assert refresh(s, token["refresh_token"]).status_code == 200


def test_revocation_requests_are_checked(setup: SignInSetup, live_keyhall: LiveKeyhall,
                                         oidc_idp: OidcIdp) -> None:
    s = setup
    assert revoke(s, "not-a-token-keyhall-issued").status_code == 200  # unknown tokens: 200 (§2.2)
    missing = httpx.post(f"{s.live.url}/oauth2/revoke", trust_env=False, auth=basic(s), data={})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    as_json = httpx.post(f"{s.live.url}/oauth2/revoke", trust_env=False, auth=basic(s), json={"token": "x"})
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    anonymous = httpx.post(f"{s.live.url}/oauth2/revoke", trust_env=False, data={"token": "x"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"

    # A public client authenticates with its client_id alone (token_endpoint_auth_method none).
    public = make_signin_setup(live_keyhall, oidc_idp, "PublicRevoke", public_client=True)
    token = tokens_for(public)
    response = httpx.post(f"{public.live.url}/oauth2/revoke", trust_env=False,
                          data={"token": token["refresh_token"], "client_id": public.client_id})
    assert response.status_code == 200, response.text
    refused = httpx.post(f"{public.live.url}/oauth2/token", trust_env=False,
                         data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                               "client_id": public.client_id})
    assert refused.json()["error"] == "invalid_grant"


def sign_in_page(s: SignInSetup, login: str = "alice") -> httpx.Response:
    """A sign-in through the IdP, up to Keyhall's answer to the IdP's callback."""
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize",
                                                       code_verifier=secrets.token_urlsafe(48),
                                                       login_hint=f"{login}@{s.domain}")
        idp_url = browser.get(url).headers["location"]
        return browser.get(s.idp.scripted_login(idp_url, login))


def test_disabling_a_user_ends_their_access_and_refuses_their_next_sign_in(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    user = the_user(s)
    path = f"/v1/organizations/{s.org['id']}/users/{user['id']}"
    with s.live.api() as api:
        disabled = api.patch(path, json={"disabled": True}, headers=auth(s.owner))
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled"] is True
    assert_refused(s, token)

    refused = sign_in_page(s)
    assert refused.status_code == 403
    assert "disabled" in refused.text
    failures = audit(s, "login.failed")
    assert [e["changes"]["reason"] for e in failures] == ["user_disabled"]
    [event] = audit(s, "user.disabled")
    assert event["target_id"] == user["id"]
    assert event["changes"]["disabled"] == {"from": False, "to": True}
    assert event["changes"]["sessions_revoked"] == 1

    with s.live.api() as api:
        enabled = api.patch(path, json={"disabled": False}, headers=auth(s.owner))
    assert enabled.status_code == 200, enabled.text
    assert [e["target_id"] for e in audit(s, "user.enabled")] == [user["id"]]
    # Re-enabling lets the person sign in again; what was revoked stays revoked.
    again = tokens_for(s)
    assert userinfo(s, again["access_token"]).status_code == 200
    assert refresh(s, again["refresh_token"]).status_code == 200
    assert_refused(s, token)


def test_deleting_a_user_ends_their_access_and_forgets_them(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    first_sub = verify_id_token(s, token["id_token"])["sub"]
    user = the_user(s)
    with s.live.api() as api:
        deleted = api.delete(f"/v1/organizations/{s.org['id']}/users/{user['id']}", headers=auth(s.owner))
        assert deleted.status_code == 204, deleted.text
        gone = api.get(f"/v1/organizations/{s.org['id']}/users/{user['id']}", headers=auth(s.owner))
        assert gone.status_code == 404
    assert_refused(s, token)
    [event] = audit(s, "user.deleted")
    assert event["target_id"] == user["id"]

    # Deletion is forgetting: with just-in-time provisioning the same person signing in again is a
    # new account, with a new pairwise subject at the product.
    again = tokens_for(s)
    assert verify_id_token(s, again["id_token"])["sub"] != first_sub
    assert the_user(s)["id"] != user["id"]


def test_deleting_a_user_of_a_manual_connection_refuses_their_next_sign_in(setup: SignInSetup) -> None:
    s = setup
    with s.live.api() as api:
        made = api.post(f"/v1/organizations/{s.org['id']}/users",
                        json={"email": "alice@example.com", "connection_id": s.connection["id"]},
                        headers=auth(s.owner))
        assert made.status_code == 201, made.text
        manual = api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                           json={"user_provisioning": "manual"}, headers=auth(s.owner))
        assert manual.status_code == 200, manual.text
    # A pre-created user is linked by email only once the organization has proven the domain.
    s.live.verify_domain(s.org["id"], s.owner, "example.com")
    token = tokens_for(s)
    with s.live.api() as api:
        deleted = api.delete(f"/v1/organizations/{s.org['id']}/users/{made.json()['id']}", headers=auth(s.owner))
        assert deleted.status_code == 204, deleted.text
    assert_refused(s, token)
    refused = sign_in_page(s)
    assert refused.status_code == 403
    assert [e["changes"]["reason"] for e in audit(s, "login.failed")] == ["not_provisioned"]


def test_deactivating_the_connection_ends_refresh_and_userinfo(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    keep = tokens_for(s)
    with s.live.api() as api:
        off = api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                        json={"status": "inactive"}, headers=auth(s.owner))
        assert off.status_code == 200, off.text
    assert_refused(s, token)
    assert userinfo(s, keep["access_token"]).status_code == 401
    [event] = [e for e in audit(s, "connection.updated") if "sessions_revoked" in e["changes"]]
    assert event["changes"]["sessions_revoked"] == 2
    # Switched off ends them for good: switching the connection back on does not bring back even
    # the sign-in whose tokens were not used in between.
    with s.live.api() as api:
        on = api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                       json={"status": "active"}, headers=auth(s.owner))
        assert on.status_code == 200, on.text
    assert_refused(s, keep)
    assert userinfo(s, token["access_token"]).status_code == 401
    fresh = tokens_for(s)  # and people sign in through it again
    assert refresh(s, fresh["refresh_token"]).status_code == 200


def password_sign_in(s: SignInSetup, email: str, password: str, verifier: str) -> httpx.Response:
    """A password sign-in on Keyhall's page, up to Keyhall's answer to the form."""
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                       organization=s.org["id"])
        assert browser.get(url).status_code == 303
        form = browser.get(f"{s.live.url}/login/password")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        tx = form.text.split('name="tx" value="')[1].split('"')[0]
        return browser.post(f"{s.live.url}/login/password",
                            data={"tx": tx, "csrf": csrf, "email": email, "password": password})


def password_tokens(s: SignInSetup, email: str, password: str) -> dict[str, Any]:
    """A password sign-in on Keyhall's page, and the product's token response."""
    verifier = secrets.token_urlsafe(48)
    done = password_sign_in(s, email, password, verifier)
    assert done.status_code == 303, done.text
    code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
    response = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, auth=basic(s),
                          data={"grant_type": "authorization_code", "code": code, "redirect_uri": s.product_redirect,
                                "code_verifier": verifier})
    assert response.status_code == 200, response.text
    token: dict[str, Any] = response.json()
    assert verify_id_token(s, token["id_token"])["amr"] == ["pwd"]
    return token


def test_a_disabled_local_account_is_refused_with_its_reason(setup: SignInSetup) -> None:
    s = setup
    email, password = f"erin-{s.domain.split('.')[0]}@example.com", "correct horse battery staple"
    with s.live.api() as api:
        made = api.post(f"/v1/organizations/{s.org['id']}/users", json={"email": email, "password": password},
                        headers=auth(s.owner))
        assert made.status_code == 201, made.text
        token = password_tokens(s, email, password)
        disabled = api.patch(f"/v1/organizations/{s.org['id']}/users/{made.json()['id']}", json={"disabled": True},
                             headers=auth(s.owner))
        assert disabled.status_code == 200, disabled.text
    assert_refused(s, token)
    refused = password_sign_in(s, email, password, secrets.token_urlsafe(48))
    assert refused.status_code == 403, refused.text
    assert "disabled" in refused.text
    assert [e["changes"]["reason"] for e in audit(s, "login.failed")] == ["user_disabled"]
    # A wrong password says nothing about the account's state.
    wrong = password_sign_in(s, email, "not the password at all", secrets.token_urlsafe(48))
    assert wrong.status_code == 401
    assert "disabled" not in wrong.text


def test_password_sessions_end_when_the_organization_turns_password_sign_in_off(setup: SignInSetup) -> None:
    s = setup
    tag = s.domain.split(".")[0]
    member, rescue = f"dora-{tag}@example.com", f"owner-{tag}@example.com"
    password = "correct horse battery staple"
    with s.live.api() as api:
        for email in (member, rescue):
            made = api.post(f"/v1/organizations/{s.org['id']}/users", json={"email": email, "password": password},
                            headers=auth(s.owner))
            assert made.status_code == 201, made.text
        named = api.patch(f"/v1/organizations/{s.org['id']}", json={"break_glass_email": rescue},
                          headers=auth(s.owner))
        assert named.status_code == 200, named.text
    member_token = password_tokens(s, member, password)
    rescue_token = password_tokens(s, rescue, password)
    sso_token = tokens_for(s)

    with s.live.runtime.database.unit_of_work() as uow:
        from keyhall.core.connection_service import mark_verified

        mark_verified(uow, s.connection["id"], s.live.runtime.clock(), None)
    with s.live.api() as api:
        off = api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                        json={"disable_email_password": True}, headers=auth(s.owner))
        assert off.status_code == 200, off.text

    # The member's password session ends; the break-glass account's and the SSO session stand.
    assert_refused(s, member_token)
    assert userinfo(s, rescue_token["access_token"]).status_code == 200
    assert refresh(s, rescue_token["refresh_token"]).status_code == 200
    assert refresh(s, sso_token["refresh_token"]).status_code == 200


@contextmanager
def clock_moved(live: LiveKeyhall, by: timedelta) -> Iterator[None]:
    """The live server's clock, ``by`` ahead of the real one, for the duration of the block."""
    runtime = live.runtime
    real = runtime.clock

    def moved() -> datetime:
        return real() + by

    runtime.clock = moved
    try:
        yield
    finally:
        runtime.clock = real


def test_rotation_does_not_extend_a_sign_in_past_its_absolute_lifetime(setup: SignInSetup) -> None:
    s = setup
    assert s.live.runtime.settings.refresh_token_max_lifetime_seconds == 30 * 24 * 3600  # the default
    token = tokens_for(s)
    with clock_moved(s.live, timedelta(days=20)):
        rotated = refresh(s, token["refresh_token"])
        assert rotated.status_code == 200, rotated.text  # within both the sliding and the absolute lifetime
        assert userinfo(s, rotated.json()["access_token"]).status_code == 200
    with clock_moved(s.live, timedelta(days=30) - timedelta(minutes=20)):
        near_end = refresh(s, rotated.json()["refresh_token"])
        assert near_end.status_code == 200, near_end.text
    last = near_end.json()
    with clock_moved(s.live, timedelta(days=30, minutes=1)):
        # The last refresh token is twenty minutes old and its access token has forty minutes left,
        # but the sign-in is older than thirty days: both are refused.
        assert userinfo(s, last["access_token"]).status_code == 401
        late = refresh(s, last["refresh_token"])
        assert late.status_code == 400, late.text
        assert late.json()["error"] == "invalid_grant"
        assert "maximum lifetime" in late.json()["error_description"]


#: Userinfo's reads: the published keys, the access token's revocation, its family, the user with
#: their organization, and the connection's version probe (the connection itself from the cache).
USERINFO_MAX = 5


def test_userinfo_only_reads_in_one_read_only_transaction(setup: SignInSetup) -> None:
    s = setup
    token = tokens_for(s)
    assert userinfo(s, token["access_token"]).status_code == 200  # warm: the connection enters the cache
    with statements(s.live.runtime) as seen:
        info = userinfo(s, token["access_token"])
    assert info.status_code == 200, info.text
    work = _work(seen)
    assert all(statement.upper().startswith("SELECT") for statement in work), work
    assert len(work) <= USERINFO_MAX, work
    if s.live.runtime.database.backend == "sqlite":  # a deferred transaction: no write lock taken or waited for
        begins = sorted(statement for statement in seen if statement.upper().startswith("BEGIN"))
        assert begins == ["BEGIN"] + ["BEGIN IMMEDIATE"] * _counts(seen), seen
