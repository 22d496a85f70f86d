"""The SP's AuthnRequest (saml-core-2.0-os §3.4.1) and its HTTP-Redirect and HTTP-POST bindings
(saml-bindings-2.0-os §3.4, §3.5), read back the way an IdP reads them."""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from html.parser import HTMLParser
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from keyhall.errors import SamlMetadataError
from keyhall.protocols.saml.authn_request import (
    MAX_RELAY_STATE_BYTES,
    POST_FORM_ID,
    POST_FORM_SCRIPT,
    POST_FORM_SCRIPT_CSP_SOURCE,
    SAML_NS,
    SAMLP_NS,
    SIG_ALG_ECDSA_SHA256,
    SIG_ALG_RSA_SHA256,
    AuthnRequest,
    build_authn_request,
    post_form,
    redirect_url,
)
from keyhall.protocols.saml.xml import parse_untrusted_xml
from tests.support.saml_material import make_certificate

NOW = datetime(2025, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)
SP_ENTITY_ID = "https://keyhall.example/sso/c1/saml/metadata"
ACS_URL = "https://keyhall.example/sso/c1/saml/acs"
SSO_URL = "https://idp.example/saml/sso"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


def build(**overrides: object) -> AuthnRequest:
    arguments: dict[str, object] = {
        "sp_entity_id": SP_ENTITY_ID,
        "acs_url": ACS_URL,
        "destination": SSO_URL,
        "name_id_format": EMAIL_FORMAT,
        "force_authn": False,
        "now": NOW,
    }
    arguments.update(overrides)
    return build_authn_request(**arguments)  # type: ignore[arg-type]


def parse(xml: bytes) -> etree._Element:
    return parse_untrusted_xml(xml, field="SAMLRequest", error=SamlMetadataError, subject="SAML request")


@cache
def rsa_material() -> tuple[str, str]:
    return make_certificate("keyhall-sp-test", key_slot=31)


@cache
def ec_material() -> tuple[str, str]:
    return make_certificate("keyhall-sp-test-ec", key_type="ec256", key_slot=31)


def public_key_of(cert_pem: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key


# --- the AuthnRequest ------------------------------------------------------------------------


def test_request_id_is_an_underscore_and_40_hex_digits_and_fresh_each_time() -> None:
    first, second = build(), build()

    assert re.fullmatch(r"_[0-9a-f]{40}", first.id)
    assert first.id != second.id
    assert parse(first.xml).get("ID") == first.id


def test_given_request_id_is_used() -> None:
    request = build(request_id="_fixed-id.1")

    assert request.id == "_fixed-id.1"
    assert parse(request.xml).get("ID") == "_fixed-id.1"


@pytest.mark.parametrize("bad", ["", "1abc", "a:b", "has space", "_é"])
def test_request_id_that_is_not_an_xs_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="xs:ID"):
        build(request_id=bad)


def test_root_attributes_follow_core_3_4_1() -> None:
    root = parse(build().xml)

    assert root.tag == f"{{{SAMLP_NS}}}AuthnRequest"
    assert root.get("Version") == "2.0"
    assert root.get("IssueInstant") == "2025-03-14T15:09:26Z"
    assert root.get("Destination") == SSO_URL
    assert root.get("ProtocolBinding") == HTTP_POST
    assert root.get("AssertionConsumerServiceURL") == ACS_URL
    assert root.get("ForceAuthn") is None
    assert root.get("IsPassive") is None
    assert root.get("AssertionConsumerServiceIndex") is None


def test_issue_instant_is_converted_to_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    root = parse(build(now=datetime(2025, 3, 14, 10, 9, 26, tzinfo=eastern)).xml)

    assert root.get("IssueInstant") == "2025-03-14T15:09:26Z"


def test_issuer_is_the_sp_entity_id_without_a_format() -> None:
    root = parse(build().xml)
    issuer = root.find(f"{{{SAML_NS}}}Issuer")

    assert issuer is not None
    assert issuer.text == SP_ENTITY_ID
    assert issuer.get("Format") is None
    assert root[0] is issuer  # Issuer comes first (core §3.2.1)


def test_name_id_policy_has_the_format_and_allows_creation() -> None:
    root = parse(build().xml)
    policy = root.find(f"{{{SAMLP_NS}}}NameIDPolicy")

    assert policy is not None
    assert policy.get("Format") == EMAIL_FORMAT
    assert policy.get("AllowCreate") == "true"
    assert [child.tag for child in root] == [f"{{{SAML_NS}}}Issuer", f"{{{SAMLP_NS}}}NameIDPolicy"]


def test_name_id_policy_without_a_format_leaves_the_choice_to_the_idp() -> None:
    policy = parse(build(name_id_format=None).xml).find(f"{{{SAMLP_NS}}}NameIDPolicy")

    assert policy is not None
    assert policy.get("Format") is None
    assert policy.get("AllowCreate") == "true"


def test_force_authn_is_written_when_asked() -> None:
    assert parse(build(force_authn=True).xml).get("ForceAuthn") == "true"


def test_xml_is_utf8_without_a_declaration_and_escapes_text() -> None:
    request = build(sp_entity_id="urn:example:a&b<c>")

    assert request.xml.startswith(b"<samlp:AuthnRequest ")
    issuer = parse(request.xml).find(f"{{{SAML_NS}}}Issuer")
    assert issuer is not None
    assert issuer.text == "urn:example:a&b<c>"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"now": datetime(2025, 3, 14, 15, 9, 26)}, "timezone-aware"),
        ({"acs_url": "/sso/c1/saml/acs"}, "acs_url"),
        ({"destination": "ftp://idp.example/sso"}, "destination"),
        ({"sp_entity_id": "  "}, "sp_entity_id"),
        ({"sp_entity_id": "urn:" + "x" * 1021}, "sp_entity_id"),
        ({"name_id_format": "emailAddress"}, "name_id_format"),
    ],
)
def test_wrong_arguments_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**overrides)


# --- HTTP-Redirect (bindings §3.4) -----------------------------------------------------------


def raw_query(url: str) -> dict[str, str]:
    """The query's parameters as sent: URL-encoded values, in order."""
    pairs = [part.split("=", 1) for part in urlsplit(url).query.split("&")]
    return {name: value for name, value in pairs}


def inflate(encoded: str) -> bytes:
    return zlib.decompress(base64.b64decode(unquote(encoded), validate=True), wbits=-15)


def signed_octets(url: str) -> bytes:
    """``SAMLRequest=…&RelayState=…&SigAlg=…`` exactly as it appears in the URL (§3.4.4.1)."""
    query = urlsplit(url).query
    start = query.index("SAMLRequest=")
    return query[start : query.index("&Signature=")].encode("ascii")


def test_redirect_round_trip_inflates_to_the_request() -> None:
    request = build()
    url = redirect_url(SSO_URL, request, "relay-123")

    assert url.startswith(SSO_URL + "?SAMLRequest=")
    params = raw_query(url)
    assert list(params) == ["SAMLRequest", "RelayState"]
    assert inflate(params["SAMLRequest"]) == request.xml
    assert parse(inflate(params["SAMLRequest"])).get("ID") == request.id
    assert parse_qs(urlsplit(url).query)["RelayState"] == ["relay-123"]


def test_redirect_without_relay_state_or_key_has_only_saml_request() -> None:
    url = redirect_url(SSO_URL, build(), None)

    assert list(raw_query(url)) == ["SAMLRequest"]


def test_redirect_relay_state_is_url_encoded_and_preserved() -> None:
    relay = "a b&c=d/é+%"
    url = redirect_url(SSO_URL, build(), relay)

    assert raw_query(url)["RelayState"] == "a%20b%26c%3Dd%2F%C3%A9%2B%25"
    assert parse_qs(urlsplit(url).query)["RelayState"] == [relay]


def test_redirect_keeps_the_idps_own_query_parameters_first() -> None:
    sso = "https://idp.example/sso?tenant=acme&x=1"
    url = redirect_url(sso, build(), "r", signing_key_pem=rsa_material()[1])

    assert url.startswith(sso + "&SAMLRequest=")
    public_key = public_key_of(rsa_material()[0])
    assert isinstance(public_key, rsa.RSAPublicKey)
    signature = base64.b64decode(unquote(raw_query(url)["Signature"]))
    public_key.verify(signature, signed_octets(url), padding.PKCS1v15(), hashes.SHA256())


def test_signed_redirect_verifies_over_the_exact_octets_with_rsa_sha256() -> None:
    cert_pem, key_pem = rsa_material()
    request = build()
    url = redirect_url(SSO_URL, request, "relay-123", signing_key_pem=key_pem)

    params = raw_query(url)
    assert list(params) == ["SAMLRequest", "RelayState", "SigAlg", "Signature"]
    assert unquote(params["SigAlg"]) == SIG_ALG_RSA_SHA256
    octets = signed_octets(url)
    expected = f"SAMLRequest={params['SAMLRequest']}&RelayState={params['RelayState']}&SigAlg={params['SigAlg']}"
    assert octets == expected.encode()
    public_key = public_key_of(cert_pem)
    assert isinstance(public_key, rsa.RSAPublicKey)
    signature = base64.b64decode(unquote(params["Signature"]))
    public_key.verify(signature, octets, padding.PKCS1v15(), hashes.SHA256())
    assert inflate(params["SAMLRequest"]) == request.xml


def test_signed_redirect_without_relay_state_signs_saml_request_and_sig_alg() -> None:
    cert_pem, key_pem = rsa_material()
    url = redirect_url(SSO_URL, build(), None, signing_key_pem=key_pem)

    params = raw_query(url)
    assert list(params) == ["SAMLRequest", "SigAlg", "Signature"]
    public_key = public_key_of(cert_pem)
    assert isinstance(public_key, rsa.RSAPublicKey)
    signature = base64.b64decode(unquote(params["Signature"]))
    public_key.verify(signature, signed_octets(url), padding.PKCS1v15(), hashes.SHA256())


def test_tampered_relay_state_breaks_the_redirect_signature() -> None:
    cert_pem, key_pem = rsa_material()
    url = redirect_url(SSO_URL, build(), "relay-123", signing_key_pem=key_pem)
    tampered = url.replace("RelayState=relay-123", "RelayState=relay-124")

    public_key = public_key_of(cert_pem)
    assert isinstance(public_key, rsa.RSAPublicKey)
    signature = base64.b64decode(unquote(raw_query(tampered)["Signature"]))
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, signed_octets(tampered), padding.PKCS1v15(), hashes.SHA256())


def test_ec_key_signs_the_redirect_with_ecdsa_sha256_as_r_concatenated_with_s() -> None:
    cert_pem, key_pem = ec_material()
    url = redirect_url(SSO_URL, build(), "relay", signing_key_pem=key_pem)

    params = raw_query(url)
    assert unquote(params["SigAlg"]) == SIG_ALG_ECDSA_SHA256
    raw = base64.b64decode(unquote(params["Signature"]))
    assert len(raw) == 64  # P-256: 32-byte r then 32-byte s (XML-DSig 1.1 §6.4.3)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public_key = public_key_of(cert_pem)
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(der, signed_octets(url), ec.ECDSA(hashes.SHA256()))


def test_relay_state_over_80_bytes_is_refused() -> None:
    assert redirect_url(SSO_URL, build(), "x" * MAX_RELAY_STATE_BYTES)
    with pytest.raises(ValueError, match="80 bytes"):
        redirect_url(SSO_URL, build(), "é" * 41)  # 82 bytes in UTF-8
    with pytest.raises(ValueError, match="80 bytes"):
        post_form(SSO_URL, build(), "x" * 81)


def test_keys_that_cannot_sign_saml_are_refused() -> None:
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = ed_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(ValueError, match="RSA or EC"):
        redirect_url(SSO_URL, build(), None, signing_key_pem=pem)
    with pytest.raises(ValueError, match="PEM private key"):
        redirect_url(SSO_URL, build(), None, signing_key_pem="not a key")
    with pytest.raises(ValueError, match="PEM private key"):
        redirect_url(SSO_URL, build(), None, signing_key_pem=rsa_material()[0])


@pytest.mark.parametrize("sso", ["/saml/sso", "https://idp.example/sso#frag"])
def test_redirect_to_a_bad_sso_url_is_refused(sso: str) -> None:
    with pytest.raises(ValueError, match="sso_url"):
        redirect_url(sso, build(), None)


# --- HTTP-POST (bindings §3.5) ---------------------------------------------------------------


class PageReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, str | None]] = []
        self.inputs: dict[str, str] = {}
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.in_noscript = False
        self.noscript_buttons = 0
        self._script_attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append(values)
        elif tag == "input" and values.get("name"):
            self.inputs[str(values["name"])] = values.get("value") or ""
        elif tag == "script":
            self._script_attrs = values
        elif tag == "noscript":
            self.in_noscript = True
        elif tag == "button" and self.in_noscript and values.get("type") == "submit":
            self.noscript_buttons += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "noscript":
            self.in_noscript = False

    def handle_data(self, data: str) -> None:
        if self._script_attrs is not None:
            self.scripts.append((self._script_attrs, data))
            self._script_attrs = None


def read_page(page: str) -> PageReader:
    reader = PageReader()
    reader.feed(page)
    reader.close()
    return reader


def test_post_form_carries_the_base64_request_and_relay_state() -> None:
    request = build()
    page = read_page(post_form(SSO_URL, request, 'r"<&>'))

    assert page.forms == [{"id": POST_FORM_ID, "method": "post", "action": SSO_URL}]
    assert set(page.inputs) == {"SAMLRequest", "RelayState"}
    assert base64.b64decode(page.inputs["SAMLRequest"], validate=True) == request.xml
    assert page.inputs["RelayState"] == 'r"<&>'
    assert page.noscript_buttons == 1


def test_post_form_escapes_the_action_and_omits_an_absent_relay_state() -> None:
    sso = 'https://idp.example/sso?a=1&b="2"'
    html = post_form(sso, build(), None)

    assert 'action="https://idp.example/sso?a=1&amp;b=&quot;2&quot;"' in html
    page = read_page(html)
    assert page.forms[0]["action"] == sso
    assert set(page.inputs) == {"SAMLRequest"}


def test_post_form_script_is_constant_and_its_csp_hash_matches() -> None:
    page = read_page(post_form(SSO_URL, build(), "r"))

    assert page.scripts == [({}, POST_FORM_SCRIPT)]
    assert POST_FORM_ID in POST_FORM_SCRIPT
    digest = base64.b64encode(hashlib.sha256(page.scripts[0][1].encode()).digest()).decode()
    expected = f"'sha256-{digest}'"
    assert expected == POST_FORM_SCRIPT_CSP_SOURCE
    assert post_form(SSO_URL, build(), "other").count(POST_FORM_SCRIPT) == 1


def test_post_form_script_nonce() -> None:
    page = read_page(post_form(SSO_URL, build(), None, script_nonce="bm9uY2UtMTIz"))

    assert page.scripts == [({"nonce": "bm9uY2UtMTIz"}, POST_FORM_SCRIPT)]
    with pytest.raises(ValueError, match="nonce"):
        post_form(SSO_URL, build(), None, script_nonce='x" onload="alert(1)')


def signed_request_from(page_html: str) -> etree._Element:
    return parse(base64.b64decode(read_page(page_html).inputs["SAMLRequest"]))


def verify_enveloped(root: etree._Element, cert_pem: str) -> None:
    signature = root.find(f"{{{DS_NS}}}Signature")
    assert signature is not None
    xmlsec.tree.add_ids(root, ["ID"])
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    context.verify(signature)


def test_signed_post_request_has_an_enveloped_signature_after_the_issuer() -> None:
    cert_pem, key_pem = rsa_material()
    request = build()
    root = signed_request_from(post_form(SSO_URL, request, "r", signing_key_pem=key_pem, signing_cert_pem=cert_pem))

    assert [etree.QName(child).localname for child in root] == ["Issuer", "Signature", "NameIDPolicy"]
    signed_info = root.find(f"{{{DS_NS}}}Signature/{{{DS_NS}}}SignedInfo")
    assert signed_info is not None
    algorithms = [element.get("Algorithm") for element in signed_info.iter() if element.get("Algorithm")]
    assert algorithms == [
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        SIG_ALG_RSA_SHA256,
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ]
    references = signed_info.findall(f"{{{DS_NS}}}Reference")
    assert [reference.get("URI") for reference in references] == ["#" + request.id]
    certificate = root.find(f".//{{{DS_NS}}}X509Certificate")
    assert certificate is not None
    assert "".join((certificate.text or "").split()) == "".join(cert_pem.splitlines()[1:-1])
    verify_enveloped(root, cert_pem)


def test_signed_post_request_without_a_certificate_has_no_key_info_and_still_verifies() -> None:
    cert_pem, key_pem = rsa_material()
    root = signed_request_from(post_form(SSO_URL, build(), None, signing_key_pem=key_pem))

    assert root.find(f".//{{{DS_NS}}}KeyInfo") is None
    verify_enveloped(root, cert_pem)


def test_tampering_with_a_signed_post_request_is_detected() -> None:
    cert_pem, key_pem = rsa_material()
    root = signed_request_from(post_form(SSO_URL, build(), None, signing_key_pem=key_pem, signing_cert_pem=cert_pem))
    root.set("AssertionConsumerServiceURL", "https://attacker.example/acs")

    with pytest.raises(xmlsec.Error):
        verify_enveloped(root, cert_pem)


def test_signed_post_request_with_an_ec_key_uses_ecdsa_sha256() -> None:
    cert_pem, key_pem = ec_material()
    root = signed_request_from(post_form(SSO_URL, build(), None, signing_key_pem=key_pem, signing_cert_pem=cert_pem))

    method = root.find(f"{{{DS_NS}}}Signature/{{{DS_NS}}}SignedInfo/{{{DS_NS}}}SignatureMethod")
    assert method is not None
    assert method.get("Algorithm") == SIG_ALG_ECDSA_SHA256
    verify_enveloped(root, cert_pem)


def test_post_signing_refuses_a_certificate_of_another_key_or_without_a_key() -> None:
    _cert, key_pem = rsa_material()
    other_cert, _other_key = make_certificate("someone-else", key_slot=32)

    with pytest.raises(ValueError, match="does not hold the public key"):
        post_form(SSO_URL, build(), None, signing_key_pem=key_pem, signing_cert_pem=other_cert)
    with pytest.raises(ValueError, match="needs signing_key_pem"):
        post_form(SSO_URL, build(), None, signing_cert_pem=other_cert)
