"""Keyhall's AuthnRequests against a real SAML IdP (npm ``saml-idp``, see tests/support/saml_idp.py).

The responses are only read here (who they answer, where they go, for whom, that they are
signed); validating them is the job of the Response validator's own tests.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from lxml import etree

from keyhall.protocols.saml.authn_request import AuthnRequest, build_authn_request, post_form, redirect_url
from keyhall.protocols.saml.certificates import parse_certificate
from keyhall.protocols.saml.metadata import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, parse_idp_metadata
from keyhall.protocols.saml.xml import parse_untrusted_xml
from keyhall.security.sp_keys import generate_sp_keypair
from tests.support.saml_idp import (
    IDP_ENTITY_ID,
    SP_ENTITY_ID,
    SamlIdp,
    read_forms,
    samlp_signature_error,
)

pytestmark = pytest.mark.peers

ACS_URL = "http://127.0.0.1:8000/sso/conn-1/saml/acs"
OTHER_ACS_URL = "http://127.0.0.1:8000/sso/conn-2/saml/acs"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BOB = {"userName": "bob@example.com", "email": "bob@example.com", "firstName": "Bob", "lastName": "Baker"}


def new_request(idp: SamlIdp, *, force_authn: bool = False) -> AuthnRequest:
    return build_authn_request(
        sp_entity_id=SP_ENTITY_ID,
        acs_url=ACS_URL,
        destination=idp.sso_url,
        name_id_format=EMAIL_FORMAT,
        force_authn=force_authn,
        now=datetime.now(UTC),
    )


def decode(saml_response: str) -> etree._Element:
    return parse_untrusted_xml(
        base64.b64decode(saml_response, validate=True), field="SAMLResponse", subject="SAML response"
    )


def only(root: etree._Element, path: str) -> etree._Element:
    found = root.findall(path)
    assert len(found) == 1, f"{path}: {len(found)} found"
    return found[0]


def attributes(assertion: etree._Element) -> dict[str, list[str]]:
    return {
        str(attribute.get("Name")): [value.text or "" for value in attribute.findall(f"{{{SAML}}}AttributeValue")]
        for attribute in assertion.iter(f"{{{SAML}}}Attribute")
    }


@pytest.fixture(scope="module")
def sp_keys() -> tuple[str, str]:
    return generate_sp_keypair("keyhall-test-sp", now=datetime.now(UTC))


@pytest.fixture
def idp(saml_idp: SamlIdp) -> Iterator[SamlIdp]:
    """The session's IdP, with any option a test changed put back afterwards."""
    yield saml_idp
    saml_idp.reset()


def test_idp_metadata_is_read_by_our_metadata_parser(idp: SamlIdp) -> None:
    metadata = parse_idp_metadata(idp.metadata_xml())

    assert metadata.entity_id == IDP_ENTITY_ID
    assert metadata.sso_urls == {BINDING_HTTP_REDIRECT: idp.sso_url, BINDING_HTTP_POST: idp.sso_url}
    assert [info.sha256_fingerprint for info in metadata.signing_certificates] == [
        parse_certificate(idp.cert_pem, field="idp").sha256_fingerprint
    ]
    assert metadata.want_authn_requests_signed is False


def test_redirect_request_is_answered_with_a_signed_response_to_our_acs(idp: SamlIdp) -> None:
    request = new_request(idp)

    action, saml_response, relay_state = idp.scripted_login(redirect_url(idp.sso_url, request, "relay-123"), user=BOB)

    assert action == ACS_URL
    assert relay_state == "relay-123"
    response = decode(saml_response)
    assert response.tag == f"{{{SAMLP}}}Response"
    assert response.get("InResponseTo") == request.id
    assert response.get("Destination") == ACS_URL
    assert only(response, f"{{{SAML}}}Issuer").text == IDP_ENTITY_ID
    assert only(response, f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode").get("Value") == SUCCESS
    assertion = only(response, f"{{{SAML}}}Assertion")
    audience = only(assertion, f"{{{SAML}}}Conditions/{{{SAML}}}AudienceRestriction/{{{SAML}}}Audience")
    assert audience.text == SP_ENTITY_ID
    confirmation = only(assertion, f"{{{SAML}}}Subject/{{{SAML}}}SubjectConfirmation/{{{SAML}}}SubjectConfirmationData")
    assert confirmation.get("InResponseTo") == request.id
    assert confirmation.get("Recipient") == ACS_URL
    name_id = only(assertion, f"{{{SAML}}}Subject/{{{SAML}}}NameID")
    assert (name_id.text, name_id.get("Format")) == ("bob@example.com", EMAIL_FORMAT)
    assert attributes(assertion)["firstName"] == ["Bob"]
    assert attributes(assertion)["groups"] == ["engineering", "admins"]
    for signed in (response, assertion):
        signature = only(signed, f"{{{DS}}}Signature")
        reference = only(signature, f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
        assert reference.get("URI") == "#" + str(signed.get("ID"))
        method = only(signature, f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod")
        assert method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


def test_every_login_sends_every_attribute_so_nothing_leaks_between_logins(idp: SamlIdp) -> None:
    idp.scripted_login(redirect_url(idp.sso_url, new_request(idp), None), user={**BOB, "groups": ["sales"]})

    _action, saml_response, relay_state = idp.scripted_login(redirect_url(idp.sso_url, new_request(idp), None), user={})

    assert relay_state is None
    found = attributes(only(decode(saml_response), f"{{{SAML}}}Assertion"))
    assert found["email"] == ["alice@example.com"]
    assert found["groups"] == ["engineering", "admins"]


def test_signed_redirect_request_verifies_with_samlp_and_is_accepted(idp: SamlIdp, sp_keys: tuple[str, str]) -> None:
    cert_pem, key_pem = sp_keys
    request = new_request(idp, force_authn=True)
    url = redirect_url(idp.sso_url, request, "relay-signed", signing_key_pem=key_pem)

    assert samlp_signature_error(cert_pem, redirect_url=url) is None
    other_cert, _other_key = generate_sp_keypair("someone-else", now=datetime.now(UTC))
    assert "does not match" in str(samlp_signature_error(other_cert, redirect_url=url))
    tampered = url.replace("RelayState=relay-signed", "RelayState=relay-forged")
    assert "does not match" in str(samlp_signature_error(cert_pem, redirect_url=tampered))
    unsigned = redirect_url(idp.sso_url, request, "relay-signed")
    assert "MUST be signed" in str(samlp_signature_error(cert_pem, redirect_url=unsigned))

    _action, saml_response, relay_state = idp.scripted_login(url, user=BOB)
    assert relay_state == "relay-signed"
    assert decode(saml_response).get("InResponseTo") == request.id


def test_signed_post_request_verifies_with_samlp_and_is_accepted(idp: SamlIdp, sp_keys: tuple[str, str]) -> None:
    cert_pem, key_pem = sp_keys
    request = new_request(idp)
    page = read_forms(post_form(idp.sso_url, request, "relay-post", signing_key_pem=key_pem, signing_cert_pem=cert_pem))
    assert page.actions == [idp.sso_url]
    fields = page.inputs

    assert samlp_signature_error(cert_pem, form=fields) is None
    forged_xml = base64.b64decode(fields["SAMLRequest"]).replace(ACS_URL.encode(), OTHER_ACS_URL.encode())
    forged = {**fields, "SAMLRequest": base64.b64encode(forged_xml).decode()}
    assert samlp_signature_error(cert_pem, form=forged) is not None

    action, saml_response, relay_state = idp.scripted_post_login(fields, user=BOB)
    assert (action, relay_state) == (ACS_URL, "relay-post")
    assert decode(saml_response).get("InResponseTo") == request.id


def test_idp_initiated_login_has_no_in_response_to(idp: SamlIdp) -> None:
    action, saml_response, relay_state = idp.idp_initiated_login(acs_url=OTHER_ACS_URL, user=BOB, relay_state="deep")

    assert (action, relay_state) == (OTHER_ACS_URL, "deep")
    response = decode(saml_response)
    assert response.get("InResponseTo") is None
    assert response.get("Destination") == OTHER_ACS_URL
    confirmation = only(response, f".//{{{SAML}}}SubjectConfirmationData")
    assert confirmation.get("InResponseTo") is None
    assert confirmation.get("Recipient") == OTHER_ACS_URL
    assert only(response, f".//{{{SAML}}}Audience").text == SP_ENTITY_ID

    _action, _response, later_relay_state = idp.idp_initiated_login(acs_url=OTHER_ACS_URL, user=BOB)
    assert later_relay_state is None


def test_settings_turn_off_the_response_signature_and_change_the_audience(idp: SamlIdp) -> None:
    idp.configure(signResponse=False, audience="urn:keyhall:another-sp")

    _action, saml_response, _relay = idp.scripted_login(redirect_url(idp.sso_url, new_request(idp), None), user=BOB)

    response = decode(saml_response)
    assert response.find(f"{{{DS}}}Signature") is None
    assertion = only(response, f"{{{SAML}}}Assertion")
    only(assertion, f"{{{DS}}}Signature")
    assert only(assertion, f".//{{{SAML}}}Audience").text == "urn:keyhall:another-sp"


def test_a_static_acs_gives_a_response_addressed_elsewhere_than_where_it_is_posted(idp: SamlIdp) -> None:
    """With ``allowRequestAcsUrl=false`` saml-idp still posts to the request's ACS (its getPostURL
    ignores the flag) but writes the configured ACS into Destination and Recipient: a ready-made
    "wrong Destination" response for the validator's tests."""
    idp.configure(allowRequestAcsUrl=False, acsUrl=OTHER_ACS_URL, recipient=OTHER_ACS_URL, destination=OTHER_ACS_URL)
    request = new_request(idp)

    action, saml_response, _relay = idp.scripted_login(redirect_url(idp.sso_url, request, None), user=BOB)

    assert action == ACS_URL
    response = decode(saml_response)
    assert response.get("Destination") == OTHER_ACS_URL
    assert only(response, f".//{{{SAML}}}SubjectConfirmationData").get("Recipient") == OTHER_ACS_URL
    assert response.get("InResponseTo") == request.id


def test_sha1_signing_on_request_yields_responses_for_negative_cases(idp: SamlIdp) -> None:
    idp.configure(signatureAlgorithm="rsa-sha1", digestAlgorithm="sha1")

    _action, saml_response, _relay = idp.scripted_login(redirect_url(idp.sso_url, new_request(idp), None), user=BOB)

    methods = {str(element.get("Algorithm")) for element in decode(saml_response).iter(f"{{{DS}}}SignatureMethod")}
    digests = {str(element.get("Algorithm")) for element in decode(saml_response).iter(f"{{{DS}}}DigestMethod")}
    assert methods == {"http://www.w3.org/2000/09/xmldsig#rsa-sha1"}
    assert digests == {"http://www.w3.org/2000/09/xmldsig#sha1"}
