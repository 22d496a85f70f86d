"""SAML 2.0 Responses as identity providers make them, signed and encrypted with xmlsec.

A response is built with lxml in the shape the big IdPs send (saml-core-2.0-os §3.2.2 Response,
§2.3.3 Assertion; saml-profiles-2.0-os §4.1.4.2): Issuer, Status Success, an Assertion with
Issuer, Subject (emailAddress NameID, bearer SubjectConfirmation with Recipient, InResponseTo and
NotOnOrAfter), Conditions with an AudienceRestriction, an AuthnStatement and an
AttributeStatement (email, firstName, lastName and multi-valued groups). It is then processed in
the IdP's order: the assertion signed, the assertion encrypted for the SP (XML Encryption 1.1,
AES-GCM or AES-CBC content, RSA-OAEP or RSA-1_5 key transport), the response signed — every
signature enveloped, exclusive c14n, one Reference to the signed element's ID, with the signer's
certificate in KeyInfo.

``ResponseSpec`` holds every knob a test needs to make one field wrong; the ``attack_*``
functions then tamper with a finished document the way XML-signature-wrapping attacks do
(Somorovsky et al., "On Breaking SAML", USENIX Security 2012).
"""

from __future__ import annotations

import base64
import copy
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import xmlsec
from lxml import etree

from keyhall.protocols.saml.response import SamlExpectations
from tests.support.saml_material import EMAIL_FORMAT, KeyType, make_certificate

SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XS_NS = "http://www.w3.org/2001/XMLSchema"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {"samlp": SAMLP_NS, "saml": SAML_NS}

SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
ENTITY_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
BASIC_NAME_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

IDP_ENTITY_ID = "https://idp.keyhall.test/saml/metadata"
SP_ENTITY_ID = "https://sso.keyhall.test/sso/con_7f3a/saml/metadata"
ACS_URL = "https://sso.keyhall.test/sso/con_7f3a/saml/acs"
REQUEST_ID = "_kh-req-5c2f0e9b8d7a4c61"
NAME_ID = "alice@example.com"
ATTRIBUTES: Mapping[str, Sequence[str]] = {
    "email": ["alice@example.com"],
    "firstName": ["Alice"],
    "lastName": ["Liddell"],
    "groups": ["engineering", "admins", "everyone"],
}

_C = xmlsec.constants
RSA_SHA1 = _C.TransformRsaSha1.href
RSA_SHA256 = _C.TransformRsaSha256.href
RSA_SHA384 = _C.TransformRsaSha384.href
RSA_SHA512 = _C.TransformRsaSha512.href
ECDSA_SHA256 = _C.TransformEcdsaSha256.href
ECDSA_SHA384 = _C.TransformEcdsaSha384.href
ECDSA_SHA512 = _C.TransformEcdsaSha512.href
SHA1 = _C.TransformSha1.href
SHA256 = _C.TransformSha256.href
SHA384 = _C.TransformSha384.href
SHA512 = _C.TransformSha512.href
_TRANSFORMS = {
    t.href: t
    for t in (
        _C.TransformRsaSha1,
        _C.TransformRsaSha256,
        _C.TransformRsaSha384,
        _C.TransformRsaSha512,
        _C.TransformEcdsaSha1,
        _C.TransformEcdsaSha256,
        _C.TransformEcdsaSha384,
        _C.TransformEcdsaSha512,
        _C.TransformSha1,
        _C.TransformSha256,
        _C.TransformSha384,
        _C.TransformSha512,
    )
}

SignWhat = Literal["response", "assertion", "both", "none"]
Cipher = Literal["aes128-gcm", "aes256-gcm", "aes128-cbc", "aes256-cbc", "aes192-cbc"]
KeyTransport = Literal["rsa-oaep", "rsa-1_5"]
_CIPHERS = {
    "aes128-gcm": (_C.TransformAes128Gcm, 128),
    "aes256-gcm": (_C.TransformAes256Gcm, 256),
    "aes128-cbc": (_C.TransformAes128Cbc, 128),
    "aes256-cbc": (_C.TransformAes256Cbc, 256),
    "aes192-cbc": (_C.TransformAes192Cbc, 192),
}
_KEY_TRANSPORTS = {"rsa-oaep": _C.TransformRsaOaep, "rsa-1_5": _C.TransformRsaPkcs1}


@dataclass(frozen=True)
class Signer:
    """An IdP signing key and its self-signed certificate, both PEM."""

    cert_pem: str
    key_pem: str

    @classmethod
    def make(
        cls, name: str = "idp.keyhall.test", *, key_type: KeyType = "rsa2048", slot: int = 0, **kwargs: Any
    ) -> Signer:
        cert_pem, key_pem = make_certificate(name, key_type=key_type, key_slot=slot, **kwargs)
        return cls(cert_pem, key_pem)


def _z(moment: datetime) -> str:
    """xs:dateTime in UTC with a Z (saml-core-2.0-os §1.3.3), milliseconds as many IdPs send."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_id() -> str:
    return "_" + uuid.uuid4().hex


@dataclass(frozen=True)
class ResponseSpec:
    """Everything a Response says; defaults make one Keyhall must accept at ``now``."""

    now: datetime
    sign: SignWhat = "assertion"
    signature_algorithm: str = RSA_SHA256
    digest_algorithm: str = SHA256
    encrypt: Cipher | None = None
    key_transport: KeyTransport = "rsa-oaep"
    response_id: str = field(default_factory=new_id)
    assertion_id: str = field(default_factory=new_id)
    issuer: str = IDP_ENTITY_ID
    response_issuer: str | None = IDP_ENTITY_ID
    destination: str | None = ACS_URL
    in_response_to: str | None = REQUEST_ID
    status: Sequence[str] = (SUCCESS,)
    status_message: str | None = None
    name_id: str | None = NAME_ID
    name_id_format: str | None = EMAIL_FORMAT
    confirmation_method: str = BEARER
    recipient: str | None = ACS_URL
    audience: str = SP_ENTITY_ID
    issued_offset: timedelta = timedelta(seconds=-2)
    not_before_offset: timedelta = timedelta(minutes=-5)
    lifetime: timedelta = timedelta(minutes=5)
    confirmation_lifetime: timedelta | None = None  # default: ``lifetime``
    session_index: str = "_session-8e2d6a"
    attributes: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(ATTRIBUTES))
    assertions: int = 1


def _sub(parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{tag}")
    for name, value in attrs.items():
        if value is not None:
            element.set(name, value)
    if text is not None:
        element.text = text
    return element


def build_assertion(spec: ResponseSpec, parent: etree._Element, assertion_id: str) -> etree._Element:
    """A ``<saml:Assertion>`` (saml-core-2.0-os §2.3.3) appended to ``parent``."""
    issued = spec.now + spec.issued_offset
    end = _z(spec.now + spec.lifetime)
    confirmation_end = _z(spec.now + (spec.confirmation_lifetime or spec.lifetime))
    assertion = _sub(parent, SAML_NS, "Assertion", ID=assertion_id, Version="2.0", IssueInstant=_z(issued))
    _sub(assertion, SAML_NS, "Issuer", spec.issuer, Format=ENTITY_FORMAT)
    subject = _sub(assertion, SAML_NS, "Subject")
    if spec.name_id is not None:
        _sub(subject, SAML_NS, "NameID", spec.name_id, Format=spec.name_id_format)
    confirmation = _sub(subject, SAML_NS, "SubjectConfirmation", Method=spec.confirmation_method)
    _sub(
        confirmation,
        SAML_NS,
        "SubjectConfirmationData",
        InResponseTo=spec.in_response_to,
        NotOnOrAfter=confirmation_end,
        Recipient=spec.recipient,
    )
    conditions = _sub(
        assertion, SAML_NS, "Conditions", NotBefore=_z(spec.now + spec.not_before_offset), NotOnOrAfter=end
    )
    _sub(_sub(conditions, SAML_NS, "AudienceRestriction"), SAML_NS, "Audience", spec.audience)
    authn = _sub(
        assertion,
        SAML_NS,
        "AuthnStatement",
        AuthnInstant=_z(issued - timedelta(seconds=20)),
        SessionIndex=spec.session_index,
        SessionNotOnOrAfter=_z(spec.now + timedelta(hours=8)),
    )
    _sub(_sub(authn, SAML_NS, "AuthnContext"), SAML_NS, "AuthnContextClassRef", PASSWORD_PROTECTED)
    if spec.attributes:
        statement = _sub(assertion, SAML_NS, "AttributeStatement")
        for name, values in spec.attributes.items():
            attribute = _sub(statement, SAML_NS, "Attribute", Name=name, NameFormat=BASIC_NAME_FORMAT)
            for value in values:
                _sub(attribute, SAML_NS, "AttributeValue", value).set(f"{{{XSI_NS}}}type", "xs:string")
    return assertion


def build_response(spec: ResponseSpec) -> etree._Element:
    """An unsigned ``<samlp:Response>`` (saml-core-2.0-os §3.2.2) with ``spec.assertions`` assertions."""
    nsmap = {**NSMAP, "xs": XS_NS, "xsi": XSI_NS}
    response = etree.Element(f"{{{SAMLP_NS}}}Response", nsmap=nsmap)
    for name, value in (
        ("ID", spec.response_id),
        ("Version", "2.0"),
        ("IssueInstant", _z(spec.now + spec.issued_offset)),
        ("Destination", spec.destination),
        ("InResponseTo", spec.in_response_to),
    ):
        if value is not None:
            response.set(name, value)
    if spec.response_issuer is not None:
        _sub(response, SAML_NS, "Issuer", spec.response_issuer, Format=ENTITY_FORMAT)
    status = _sub(response, SAMLP_NS, "Status")
    code_parent = status
    for value in spec.status:
        code_parent = _sub(code_parent, SAMLP_NS, "StatusCode", Value=value)
    if spec.status_message is not None:
        _sub(status, SAMLP_NS, "StatusMessage", spec.status_message)
    if spec.status[0] == SUCCESS:
        for index in range(spec.assertions):
            build_assertion(spec, response, spec.assertion_id if index == 0 else new_id())
    return response


def sign(
    element: etree._Element,
    signer: Signer,
    *,
    signature_algorithm: str = RSA_SHA256,
    digest_algorithm: str = SHA256,
    exclusive_c14n_transform: bool = True,
    inclusive_prefixes: Sequence[str] = (),
) -> etree._Element:
    """Sign ``element`` in place with an enveloped signature placed right after its Issuer
    (saml-core-2.0-os §5.4; the schema puts ds:Signature there); returns the Signature.

    ``exclusive_c14n_transform=False`` lists the enveloped-signature transform alone;
    ``inclusive_prefixes`` adds an InclusiveNamespaces PrefixList (xml-exc-c14n §3), as Okta does.
    """
    signature = xmlsec.template.create(element, _C.TransformExclC14N, _TRANSFORMS[signature_algorithm], ns="ds")
    issuer = element.find(f"{{{SAML_NS}}}Issuer")
    element.insert(element.index(issuer) + 1 if issuer is not None else 0, signature)
    reference = xmlsec.template.add_reference(signature, _TRANSFORMS[digest_algorithm], uri="#" + element.get("ID", ""))
    xmlsec.template.add_transform(reference, _C.TransformEnveloped)
    if exclusive_c14n_transform:
        c14n = xmlsec.template.add_transform(reference, _C.TransformExclC14N)
        if inclusive_prefixes:
            xmlsec.template.transform_add_c14n_inclusive_namespaces(c14n, inclusive_prefixes)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    key = xmlsec.Key.from_memory(signer.key_pem, _C.KeyDataFormatPem, None)
    key.load_cert_from_memory(signer.cert_pem, _C.KeyDataFormatCertPem)
    context = xmlsec.SignatureContext()
    context.register_id(element, "ID")
    context.key = key
    context.sign(signature)
    return signature


def encrypt(
    assertion: etree._Element,
    sp_cert_pem: str,
    *,
    cipher: Cipher = "aes256-gcm",
    key_transport: KeyTransport = "rsa-oaep",
) -> etree._Element:
    """Replace ``assertion`` by ``<saml:EncryptedAssertion>`` (saml-core-2.0-os §2.3.4) holding an
    EncryptedData with the content key wrapped for the SP's certificate in its KeyInfo."""
    parent = assertion.getparent()
    assert parent is not None
    wrapper = etree.Element(f"{{{SAML_NS}}}EncryptedAssertion")
    parent.replace(assertion, wrapper)
    wrapper.append(assertion)
    method, bits = _CIPHERS[cipher]
    data = xmlsec.template.encrypted_data_create(wrapper, method, type=_C.TypeEncElement, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, _KEY_TRANSPORTS[key_transport])
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_cert_pem, _C.KeyDataFormatCertPem, None))
    context = xmlsec.EncryptionContext(manager)
    context.key = xmlsec.Key.generate(_C.KeyDataAes, bits, _C.KeyDataTypeSession)
    context.encrypt_xml(data, assertion)
    return wrapper


def make_response_tree(spec: ResponseSpec, signer: Signer, *, sp_cert_pem: str | None = None) -> etree._Element:
    """Build, sign and encrypt as ``spec`` says, in the IdP's order."""
    response = build_response(spec)
    sign_as_spec_says = functools.partial(
        sign, signer=signer, signature_algorithm=spec.signature_algorithm, digest_algorithm=spec.digest_algorithm
    )
    assertions = response.findall(f"{{{SAML_NS}}}Assertion")
    if spec.sign in ("assertion", "both"):
        for assertion in assertions:
            sign_as_spec_says(assertion)
    if spec.encrypt is not None:
        assert sp_cert_pem is not None, "encrypting needs the SP certificate"
        for assertion in assertions:
            encrypt(assertion, sp_cert_pem, cipher=spec.encrypt, key_transport=spec.key_transport)
    if spec.sign in ("response", "both"):
        sign_as_spec_says(response)
    # Nodes made by xmlsec's templates have names outside the document's dictionary, which
    # lxml's ``iter(tag)`` and ``find`` do not match; a round trip gives a tree like any parsed one.
    return etree.fromstring(to_xml(response))


def to_xml(tree: etree._Element) -> bytes:
    xml: bytes = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    return xml


def make_response(spec: ResponseSpec, signer: Signer, *, sp_cert_pem: str | None = None) -> bytes:
    """The finished Response document, as the bytes an IdP would base64-encode."""
    return to_xml(make_response_tree(spec, signer, sp_cert_pem=sp_cert_pem))


def encode(xml: bytes) -> str:
    """The HTTP-POST binding's SAMLResponse form value (saml-bindings-2.0-os §3.5.4)."""
    return base64.b64encode(xml).decode("ascii")


def expectations(now: datetime, signer: Signer, **overrides: Any) -> SamlExpectations:
    """What Keyhall expects of responses made here with the defaults of ``ResponseSpec``."""
    values: dict[str, Any] = {
        "acs_url": ACS_URL,
        "sp_entity_id": SP_ENTITY_ID,
        "idp_entity_id": IDP_ENTITY_ID,
        "certificates": [signer.cert_pem],
        "request_id": REQUEST_ID,
        "now": now,
    }
    values.update(overrides)
    return SamlExpectations(**values)


# --- attacks on finished documents -------------------------------------------------------------


def _parse(xml: bytes) -> etree._Element:
    return etree.fromstring(xml, etree.XMLParser(remove_blank_text=False, resolve_entities=False))


def _saml(tag: str) -> str:
    return f"{{{SAML_NS}}}{tag}"


def _evil_copy(assertion: etree._Element, name_id: str, *, keep_signature: bool) -> etree._Element:
    evil = copy.deepcopy(assertion)
    evil.set("ID", new_id())
    name = evil.find(f"{_saml('Subject')}/{_saml('NameID')}")
    assert name is not None
    name.text = name_id
    if not keep_signature:
        for signature in evil.findall(f"{{{DS_NS}}}Signature"):
            evil.remove(signature)
    return evil


def attack_assertion_in_extensions(xml: bytes, name_id: str = "admin@example.com") -> bytes:
    """XSW7: the signed assertion hidden in ``samlp:Extensions``, an unsigned evil one where it stood."""
    response = _parse(xml)
    original = response.find(_saml("Assertion"))
    assert original is not None
    evil = _evil_copy(original, name_id, keep_signature=False)
    response.replace(original, evil)
    extensions = etree.Element(f"{{{SAMLP_NS}}}Extensions")
    extensions.append(original)
    status = response.find(f"{{{SAMLP_NS}}}Status")
    assert status is not None
    status.addprevious(extensions)
    return to_xml(response)


def attack_cloned_assertion(xml: bytes, name_id: str = "admin@example.com") -> bytes:
    """The signed assertion cloned, same ID and signature, NameID changed, placed first."""
    response = _parse(xml)
    original = response.find(_saml("Assertion"))
    assert original is not None
    clone = copy.deepcopy(original)
    name = clone.find(f"{_saml('Subject')}/{_saml('NameID')}")
    assert name is not None
    name.text = name_id
    original.addprevious(clone)
    return to_xml(response)


def attack_nested_assertion(xml: bytes, name_id: str = "admin@example.com") -> bytes:
    """An evil assertion carrying the original's signature, with the signed original nested in its Advice."""
    response = _parse(xml)
    original = response.find(_saml("Assertion"))
    assert original is not None
    evil = _evil_copy(original, name_id, keep_signature=True)
    response.replace(original, evil)
    advice = etree.Element(_saml("Advice"))
    advice.append(original)
    conditions = evil.find(_saml("Conditions"))
    assert conditions is not None
    conditions.addnext(advice)
    return to_xml(response)


def attack_assertion_in_signature_object(xml: bytes, name_id: str = "admin@example.com") -> bytes:
    """XSW8: the signed original inside a ``ds:Object`` of the evil assertion's copied signature."""
    response = _parse(xml)
    original = response.find(_saml("Assertion"))
    assert original is not None
    evil = _evil_copy(original, name_id, keep_signature=True)
    response.replace(original, evil)
    signature = evil.find(f"{{{DS_NS}}}Signature")
    assert signature is not None
    etree.SubElement(signature, f"{{{DS_NS}}}Object").append(original)
    return to_xml(response)


def attack_wrapped_response(xml: bytes, name_id: str = "admin@example.com") -> bytes:
    """XSW1/2 on a signed Response: an evil Response keeps the signature and hides the signed
    original inside it, as a sibling of the evil assertion."""
    original = _parse(xml)
    evil = copy.deepcopy(original)
    evil.set("ID", new_id())
    assertion = evil.find(_saml("Assertion"))
    assert assertion is not None
    name = assertion.find(f"{_saml('Subject')}/{_saml('NameID')}")
    assert name is not None
    name.text = name_id
    signature = evil.find(f"{{{DS_NS}}}Signature")
    assert signature is not None
    signature.addnext(original)
    return to_xml(evil)


def inject_comment(xml: bytes, text: str, at: int) -> bytes:
    """Split the text ``text`` after ``at`` characters with an empty comment (CVE-2017-11427/-11428)."""
    assert xml.count(text.encode()) >= 1
    return xml.replace(text.encode(), (text[:at] + "<!---->" + text[at:]).encode())
