"""Re-authentication reaches the IdP, and the ID token tells the truth about the authentication.

The product's ``prompt=login`` and ``max_age`` go on to the IdP (OIDC ``prompt``/``max_age``, SAML
``ForceAuthn``); ``max_age`` is enforced on the IdP's answer; ``auth_time`` is when the IdP
authenticated the person and its ``amr``/``acr`` (SAML ``AuthnContextClassRef``) pass through.
Against the real npm oidc-provider (accounts with a session context and an authentication age)
and the real npm saml-idp.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from keyhall.protocols.saml.metadata import parse_xs_datetime
from tests.integration.test_saml_signin_e2e import (
    SAML,
    SamlSetup,
    Started,
    authn_request,
    decode_response,
    follow_completion,
    make_saml_setup,
    new_browser,
    post_acs,
    redeem,
    redirect_params,
)
from tests.integration.test_saml_signin_e2e import product_client as saml_product
from tests.support.live import LiveKeyhall
from tests.support.oidc_idp import OidcIdp
from tests.support.saml_idp import SamlIdp
from tests.support.trust import failure_reason, oidc_sign_in, oidc_tenant, product_client

pytestmark = pytest.mark.peers

RUN = uuid.uuid4().hex[:8]
DOMAIN = f"reauth-{RUN}.test"
MFA_ACR = "urn:test:loa:2"

ACCOUNTS = (
    {"sub": "fresh", "email": f"fresh@{DOMAIN}", "email_verified": True},
    {"sub": "mona", "email": f"mona@{DOMAIN}", "email_verified": True, "amr": ["pwd", "mfa"], "acr": MFA_ACR},
    # An IdP answering from a session an hour old, whatever it was asked.
    {"sub": "stale", "email": f"stale@{DOMAIN}", "email_verified": True, "auth_age": 3600},
)


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcIdp]:
    with OidcIdp.start(accounts=ACCOUNTS) as provider:
        yield provider


def test_the_idps_auth_time_amr_and_acr_reach_the_id_token(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "Methods", domains=[DOMAIN])
    mfa = oidc_sign_in(s, "mona").claims()
    assert mfa["amr"] == ["pwd", "mfa"]
    assert mfa["acr"] == MFA_ACR
    assert abs(mfa["auth_time"] - time.time()) < 60

    old = oidc_sign_in(s, "stale").claims()
    assert abs(old["auth_time"] - (time.time() - 3600)) < 60  # the IdP's, not the moment Keyhall finished
    assert old["amr"] == ["ext"]  # the IdP named no method
    assert "acr" not in old


def test_prompt_login_and_max_age_reach_the_idp(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "Prompt", domains=[DOMAIN])
    attempt = oidc_sign_in(s, "fresh", prompt="login", max_age="300")
    assert attempt.idp_params["prompt"] == "login"
    assert attempt.idp_params["max_age"] == "300"
    claims = attempt.claims()
    assert abs(claims["auth_time"] - time.time()) < 60

    # An IdP that answers prompt=login from an old session did not re-authenticate the person.
    skipped = oidc_sign_in(s, "stale", prompt="login")
    assert failure_reason(s, skipped.refused(403)) == "reauthentication_skipped"


def test_max_age_is_enforced_on_the_idps_answer(live_keyhall: LiveKeyhall, idp: OidcIdp) -> None:
    s = oidc_tenant(live_keyhall, idp, "MaxAge", domains=[DOMAIN])
    runtime = live_keyhall.runtime
    real_clock = runtime.clock

    def ten_minutes_later() -> None:
        # The person authenticated at the IdP now; the answer reaches Keyhall ten minutes later
        # (as an IdP that ignores max_age and answers from a session that old looks to Keyhall).
        runtime.clock = lambda: real_clock() + timedelta(minutes=10)

    try:
        late = oidc_sign_in(s, "fresh", max_age="60", before_callback=ten_minutes_later)
    finally:
        runtime.clock = real_clock
    assert failure_reason(s, late.refused(403)) == "max_age_exceeded"
    assert oidc_sign_in(s, "fresh", max_age="60").claims()["email"] == f"fresh@{DOMAIN}"  # in time: fine

    # A max_age that is not a number of seconds goes back to the product as invalid_request.
    with product_client(s) as product:
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier="v" * 50,
                                                       connection=s.connection["id"], max_age="soon")
    answer = httpx.get(url, trust_env=False, timeout=15)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(s.product_redirect + "?")
    error = parse_qs(urlsplit(answer.headers["location"]).query)
    assert error["error"] == ["invalid_request"]
    assert "max_age" in error["error_description"][0]


@pytest.fixture
def saml(live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> Iterator[SamlSetup]:
    yield make_saml_setup(live_keyhall, saml_idp, "SamlReauth")
    saml_idp.reset()


def test_saml_prompt_login_asks_for_force_authn_and_the_assertion_dates_the_authentication(saml: SamlSetup) -> None:
    s = saml
    with new_browser() as browser, saml_product(s) as product:
        verifier, nonce = "w" * 50, uuid.uuid4().hex
        url, state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                      nonce=nonce, login_hint=f"alice@{s.domain}", prompt="login")
        started = browser.get(url)
        assert started.status_code == 303, started.text
        idp_url = started.headers["location"]
        assert authn_request(idp_url).get("ForceAuthn") == "true"

        action, saml_response, relay_state = s.idp.scripted_login(idp_url, user=s.user())
        assert relay_state == redirect_params(idp_url)["RelayState"]
        statement = decode_response(saml_response).find(f".//{{{SAML}}}AuthnStatement")
        assert statement is not None
        class_ref = statement.findtext(f"{{{SAML}}}AuthnContext/{{{SAML}}}AuthnContextClassRef")
        assert class_ref
        done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
        assert done.status_code == 303, done.text
        claims = redeem(s, product, done.headers["location"],
                        Started(idp_url=idp_url, verifier=verifier, nonce=nonce, state=state))
    assert claims["acr"] == class_ref
    assert claims["auth_time"] == int(parse_xs_datetime(str(statement.get("AuthnInstant"))).timestamp())
