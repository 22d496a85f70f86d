"""End to end: SAML Single Logout at ``/sso/{cid}/saml/slo``, both ways, against the real npm
saml-idp (its samlp SLO at ``/saml/slo``), over real HTTP.

- IdP-initiated: the person signs out at the IdP, which posts a signed LogoutRequest through the
  browser to Keyhall; Keyhall ends the session (the product's refresh token stops working) and
  posts the browser back with a LogoutResponse whose signature verifies with the SP certificate of
  Keyhall's metadata and whose InResponseTo names the request (by HTTP-Redirect, the answer comes
  by HTTP-Redirect with a query signature: the forged-request test checks that one).
- SP-initiated: the product logs the person out at ``/oauth2/logout``; Keyhall ends the session and
  sends the browser to the IdP with a LogoutRequest naming the assertion's NameID and SessionIndex;
  the IdP's signed LogoutResponse comes back and the browser continues to the product.
- Attacks: LogoutRequests built and signed in the test with the IdP's own key (or another), posted
  as an IdP would — unsigned, foreign key, wrong issuer, wrong destination, expired, replayed — are
  refused with a 400 page and end nothing.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from keyhall.protocols.saml.logout import build_logout_request, redirect_binding_url
from keyhall.protocols.saml.xmldsig import verify_enveloped_signature
from tests.integration.test_access_revocation import refresh
from tests.integration.test_saml_signin_e2e import (
    SamlSetup,
    decode_response,
    follow_completion,
    make_saml_setup,
    new_browser,
    post_acs,
    product_client,
    start,
)
from tests.support.api import auth
from tests.support.live import LiveKeyhall
from tests.support.saml_idp import IDP_ENTITY_ID, SamlIdp, read_forms
from tests.support.saml_responses import Signer, sign

pytestmark = pytest.mark.peers

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
REFUSED = "This sign-out request cannot be completed"


@pytest.fixture(scope="module")
def s(live_keyhall: LiveKeyhall, saml_idp: SamlIdp) -> Iterator[SamlSetup]:
    """One connection with the IdP's SLO URL, its product registered for post-logout redirects, and
    the IdP told Keyhall's SLO URL."""
    setup = make_saml_setup(live_keyhall, saml_idp, "Slo")
    setup.patch_saml(slo_url=f"{saml_idp.base_url}/saml/slo")
    with live_keyhall.api() as api:
        patched = api.patch(f"/v1/applications/{setup.client_id}", headers=auth(live_keyhall.instance_token),
                            json={"post_logout_redirect_uris": [after_logout(setup)]})
    assert patched.status_code == 200, patched.text
    saml_idp.configure(sloUrl=slo_url(setup))
    yield setup
    saml_idp.reset()
    for client in OPEN:
        client.close()


OPEN: list[httpx.Client] = []  # the tests' browsers, closed with the module


def slo_url(s: SamlSetup) -> str:
    return f"{s.live.url}/sso/{s.cid}/saml/slo"


def after_logout(s: SamlSetup) -> str:
    return s.product_redirect.replace("/callback", "/signed-out")


@dataclass
class SignedIn:
    browser: httpx.Client  # the person's browser at Keyhall and the product
    idp_browser: httpx.Client  # the same person's browser at the IdP (its session cookie)
    tokens: dict[str, Any]
    name_id: str
    session_index: str


def sign_in(s: SamlSetup, login: str = "alice") -> SignedIn:
    with product_client(s) as product:
        return _sign_in(s, product, login)


def _sign_in(s: SamlSetup, product: OAuth2Client, login: str) -> SignedIn:
    browser, idp_browser = new_browser(), new_browser()
    OPEN.extend((browser, idp_browser))
    started = start(s, browser, product, login)
    action, saml_response, relay = s.idp.scripted_login(started.idp_url, user=s.user(login), client=idp_browser)
    assertion = decode_response(saml_response).find(f"{{{SAML}}}Assertion")
    assert assertion is not None
    name_id = assertion.findtext(f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    statement = assertion.find(f"{{{SAML}}}AuthnStatement")
    assert name_id
    assert statement is not None
    assert statement.get("SessionIndex")
    done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay))
    assert done.status_code == 303, done.text
    tokens = product.fetch_token(f"{s.live.url}/oauth2/token", authorization_response=done.headers["location"],
                                 code_verifier=started.verifier, state=started.state)
    return SignedIn(browser, idp_browser, dict(tokens), name_id, str(statement.get("SessionIndex")))


def still_signed_in(s: SamlSetup, who: SignedIn) -> bool:
    """Whether the product can still refresh (rotating the refresh token it keeps)."""
    answer = refresh(s, who.tokens["refresh_token"])
    if answer.status_code == 200:
        who.tokens = answer.json()
        return True
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"
    return False


def sp_certificate(s: SamlSetup) -> x509.Certificate:
    """The SP signing certificate Keyhall's metadata publishes (what the IdP verifies with)."""
    metadata = etree.fromstring(httpx.get(f"{s.live.url}/sso/{s.cid}/saml/metadata", trust_env=False).content)
    body = metadata.findtext(f".//{{{MD}}}KeyDescriptor[@use='signing']//{{{DS}}}X509Certificate")
    assert body
    return x509.load_der_x509_certificate(base64.b64decode("".join(body.split())))


def sp_certificate_pem(s: SamlSetup) -> str:
    return sp_certificate(s).public_bytes(serialization.Encoding.PEM).decode()


def verified_redirect(url: str, field: str, certificate: x509.Certificate) -> tuple[etree._Element, dict[str, str]]:
    """The message of an HTTP-Redirect URL after checking its query signature (saml-bindings-2.0-os
    §3.4.4.1) with ``certificate``, as the IdP would; returns (XML, decoded parameters)."""
    raw = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
    assert unquote(raw["SigAlg"]) == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    signed = "&".join(f"{name}={raw[name]}" for name in (field, "RelayState", "SigAlg") if name in raw)
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(unquote(raw["Signature"])), signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    params = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    return etree.fromstring(zlib.decompress(base64.b64decode(params[field]), -15)), params


def test_sp_metadata_lists_the_slo_url(s: SamlSetup) -> None:
    metadata = etree.fromstring(httpx.get(f"{s.live.url}/sso/{s.cid}/saml/metadata", trust_env=False).content)
    services = metadata.findall(f".//{{{MD}}}SingleLogoutService")
    assert {(e.get("Binding", "").rsplit(":", 1)[-1], e.get("Location")) for e in services} == {
        ("HTTP-Redirect", slo_url(s)), ("HTTP-POST", slo_url(s))}


def test_idp_initiated_logout_ends_the_session_and_answers_signed(s: SamlSetup) -> None:
    # saml-idp keeps one global user that each sign-in overwrites, so the person it logs out signs in last.
    bystander, who = sign_in(s, "bob"), sign_in(s)
    assert still_signed_in(s, who)
    # The person signs out at the IdP: samlp posts its LogoutRequest through the browser to Keyhall.
    start_at_idp = who.idp_browser.get(f"{s.idp.base_url}/signout")
    assert start_at_idp.status_code == 302, start_at_idp.text
    page = who.idp_browser.get(urljoin(s.idp.base_url, start_at_idp.headers["location"]))
    form = read_forms(page.text)
    assert page.status_code == 200, page.text
    assert form.actions == [slo_url(s)]
    request = etree.fromstring(base64.b64decode(form.inputs["SAMLRequest"]))
    assert request.tag == f"{{{SAMLP}}}LogoutRequest"
    assert request.find(f"{{{DS}}}Signature") is not None  # samlp signs the XML (HTTP-POST binding)
    answer = who.browser.post(form.actions[0], data=form.inputs)
    # Answered by the same binding (HTTP-POST): a page auto-posting the signed LogoutResponse to the IdP.
    assert answer.status_code == 200, answer.text
    assert "form-action " + s.idp.base_url in answer.headers["content-security-policy"]
    reply = read_forms(answer.text)
    assert reply.actions == [f"{s.idp.base_url}/saml/slo"]
    assert reply.inputs["RelayState"] == form.inputs["RelayState"]
    response = etree.fromstring(base64.b64decode(reply.inputs["SAMLResponse"]))
    signature = response.find(f"{{{DS}}}Signature")
    assert signature is not None
    verify_enveloped_signature(response, signature, certificates=[sp_certificate_pem(s)])  # raises if it fails
    assert response.tag == f"{{{SAMLP}}}LogoutResponse"
    assert response.get("InResponseTo") == request.get("ID")
    assert response.get("Destination") == f"{s.idp.base_url}/saml/slo"
    assert response.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode").get("Value") == SUCCESS  # type: ignore[union-attr]
    assert not still_signed_in(s, who)
    assert still_signed_in(s, bystander)  # another person's session stands
    # The IdP takes Keyhall's answer and finishes its logout.
    done = who.idp_browser.post(reply.actions[0], data=reply.inputs)
    assert done.status_code < 500, done.text
    # The same LogoutRequest again is a replay.
    assert REFUSED in who.browser.post(slo_url(s), data=form.inputs).text


def test_sp_initiated_logout_goes_through_the_idp_and_back_to_the_product(s: SamlSetup) -> None:
    who = sign_in(s)
    logout = who.browser.get(f"{s.live.url}/oauth2/logout", params={
        "id_token_hint": who.tokens["id_token"], "post_logout_redirect_uri": after_logout(s), "state": "st-1"})
    assert logout.status_code == 303, logout.text
    to_idp = logout.headers["location"]
    assert to_idp.startswith(f"{s.idp.base_url}/saml/slo?"), to_idp
    params = {name: values[0] for name, values in parse_qs(urlsplit(to_idp).query).items()}
    request = etree.fromstring(zlib.decompress(base64.b64decode(params["SAMLRequest"]), -15))
    assert request.findtext(f"{{{SAML}}}NameID") == who.name_id
    assert request.findtext(f"{{{SAMLP}}}SessionIndex") == who.session_index
    assert request.findtext(f"{{{SAML}}}Issuer") == s.idp.sp_entity_id
    assert not still_signed_in(s, who)  # ended at Keyhall before the trip to the IdP
    at_idp = who.idp_browser.get(to_idp)
    form = read_forms(at_idp.text)
    assert at_idp.status_code == 200, at_idp.text
    assert form.actions == [slo_url(s)], at_idp.text
    assert form.inputs["RelayState"] == params["RelayState"]
    back = who.browser.post(form.actions[0], data=form.inputs)
    assert back.status_code == 303, back.text
    assert back.headers["location"] == f"{after_logout(s)}?state=st-1"
    # The IdP's answer is spent.
    assert REFUSED in who.browser.post(slo_url(s), data=form.inputs).text


# -- attacks: LogoutRequests made and signed in the test -------------------------------------------------

def crafted(s: SamlSetup, who: SignedIn, *, signer: Signer | None, issuer: str = IDP_ENTITY_ID,
            destination: str | None = None, issued: datetime | None = None,
            lifetime: timedelta = timedelta(minutes=5)) -> dict[str, str]:
    """The HTTP-POST form an IdP would send: a LogoutRequest for ``who``, enveloped-signed by ``signer``."""
    _id, xml = build_logout_request(issuer=issuer, destination=destination or slo_url(s), name_id=who.name_id,
                                    name_id_format=None, session_index=who.session_index,
                                    now=issued or datetime.now(UTC), not_on_or_after=lifetime)
    root = etree.fromstring(xml)
    if signer is not None:
        sign(root, signer)
    return {"SAMLRequest": base64.b64encode(etree.tostring(root)).decode(), "RelayState": "idp-state"}


def refused(s: SamlSetup, who: SignedIn, answer: httpx.Response) -> None:
    assert answer.status_code == 400, answer.text
    assert REFUSED in answer.text
    assert "location" not in answer.headers
    assert still_signed_in(s, who)


def test_forged_logout_requests_are_refused_and_end_nothing(s: SamlSetup) -> None:
    other, who = sign_in(s), sign_in(s)  # the same person, signed in twice at the IdP: two SessionIndex values
    assert other.name_id == who.name_id
    assert other.session_index != who.session_index
    idp_key = Signer(s.idp.cert_pem, s.idp.key_pem)
    stranger = Signer.make("stranger.test", slot=3)
    post = who.browser.post
    refused(s, who, post(slo_url(s), data=crafted(s, who, signer=None)))
    refused(s, who, post(slo_url(s), data=crafted(s, who, signer=stranger)))
    refused(s, who, post(slo_url(s), data=crafted(s, who, signer=idp_key, issuer="urn:other-idp")))
    refused(s, who, post(slo_url(s), data=crafted(s, who, signer=idp_key, destination=f"{s.live.url}/elsewhere")))
    refused(s, who, post(slo_url(s), data=crafted(s, who, signer=idp_key, lifetime=timedelta(minutes=-2))))
    refused(s, who, post(slo_url(s), data=crafted(s, who, signer=idp_key,
                                                 issued=datetime.now(UTC) - timedelta(hours=1))))
    # By HTTP-Redirect: unsigned, then signed by another key.
    _id, xml = build_logout_request(issuer=IDP_ENTITY_ID, destination=slo_url(s), name_id=who.name_id,
                                    name_id_format=None, session_index=who.session_index, now=datetime.now(UTC))
    refused(s, who, who.browser.get(redirect_binding_url(slo_url(s), "SAMLRequest", xml, "r")))
    refused(s, who, who.browser.get(redirect_binding_url(slo_url(s), "SAMLRequest", xml, "r",
                                                         signing_key_pem=stranger.key_pem)))
    # Signed by the IdP's key, by HTTP-Redirect: accepted, the session ends, the answer is signed.
    accepted = who.browser.get(redirect_binding_url(slo_url(s), "SAMLRequest", xml, "r",
                                                    signing_key_pem=idp_key.key_pem))
    assert accepted.status_code == 303, accepted.text
    response, _params = verified_redirect(accepted.headers["location"], "SAMLResponse", sp_certificate(s))
    assert response.get("InResponseTo") == _id
    assert not still_signed_in(s, who)
    assert still_signed_in(s, other)  # the SessionIndex named one of the two sessions
    replayed = who.browser.get(redirect_binding_url(slo_url(s), "SAMLRequest", xml, "r",
                                                    signing_key_pem=idp_key.key_pem))
    assert replayed.status_code == 400
    assert "already used" in replayed.text
