"""End to end: a product (Authlib's OAuth 2.0 client) signs a person in through Keyhall, which sends
them to their organization's IdP (the real npm oidc-provider) and back, over real HTTP."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.api import auth
from tests.support.live import LiveKeyhall, SignInSetup, make_signin_setup
from tests.support.oidc_idp import OidcIdp


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> SignInSetup:
    return make_signin_setup(live_keyhall, oidc_idp, "Acme")


def product_client(s: SignInSetup, scope: str = "openid email profile groups offline_access") -> OAuth2Client:
    return OAuth2Client(client_id=s.client_id, client_secret=s.client_secret, scope=scope,
                        redirect_uri=s.product_redirect, code_challenge_method="S256", trust_env=False, timeout=15)


def start(s: SignInSetup, browser: httpx.Client, product: OAuth2Client, **params: str) -> tuple[str, str, str]:
    """The product sends the browser to Keyhall; returns (IdP URL, code_verifier, nonce)."""
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                   nonce=nonce, **params)
    response = browser.get(url)
    assert response.status_code == 303, response.text
    return response.headers["location"], verifier, nonce


def sign_in(s: SignInSetup, browser: httpx.Client, product: OAuth2Client, login: str = "alice") -> tuple[str, str, str]:
    """A whole sign-in up to the product's callback; returns (callback URL, verifier, nonce)."""
    idp_url, verifier, nonce = start(s, browser, product, login_hint=f"{login}@{s.domain}")
    assert idp_url.startswith(s.idp.base_url)
    keyhall_callback = s.idp.scripted_login(idp_url, login)
    assert keyhall_callback.startswith(f"{s.live.url}/sso/{s.connection['id']}/oidc/callback")
    back = browser.get(keyhall_callback)
    assert back.status_code == 303, back.text
    return back.headers["location"], verifier, nonce


def verify_id_token(s: SignInSetup, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url},
                                     aud={"essential": True, "value": s.client_id})
    registry.validate(decoded.claims)
    return dict(decoded.claims)


def test_full_sign_in_token_userinfo_and_refresh(setup: SignInSetup) -> None:
    s = setup
    discovery = httpx.get(f"{s.live.url}/.well-known/openid-configuration", trust_env=False).json()
    assert discovery["issuer"] == s.live.url
    assert discovery["code_challenge_methods_supported"] == ["S256"]

    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        callback, verifier, nonce = sign_in(s, browser, product)
        assert callback.startswith(s.product_redirect)
        query = parse_qs(urlsplit(callback).query)
        assert query["iss"] == [s.live.url]
        token = product.fetch_token(discovery["token_endpoint"], authorization_response=callback,
                                    code_verifier=verifier)

        claims = verify_id_token(s, token["id_token"])
        assert claims["nonce"] == nonce
        assert claims["email"] == "alice@example.com"
        # The IdP vouches for alice@example.com, but example.com is no domain this organization has
        # verified in DNS: Keyhall does not vouch for it (tests/integration/test_trust_email.py).
        assert claims["email_verified"] is False
        assert claims["name"] == "Alice Archer"
        assert claims["given_name"] == "Alice"
        assert claims["family_name"] == "Archer"
        assert claims["org_id"] == s.org["id"]
        assert claims["org_slug"] == s.org["slug"]
        assert claims["connection_id"] == s.connection["id"]
        assert sorted(claims["groups"]) == ["admins", "engineering"]
        assert claims["amr"] == ["ext"]
        assert claims["sub"] != "alice"  # pairwise, not the IdP's subject

        info = product.get(discovery["userinfo_endpoint"]).json()
        assert info["sub"] == claims["sub"]
        assert info["email"] == "alice@example.com"

        refreshed = product.refresh_token(discovery["token_endpoint"], refresh_token=token["refresh_token"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert verify_id_token(s, refreshed["id_token"])["sub"] == claims["sub"]

        # Reusing a rotated refresh token revokes the whole family, including the newest token.
        reused = httpx.post(discovery["token_endpoint"], trust_env=False,
                            data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                            auth=(s.client_id, s.client_secret or ""))
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        newest = httpx.post(discovery["token_endpoint"], trust_env=False,
                            data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"]},
                            auth=(s.client_id, s.client_secret or ""))
        assert newest.json()["error"] == "invalid_grant"

    with s.live.api() as api:
        conn = api.get(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                       headers=auth(s.owner)).json()
        assert conn["is_verified"] is True
        enabled = api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                            json={"disable_email_password": True}, headers=auth(s.owner))
        assert enabled.status_code == 200, enabled.text
        events = api.get(f"/v1/organizations/{s.org['id']}/audit-events", params={"action": "login.succeeded"},
                         headers=auth(s.owner)).json()["data"]
        assert len(events) == 1
        assert events[0]["changes"]["connection_id"] == s.connection["id"]
        # The first sign-in verified the connection and provisioned the user: both announced.
        log = api.get("/v1/events", params={"types": "connection.verified,user.created", "limit": 200},
                      headers=auth(s.live.instance_token)).json()["data"]
        ours = [(e["type"], e["data"]["id"] if e["type"] == "connection.verified" else e["data"]["connection_id"])
                for e in log if e["organization_id"] == s.org["id"]]
        assert sorted(ours) == [("connection.verified", s.connection["id"]), ("user.created", s.connection["id"])]


def test_codes_are_single_use_and_bound_to_the_verifier(setup: SignInSetup) -> None:
    s = setup
    token_url = f"{s.live.url}/oauth2/token"
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        callback, verifier, _nonce = sign_in(s, browser, product)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": s.product_redirect}
        basic = (s.client_id, s.client_secret or "")
        wrong = httpx.post(token_url, data={**form, "code_verifier": "x" * 64}, auth=basic, trust_env=False)
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"
        # The failed attempt used the code up: the right verifier is now too late.
        late = httpx.post(token_url, data={**form, "code_verifier": verifier}, auth=basic, trust_env=False)
        assert late.json()["error"] == "invalid_grant"

        callback, verifier, _nonce = sign_in(s, browser, product)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        ok = httpx.post(token_url, data={**form, "code": code, "code_verifier": verifier}, auth=basic, trust_env=False)
        assert ok.status_code == 200, ok.text
        replay = httpx.post(token_url, data={**form, "code": code, "code_verifier": verifier}, auth=basic,
                            trust_env=False)
        assert replay.json()["error"] == "invalid_grant"
        revoked = httpx.post(token_url, data={"grant_type": "refresh_token",
                                              "refresh_token": ok.json()["refresh_token"]},
                             auth=basic, trust_env=False)
        assert revoked.json()["error"] == "invalid_grant"
        bad_secret = httpx.post(token_url, data={**form, "code": code}, auth=(s.client_id, "wrong"),
                                trust_env=False)
        assert bad_secret.status_code == 401
        assert bad_secret.json()["error"] == "invalid_client"


def test_forged_and_replayed_state_are_refused(setup: SignInSetup) -> None:
    s = setup
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        idp_url, _v, _n = start(s, browser, product, login_hint=f"alice@{s.domain}")
        keyhall_callback = s.idp.scripted_login(idp_url, "alice")
        forged = keyhall_callback.replace("state=", "state=forged")
        response = browser.get(forged)
        assert response.status_code == 400
        assert "not one Keyhall is waiting for" in response.text
        assert browser.get(keyhall_callback).status_code == 303
        replay = browser.get(keyhall_callback)
        assert replay.status_code == 400

    # A callback delivered to another browser (no login cookie) is refused too.
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        idp_url, _v, _n = start(s, browser, product, login_hint=f"alice@{s.domain}")
        keyhall_callback = s.idp.scripted_login(idp_url, "alice")
    with httpx.Client(trust_env=False, timeout=15) as other_browser:
        stolen = other_browser.get(keyhall_callback)
        assert stolen.status_code == 400
        assert "not started in this browser" in stolen.text


def test_idp_error_ends_on_a_clear_page_and_an_audit_event(setup: SignInSetup) -> None:
    s = setup
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        idp_url, _v, _n = start(s, browser, product, login_hint=f"alice@{s.domain}")
        state = parse_qs(urlsplit(idp_url).query)["state"][0]
        response = browser.get(f"{s.live.url}/sso/{s.connection['id']}/oidc/callback",
                               params={"state": state, "error": "access_denied",
                                       "error_description": "The user said no"})
    assert response.status_code == 403
    assert "The user said no" in response.text
    with s.live.api() as api:
        events = api.get(f"/v1/organizations/{s.org['id']}/audit-events", params={"action": "login.failed"},
                         headers=auth(s.owner)).json()["data"]
    assert [e["changes"]["reason"] for e in events] == ["idp_error:access_denied"]


def test_unregistered_redirect_uri_is_never_redirected_to(setup: SignInSetup) -> None:
    s = setup
    response = httpx.get(f"{s.live.url}/oauth2/authorize", trust_env=False, params={
        "client_id": s.client_id, "redirect_uri": "https://attacker.example/cb", "response_type": "code",
        "scope": "openid", "state": "x"})
    assert response.status_code == 400
    assert "location" not in response.headers
    missing_openid = httpx.get(f"{s.live.url}/oauth2/authorize", trust_env=False, params={
        "client_id": s.client_id, "redirect_uri": s.product_redirect, "response_type": "code", "scope": "email",
        "state": "st"})
    assert missing_openid.status_code == 303
    query = parse_qs(urlsplit(missing_openid.headers["location"]).query)
    assert query["error"] == ["invalid_scope"]
    assert query["state"] == ["st"]


def test_public_clients_must_use_pkce(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> None:
    s = make_signin_setup(live_keyhall, oidc_idp, "Public", public_client=True)
    response = httpx.get(f"{s.live.url}/oauth2/authorize", trust_env=False, params={
        "client_id": s.client_id, "redirect_uri": s.product_redirect, "response_type": "code",
        "scope": "openid"})
    assert response.status_code == 303
    assert parse_qs(urlsplit(response.headers["location"]).query)["error"] == ["invalid_request"]


def test_inactive_connection_and_disabled_provisioning(setup: SignInSetup) -> None:
    s = setup
    url = f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}"
    with s.live.api() as api:
        assert api.patch(url, json={"user_provisioning": "disabled"}, headers=auth(s.owner)).status_code == 200
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        idp_url, _v, _n = start(s, browser, product, login_hint=f"bob@{s.domain}")
        refused = browser.get(s.idp.scripted_login(idp_url, "bob"))
        assert refused.status_code == 403
        assert "does not create new accounts" in refused.text

    with s.live.api() as api:
        assert api.patch(url, json={"status": "inactive"}, headers=auth(s.owner)).status_code == 200
    with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
        url_, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize",
                                                        code_verifier=secrets.token_urlsafe(48),
                                                        connection=s.connection["id"])
        page = browser.get(url_)
        assert page.status_code == 403
        assert "switched off" in page.text
        # An inactive connection never routes by email domain either: the email form says so.
        url_, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize",
                                                        code_verifier=secrets.token_urlsafe(48))
        form = browser.get(url_)
        assert form.status_code == 200
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        tx = form.text.split('name="tx" value="')[1].split('"')[0]
        answer = browser.post(f"{s.live.url}/login", data={"tx": tx, "csrf": csrf, "email": f"alice@{s.domain}"})
        assert answer.status_code == 404
        assert "No organization signs in people" in answer.text


def test_password_sign_in_and_the_disable_email_password_rule(live_keyhall: LiveKeyhall, oidc_idp: OidcIdp) -> None:
    s = make_signin_setup(live_keyhall, oidc_idp, "Passwords")
    email, password = f"carol-{s.domain.split('.')[0]}@example.com", "correct horse battery staple"
    with s.live.api() as api:
        made = api.post(f"/v1/organizations/{s.org['id']}/users", json={"email": email, "password": password},
                        headers=auth(s.owner))
        assert made.status_code == 201, made.text

    def password_attempt(secret: str) -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=15) as browser, product_client(s) as product:
            url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize",
                                                           code_verifier=secrets.token_urlsafe(48),
                                                           organization=s.org["id"])
            first = browser.get(url)
            # One connection in the organization: the browser is sent straight to its IdP; the
            # password form is reached through the login page instead.
            assert first.status_code == 303
            form = browser.get(f"{s.live.url}/login/password")
            csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
            tx = form.text.split('name="tx" value="')[1].split('"')[0]
            return browser.post(f"{s.live.url}/login/password",
                                data={"tx": tx, "csrf": csrf, "email": email, "password": secret})

    assert password_attempt("wrong password here").status_code == 401
    ok = password_attempt(password)
    assert ok.status_code == 303
    assert ok.headers["location"].startswith(s.product_redirect)

    # Once the connection is verified and password sign-in is disabled, the password is refused.
    with s.live.runtime.database.unit_of_work() as uow:
        from keyhall.core.connection_service import mark_verified

        mark_verified(uow, s.connection["id"], s.live.runtime.clock(), None)
    with s.live.api() as api:
        response = api.patch(f"/v1/organizations/{s.org['id']}/connections/{s.connection['id']}",
                             json={"disable_email_password": True}, headers=auth(s.owner))
        assert response.status_code == 200
    refused = password_attempt(password)
    assert refused.status_code == 403
    assert "requires you to sign in with its single sign-on" in refused.text

    # The owner's named break-glass account still signs in with its password.
    with s.live.api() as api:
        named = api.patch(f"/v1/organizations/{s.org['id']}", json={"break_glass_email": email},
                          headers=auth(s.owner))
        assert named.status_code == 200, named.text
    rescued = password_attempt(password)
    assert rescued.status_code == 303
    assert rescued.headers["location"].startswith(s.product_redirect)
