"""End to end: a product (Authlib's OAuth 2.0 client) signs a person in through Keyhall, which acts
as a SAML 2.0 service provider toward the organization's IdP (the real npm saml-idp), over real HTTP.

httpx plays the browser (one cookie jar per browser), ``saml_idp.scripted_login`` plays the
person at the IdP and returns the auto-post form the IdP would submit; the test posts that form to
Keyhall's Assertion Consumer Service with the browser's cookie jar, follows the completion step,
and the product redeems the code.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import uuid
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.jwk import KeySet
from lxml import etree

from keyhall.core.vocabulary import Role
from keyhall.protocols.saml.xml import parse_untrusted_xml
from tests.support.api import auth
from tests.support.live import LiveKeyhall, TenantSetup
from tests.support.peers import free_port
from tests.support.saml_idp import SamlIdp, samlp_signature_error

pytestmark = pytest.mark.peers

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
#: What saml-idp sends (tests/peers/saml_idp config.js): firstName, lastName, displayName, email, groups.
ATTRIBUTE_MAPPINGS = {"email": "email", "given_name": "firstName", "family_name": "lastName",
                      "name": "displayName", "groups": "groups"}
REFUSED_HEADING = "We could not sign you in"


@dataclass
class SamlSetup(TenantSetup):
    """An organization with a SAML connection to the real IdP, and a product registered with Keyhall."""

    idp: SamlIdp

    @property
    def acs_url(self) -> str:
        return f"{self.live.url}/sso/{self.cid}/saml/acs"

    def user(self, login: str = "alice", **extra: str) -> dict[str, str]:
        """saml-idp's user, in this organization's email domain (so the directory's email is trusted)."""
        email = f"{login}@{self.domain}"
        return {"userName": email, "email": email, "firstName": login.capitalize(), "lastName": "Archer",
                "displayName": f"{login.capitalize()} Archer", "groups": "engineering,admins", **extra}

    def patch_saml(self, **settings: Any) -> dict[str, Any]:
        with self.live.api() as api:
            response = api.patch(self.connection_path, json={"saml": settings}, headers=auth(self.owner))
        assert response.status_code == 200, response.text
        self.connection = response.json()
        return self.connection



def make_saml_setup(live: LiveKeyhall, idp: SamlIdp, name: str, *, pin_certificate: bool = True,
                    product_redirect: str | None = None, **saml: Any) -> SamlSetup:
    """The connection imports the IdP's metadata by URL. ``pin_certificate`` also pins the IdP's
    certificate explicitly in ``saml.certificates``: sign-in with the metadata alone is broken (see
    ``test_metadata_url_alone_is_enough_to_sign_in``), and this keeps every other test meaningful."""
    if pin_certificate:
        saml = {"certificates": [idp.cert_pem], **saml}
    suffix = uuid.uuid4().hex[:8]
    domain = f"{name}-{suffix}.test".lower()
    with live.api() as api:
        org = api.post("/v1/organizations", json={"name": f"{name} {suffix}"}, headers=auth(live.instance_token))
        assert org.status_code == 201, org.text
        org_data = org.json()
        owner = live.issue_key(org_data["id"], Role.OWNER)
        body = {"protocol": "saml", "name": "corp-saml", "domains": [domain], "attribute_mappings": ATTRIBUTE_MAPPINGS,
                "saml": {"metadata_url": idp.metadata_url, "sp_entity_id": idp.sp_entity_id, **saml}}
        created = api.post(f"/v1/organizations/{org_data['id']}/connections", json=body, headers=auth(owner))
        assert created.status_code == 201, created.text
        product_redirect = product_redirect or f"http://127.0.0.1:{free_port()}/product/callback"  # never requested
        app = api.post("/v1/applications", json={"name": f"Product {suffix}", "redirect_uris": [product_redirect]},
                       headers=auth(live.instance_token))
        assert app.status_code == 201, app.text
    return SamlSetup(live=live, idp=idp, org=org_data, owner=owner, connection=created.json(), domain=domain,
                     client_id=str(app.json()["client_id"]), client_secret=str(app.json()["client_secret"]),
                     product_redirect=product_redirect)


@pytest.fixture
def idp(saml_idp: SamlIdp) -> Iterator[SamlIdp]:
    """The session's IdP, with any option a test changed put back afterwards."""
    yield saml_idp
    saml_idp.reset()


@pytest.fixture
def setup(live_keyhall: LiveKeyhall, idp: SamlIdp) -> SamlSetup:
    return make_saml_setup(live_keyhall, idp, "Saml")


def new_browser() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=15, follow_redirects=False)


def product_client(s: SamlSetup) -> OAuth2Client:
    return OAuth2Client(client_id=s.client_id, client_secret=s.client_secret,
                        scope="openid email profile groups", redirect_uri=s.product_redirect,
                        code_challenge_method="S256", trust_env=False, timeout=15)


@dataclass
class Started:
    idp_url: str  # the IdP's SSO URL with SAMLRequest and RelayState
    verifier: str
    nonce: str
    state: str


def start(s: SamlSetup, browser: httpx.Client, product: OAuth2Client, login: str = "alice") -> Started:
    """The product sends the browser to Keyhall, which routes by the hint's domain and answers 303 to the IdP."""
    verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    url, state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                  nonce=nonce, login_hint=f"{login}@{s.domain}")
    response = browser.get(url)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(s.idp.sso_url + "?"), location
    return Started(idp_url=location, verifier=verifier, nonce=nonce, state=state)


def redirect_params(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def authn_request(url: str) -> etree._Element:
    """The AuthnRequest of an HTTP-Redirect URL: base64, raw DEFLATE (saml-bindings-2.0-os §3.4.4.1)."""
    xml = zlib.decompress(base64.b64decode(redirect_params(url)["SAMLRequest"]), -15)
    return parse_untrusted_xml(xml, field="SAMLRequest", subject="AuthnRequest")


def decode_response(saml_response: str) -> etree._Element:
    return parse_untrusted_xml(base64.b64decode(saml_response), field="SAMLResponse", subject="SAML response")


def post_acs(s: SamlSetup, browser: httpx.Client, action: str, saml_response: str,
             relay_state: str | None) -> httpx.Response:
    """What the IdP's auto-post page makes the browser do."""
    assert action == s.acs_url, action
    form = {"SAMLResponse": saml_response, **({"RelayState": relay_state} if relay_state else {})}
    return browser.post(action, data=form)


def follow_completion(s: SamlSetup, browser: httpx.Client, acs_answer: httpx.Response) -> httpx.Response:
    """The ACS sends the browser to the completion step; returns that step's answer."""
    assert acs_answer.status_code == 303, acs_answer.text
    location = acs_answer.headers["location"]
    assert location.startswith(f"/sso/{s.cid}/saml/complete?step="), location
    return browser.get(urljoin(s.acs_url, location))


def sign_in(s: SamlSetup, browser: httpx.Client, product: OAuth2Client, login: str = "alice") -> tuple[str, Started]:
    """A whole SP-initiated sign-in up to the product's callback; returns (callback URL, what started it)."""
    started = start(s, browser, product, login)
    action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user(login))
    assert relay_state == redirect_params(started.idp_url)["RelayState"]
    done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
    assert done.status_code == 303, done.text
    callback = done.headers["location"]
    assert callback.startswith(s.product_redirect + "?"), callback
    return callback, started


def verify_id_token(s: SamlSetup, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(httpx.get(f"{s.live.url}/oauth2/jwks", trust_env=False).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": s.live.url},
                          aud={"essential": True, "value": s.client_id}).validate(decoded.claims)
    return dict(decoded.claims)


def redeem(s: SamlSetup, product: OAuth2Client, callback: str, started: Started) -> dict[str, Any]:
    token = product.fetch_token(f"{s.live.url}/oauth2/token", authorization_response=callback,
                                code_verifier=started.verifier, state=started.state)
    claims = verify_id_token(s, token["id_token"])
    assert claims["nonce"] == started.nonce
    return claims


_REFERENCE = re.compile(r"Reference for your administrator: ([A-Za-z0-9._:-]+)")


def assert_refused(response: httpx.Response, *, status: int = 400, says: str | None = None) -> str:
    """A plain HTML error page (never a redirect, never a 500); returns its reference (the request id)."""
    assert response.status_code == status, (response.status_code, response.text[:1000])
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html"), response.headers
    assert response.headers.get("cache-control") == "no-store"
    assert REFUSED_HEADING in response.text
    assert "Traceback" not in response.text
    if says is not None:
        assert says in response.text, response.text[:1000]
    found = _REFERENCE.search(response.text)
    assert found is not None, response.text[:1000]
    assert response.headers["x-request-id"] == found.group(1)
    return found.group(1)


def failed_reason(s: SamlSetup, request_id: str) -> str:
    """The reason of the organization's login.failed audit event written by that request."""
    events = [e for e in s.audit("login.failed") if e["request_id"] == request_id]
    assert len(events) == 1, s.audit("login.failed")
    assert events[0]["changes"]["outcome"] == "failure"
    assert events[0]["target_id"] == s.cid
    return str(events[0]["changes"]["reason"])


def instance_failed_reason(live: LiveKeyhall, request_id: str) -> str:
    """As :func:`failed_reason`, for a failure Keyhall cannot tie to an organization (none in the event)."""
    with live.runtime.database.unit_of_work() as uow:
        page = uow.audit.list_page(None, limit=200, cursor=None, action="login.failed")
        events = [e for e in page.items if e.request_id == request_id]
    assert len(events) == 1
    return str(events[0].changes["reason"])


def signature_places(saml_response: str) -> set[str]:
    """Which of the Response and its Assertion carry an enveloped ds:Signature, and with what method."""
    root = decode_response(saml_response)
    places = set()
    for name, element in (("response", root), ("assertion", root.find(f"{{{SAML}}}Assertion"))):
        assert element is not None
        for signature in element.findall(f"{{{DS}}}Signature"):
            method = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod")
            assert method is not None
            places.add(f"{name}:{method.get('Algorithm')}")
    return places


# --- SP-initiated sign-in ------------------------------------------------------------------------


def test_sp_initiated_sign_in_reaches_the_product_with_the_idps_attributes(setup: SamlSetup) -> None:
    s = setup
    assert s.connection["is_verified"] is False
    assert s.connection["discovered"]["idp_entity_id"] == s.idp.entity_id
    s.live.verify_domain(s.org["id"], s.owner, s.domain)  # proven in DNS: see the assertion on email_verified
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        params = redirect_params(started.idp_url)
        assert set(params) == {"SAMLRequest", "RelayState"}  # sign_requests is off
        request = authn_request(started.idp_url)
        assert request.get("AssertionConsumerServiceURL") == s.acs_url
        assert request.get("Destination") == s.idp.sso_url
        assert request.findtext(f"{{{SAML}}}Issuer") == s.idp.sp_entity_id
        assert len(params["RelayState"].encode()) <= 80

        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        assert relay_state == params["RelayState"]
        assert decode_response(saml_response).get("InResponseTo") == request.get("ID")
        acs = post_acs(s, browser, action, saml_response, relay_state)
        done = follow_completion(s, browser, acs)
        assert done.status_code == 303, done.text
        callback = done.headers["location"]
        assert callback.startswith(s.product_redirect + "?")
        query = redirect_params(callback)
        assert query["state"] == started.state
        assert query["iss"] == s.live.url
        assert "keyhall_login" not in browser.cookies  # the finished sign-in's cookie is gone

        claims = redeem(s, product, callback, started)
    assert claims["email"] == f"alice@{s.domain}"
    # The organization's own directory asserts the address, in a domain the organization verified in DNS
    # (tests/integration/test_trust_directory_email.py: not when the domain is merely listed).
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice Archer"
    assert claims["given_name"] == "Alice"
    assert claims["family_name"] == "Archer"
    assert sorted(claims["groups"]) == ["admins", "engineering"]
    assert claims["org_id"] == s.org["id"]
    assert claims["connection_id"] == s.cid
    assert claims["amr"] == ["ext"]
    assert claims["sub"] != f"alice@{s.domain}"  # pairwise, not the IdP's NameID

    assert s.get_connection()["is_verified"] is True
    events = s.audit("login.succeeded")
    assert len(events) == 1
    assert events[0]["changes"]["connection_id"] == s.cid
    assert events[0]["changes"]["client_id"] == s.client_id
    assert s.audit("login.failed") == []


def test_metadata_url_alone_is_enough_to_sign_in(live_keyhall: LiveKeyhall, idp: SamlIdp) -> None:
    """The IdP's signing certificate comes from its metadata: no separate pin is needed.

    Fails today: ``login/saml.py`` ``_idp`` reads ``discovered["certificates"][i]["pem"]``, but
    ``IdpDescription.as_discovered`` stores ``CertificateInfo.as_dict``, which leaves the PEM out;
    so the connection has no usable certificate and every sign-in ends ``connection_misconfigured``.
    """
    s = make_saml_setup(live_keyhall, idp, "MetadataOnly", pin_certificate=False)
    assert "certificates" not in s.connection["saml"] or not s.connection["saml"]["certificates"]
    assert [c["sha256_fingerprint"] for c in s.connection["discovered"]["certificates"]]
    with new_browser() as browser, product_client(s) as product:
        verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        url, _state = product.create_authorization_url(f"{s.live.url}/oauth2/authorize", code_verifier=verifier,
                                                       nonce=nonce, login_hint=f"alice@{s.domain}")
        response = browser.get(url)
        if response.status_code != 303:
            reason = failed_reason(s, assert_refused(response))
            pytest.fail(f"a connection configured by metadata_url cannot start a SAML sign-in: {reason}")
        callback, started = sign_in(s, browser, product)
        assert redeem(s, product, callback, started)["email"] == f"alice@{s.domain}"


@pytest.mark.parametrize(("idp_settings", "signed"), [
    ({}, {f"response:{RSA_SHA256}", f"assertion:{RSA_SHA256}"}),
    ({"signResponse": False}, {f"assertion:{RSA_SHA256}"}),
    ({"signAssertion": False}, {f"response:{RSA_SHA256}"}),
], ids=["response-and-assertion-signed", "assertion-signed-only", "response-signed-only"])
def test_signed_response_or_signed_assertion_alone_is_accepted(
    setup: SamlSetup, idp_settings: dict[str, bool], signed: set[str]
) -> None:
    s = setup
    s.idp.configure(**idp_settings)
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product, "bob")
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user("bob"))
        assert signature_places(saml_response) == signed
        done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
        assert done.status_code == 303, done.text
        claims = redeem(s, product, done.headers["location"], started)
    assert claims["email"] == f"bob@{s.domain}"
    assert claims["connection_id"] == s.cid


def test_a_second_sign_in_updates_the_same_person(setup: SamlSetup) -> None:
    s = setup
    subjects = []
    for surname in ("Archer", "Bowman"):
        with new_browser() as browser, product_client(s) as product:
            started = start(s, browser, product)
            action, saml_response, relay_state = s.idp.scripted_login(
                started.idp_url, user=s.user(lastName=surname, displayName=f"Alice {surname}", groups="sales"))
            done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
            assert done.status_code == 303, done.text
            claims = redeem(s, product, done.headers["location"], started)
            subjects.append(claims["sub"])
            assert claims["family_name"] == surname
            assert claims["groups"] == ["sales"]
    assert subjects[0] == subjects[1]


# --- refusals ------------------------------------------------------------------------------------


def test_replayed_response_is_refused_with_a_clear_page_and_no_code(setup: SamlSetup) -> None:
    s = setup
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        first = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
        assert first.status_code == 303, first.text

        # The same form again, from the same browser: the trip it answers is spent.
        again = post_acs(s, browser, action, saml_response, relay_state)
        reference = assert_refused(again, says="not one Keyhall is waiting for")
        assert failed_reason(s, reference) in ("replayed", "state_invalid")
        # Without its RelayState the response answers a request Keyhall no longer waits for either.
        bare = post_acs(s, browser, action, saml_response, None)
        reference = assert_refused(bare)
        assert failed_reason(s, reference) in ("replayed", "in_response_to_mismatch", "unsolicited")
    assert len(s.audit("login.succeeded")) == 1


def test_tampered_response_is_refused(setup: SamlSetup) -> None:
    s = setup
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        xml = base64.b64decode(saml_response)
        forged = xml.replace(f"alice@{s.domain}".encode(), f"admin@{s.domain}".encode())
        assert forged != xml
        refused = post_acs(s, browser, action, base64.b64encode(forged).decode(), relay_state)
        assert failed_reason(s, assert_refused(refused)) == "bad_signature"
        # A refused response spends its sign-in: the same RelayState is not waited for any more.
        again = post_acs(s, browser, action, saml_response, relay_state)
        assert failed_reason(s, assert_refused(again)) == "state_invalid"
        started = start(s, browser, product)
        action, _response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        garbage = post_acs(s, browser, action, "not base64 at all!", relay_state)
        assert failed_reason(s, assert_refused(garbage)) == "malformed"


def test_sha1_signatures_are_refused_unless_the_connection_allows_them(setup: SamlSetup) -> None:
    s = setup
    s.idp.configure(signatureAlgorithm="rsa-sha1", digestAlgorithm="sha1")
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        assert signature_places(saml_response) == {f"response:{RSA_SHA1}", f"assertion:{RSA_SHA1}"}
        refused = post_acs(s, browser, action, saml_response, relay_state)
        assert failed_reason(s, assert_refused(refused)) == "sha1_refused"
    assert s.get_connection()["is_verified"] is False

    assert s.patch_saml(allow_sha1=True)["saml"]["allow_sha1"] is True
    with new_browser() as browser, product_client(s) as product:
        callback, started = sign_in(s, browser, product)
        claims = redeem(s, product, callback, started)
    assert claims["email"] == f"alice@{s.domain}"


def test_assertion_for_another_audience_is_refused(setup: SamlSetup) -> None:
    s = setup
    s.idp.configure(audience="urn:keyhall:another-service")
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        refused = post_acs(s, browser, action, saml_response, relay_state)
        assert failed_reason(s, assert_refused(refused)) == "wrong_audience"
    assert s.audit("login.succeeded") == []


def test_response_posted_from_another_browser_is_refused_at_the_completion_step(setup: SamlSetup) -> None:
    s = setup
    with new_browser() as victim, product_client(s) as product:
        started = start(s, victim, product)
        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        with new_browser() as other:
            # The ACS takes the (valid) response, but the browser that posts it never started this sign-in.
            acs = post_acs(s, other, action, saml_response, relay_state)
            completion = follow_completion(s, other, acs)
            reference = assert_refused(completion, says="not started in this browser")
            assert failed_reason(s, reference) == "transaction_not_bound"
        # The step is single-use: the first browser to reach it spent it.
        late = victim.get(urljoin(s.acs_url, acs.headers["location"]))
        reference = assert_refused(late)
        assert failed_reason(s, reference) == "state_invalid"
    assert s.audit("login.succeeded") == []


def test_response_for_one_connection_is_refused_at_anothers_acs(live_keyhall: LiveKeyhall, idp: SamlIdp) -> None:
    """Two organizations trusting the same IdP under the same SP entity ID (its fixed audience)."""
    s, other = make_saml_setup(live_keyhall, idp, "Here"), make_saml_setup(live_keyhall, idp, "There")
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        _action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        assert relay_state is not None
        for form in ({"SAMLResponse": saml_response, "RelayState": relay_state}, {"SAMLResponse": saml_response}):
            refused = browser.post(other.acs_url, data=form)
            assert failed_reason(other, assert_refused(refused)) in (
                "state_invalid", "wrong_destination", "in_response_to_mismatch")
    assert other.audit("login.succeeded") == []
    assert s.audit("login.succeeded") == []


def test_unknown_connection_at_the_acs_is_refused(live_keyhall: LiveKeyhall) -> None:
    with new_browser() as browser:
        response = browser.post(f"{live_keyhall.url}/sso/{uuid.uuid4()}/saml/acs",
                                data={"SAMLResponse": "PHg+PC94Pg==", "RelayState": "x"})
        assert_refused(response, status=403)


# --- IdP-initiated -------------------------------------------------------------------------------


def test_idp_initiated_sign_in_is_refused_by_default_and_works_once_configured(setup: SamlSetup) -> None:
    s = setup
    with new_browser() as browser:
        action, saml_response, relay_state = s.idp.idp_initiated_login(acs_url=s.acs_url, user=s.user())
        assert relay_state is None
        assert decode_response(saml_response).get("InResponseTo") is None
        refused = post_acs(s, browser, action, saml_response, relay_state)
        assert failed_reason(s, assert_refused(refused)) in ("unsolicited", "state_invalid")

    connection = s.patch_saml(allow_idp_initiated=True, idp_initiated_client_id=s.client_id,
                              idp_initiated_redirect_uri=s.product_redirect)
    assert connection["saml"]["allow_idp_initiated"] is True
    with new_browser() as browser:
        # A RelayState from the IdP is never a place to send the browser.
        action, saml_response, relay_state = s.idp.idp_initiated_login(
            acs_url=s.acs_url, user=s.user("carol"), relay_state="https://attacker.example/after")
        assert relay_state == "https://attacker.example/after"
        landed = post_acs(s, browser, action, saml_response, relay_state)
        assert landed.status_code == 303, landed.text
        callback = landed.headers["location"]
        assert callback.startswith(s.product_redirect + "?"), callback
        query = redirect_params(callback)
        assert set(query) == {"code", "iss"}  # no state: the product asked for nothing
        assert query["iss"] == s.live.url

        token = httpx.post(f"{s.live.url}/oauth2/token", trust_env=False, timeout=15,
                           auth=(s.client_id, s.client_secret),
                           data={"grant_type": "authorization_code", "code": query["code"],
                                 "redirect_uri": s.product_redirect})
        assert token.status_code == 200, token.text
        claims = verify_id_token(s, token.json()["id_token"])
        assert claims["email"] == f"carol@{s.domain}"
        assert claims["given_name"] == "Carol"
        assert claims["connection_id"] == s.cid
        assert claims["org_id"] == s.org["id"]
        assert "nonce" not in claims

        replayed = post_acs(s, browser, action, saml_response, relay_state)
        assert failed_reason(s, assert_refused(replayed, says="already used")) == "replayed"
    assert s.get_connection()["is_verified"] is True
    assert len(s.audit("login.succeeded")) == 1


# --- SP metadata and signed requests -------------------------------------------------------------


def test_sp_metadata_names_the_acs_and_the_connections_certificate(setup: SamlSetup) -> None:
    s = setup
    url = f"{s.live.url}/sso/{s.cid}/saml/metadata"
    assert s.connection["sp_metadata_url"] == url
    assert s.connection["acs_url"] == s.acs_url
    response = httpx.get(url, trust_env=False, timeout=15)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/samlmetadata+xml")
    root = parse_untrusted_xml(response.content, field="metadata", subject="SP metadata")
    assert root.tag == f"{{{MD}}}EntityDescriptor"
    assert root.get("entityID") == s.idp.sp_entity_id
    [descriptor] = root.findall(f"{{{MD}}}SPSSODescriptor")
    assert descriptor.get("AuthnRequestsSigned") == "false"
    [acs] = descriptor.findall(f"{{{MD}}}AssertionConsumerService")
    assert (acs.get("Binding"), acs.get("Location")) == (HTTP_POST, s.acs_url)
    certificate = s.connection["saml"]["sp_certificate"]
    body = "".join(line for line in certificate.strip().splitlines() if "CERTIFICATE" not in line)
    published = {"".join((key.findtext(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data/{{{DS}}}X509Certificate") or "").split())
                 for key in descriptor.findall(f"{{{MD}}}KeyDescriptor")}
    assert published == {body}
    assert "PRIVATE" not in response.text

    assert httpx.get(f"{s.live.url}/sso/{uuid.uuid4()}/saml/metadata", trust_env=False).status_code == 404


def test_signed_authn_requests_verify_with_samlp_and_sign_in(setup: SamlSetup) -> None:
    s = setup
    certificate = str(s.patch_saml(sign_requests=True)["saml"]["sp_certificate"])
    metadata = httpx.get(f"{s.live.url}/sso/{s.cid}/saml/metadata", trust_env=False, timeout=15)
    root = parse_untrusted_xml(metadata.content, field="metadata", subject="SP metadata")
    assert root.find(f"{{{MD}}}SPSSODescriptor").get("AuthnRequestsSigned") == "true"  # type: ignore[union-attr]
    with new_browser() as browser, product_client(s) as product:
        started = start(s, browser, product)
        params = redirect_params(started.idp_url)
        assert set(params) == {"SAMLRequest", "RelayState", "SigAlg", "Signature"}
        assert params["SigAlg"] == RSA_SHA256
        assert samlp_signature_error(certificate, redirect_url=started.idp_url) is None
        tampered = started.idp_url.replace("RelayState=", "RelayState=x")
        assert samlp_signature_error(certificate, redirect_url=tampered) is not None

        action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
        done = follow_completion(s, browser, post_acs(s, browser, action, saml_response, relay_state))
        assert done.status_code == 303, done.text
        claims = redeem(s, product, done.headers["location"], started)
    assert claims["connection_id"] == s.cid


# --- races ---------------------------------------------------------------------------------------


def _post_concurrently(s: SamlSetup, form: dict[str, str], copies: int) -> list[httpx.Response]:
    """``copies`` browsers post the same form to the ACS at the same moment."""
    barrier = threading.Barrier(copies)

    def post(_index: int) -> httpx.Response:
        with new_browser() as browser:
            barrier.wait(timeout=15)
            return browser.post(s.acs_url, data=form)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(post, range(copies)))


@pytest.mark.parametrize("initiated_by", ["sp", "idp"])
def test_one_response_posted_concurrently_is_accepted_once(setup: SamlSetup, initiated_by: str) -> None:
    s = setup
    if initiated_by == "idp":
        s.patch_saml(allow_idp_initiated=True, idp_initiated_client_id=s.client_id,
                     idp_initiated_redirect_uri=s.product_redirect)
        _action, saml_response, relay_state = s.idp.idp_initiated_login(acs_url=s.acs_url, user=s.user())
    else:
        with new_browser() as browser, product_client(s) as product:
            started = start(s, browser, product)
            _action, saml_response, relay_state = s.idp.scripted_login(started.idp_url, user=s.user())
    form = {"SAMLResponse": saml_response, **({"RelayState": relay_state} if relay_state else {})}
    answers = _post_concurrently(s, form, copies=4)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [303, 400, 400, 400], [(a.status_code, a.text[:300]) for a in answers]
    for answer in answers:
        if answer.status_code != 303:
            assert failed_reason(s, assert_refused(answer)) in ("replayed", "state_invalid")
