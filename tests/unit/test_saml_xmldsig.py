"""Enveloped XML signatures on SAML elements (keyhall.protocols.saml.xmldsig): XML-DSig 1.1 core
validation as profiled by saml-core-2.0-os §5.4, with pinned keys only."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from lxml import etree

from keyhall.errors import CertificateError, SamlResponseError
from keyhall.protocols.saml.xmldsig import (
    enveloped_signature,
    inspect_signature,
    pinned_keys,
    require_unique_ids,
    verify_enveloped_signature,
)
from tests.support import saml_responses as idp
from tests.support.saml_responses import Signer

DS = "{http://www.w3.org/2000/09/xmldsig#}"
NS = "urn:example:signed"
COMMENT_NAME = "user@evil.com.example.com"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.make("idp.keyhall.test")


@pytest.fixture(scope="module")
def other() -> Signer:
    return Signer.make("idp.keyhall.test", slot=7)


def signed_document(signer: Signer, *, name: str = "alice@example.com", **options: Any) -> bytes:
    """``<x:Root ID><saml:Issuer/><ds:Signature/><x:Name/></x:Root>``, signed like a SAML element."""
    root = etree.Element(f"{{{NS}}}Root", nsmap={"x": NS, "saml": idp.SAML_NS}, ID="_root-1")
    etree.SubElement(root, f"{{{idp.SAML_NS}}}Issuer").text = "https://idp.keyhall.test"
    etree.SubElement(root, f"{{{NS}}}Name").text = name
    idp.sign(root, signer, **options)
    return idp.to_xml(root)


def parse(xml: bytes) -> tuple[etree._Element, etree._Element]:
    root = etree.fromstring(xml)
    signature = root.find(f"{DS}Signature")
    assert signature is not None
    return root, signature


def reason_of(xml: bytes, signer: Signer, **kwargs: bool) -> str:
    root, signature = parse(xml)
    with pytest.raises(SamlResponseError) as caught:
        verify_enveloped_signature(root, signature, certificates=[signer.cert_pem], **kwargs)
    return caught.value.reason


def edit(xml: bytes, before: str, after: str) -> bytes:
    assert before.encode() in xml, before
    return xml.replace(before.encode(), after.encode(), 1)


# --- finding the signature and the IDs ----------------------------------------------------------------


def test_enveloped_signature_is_the_direct_child_only(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))

    assert enveloped_signature(root) is signature
    assert enveloped_signature(root[0]) is None  # the Issuer


def test_two_enveloped_signatures_are_wrapping(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))
    root.append(copy.deepcopy(signature))

    with pytest.raises(SamlResponseError) as caught:
        enveloped_signature(root)

    assert caught.value.reason == "signature_wrapping"


@pytest.mark.parametrize(
    "xml",
    [
        b'<a ID="x"><b ID="x"/></a>',
        b'<a ID="x"><b Id="x"/></a>',
        b'<a ID="x"><b xml:id="x"/></a>',
        b'<a ID="x" xmlns:p="urn:p"><b p:ID="x"/></a>',
        b'<a AssertionID="x"><b ID="x"/></a>',
    ],
)
def test_any_id_like_attribute_sharing_a_value_is_wrapping(xml: bytes) -> None:
    with pytest.raises(SamlResponseError) as caught:
        require_unique_ids(etree.fromstring(xml))

    assert caught.value.reason == "signature_wrapping"


def test_distinct_ids_pass() -> None:
    require_unique_ids(etree.fromstring(b'<a ID="x"><b ID="y"/><c InResponseTo="x"/></a>'))


# --- the profile: structure and algorithms ---------------------------------------------------------


def test_inspect_reports_the_algorithms(signer: Signer) -> None:
    root, signature = parse(signed_document(signer, digest_algorithm=idp.SHA384))

    shape = inspect_signature(root, signature, allow_sha1=False)

    assert shape.signature_method == idp.RSA_SHA256
    assert shape.digest_method == idp.SHA384
    assert shape.transforms == (
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    )


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        ('URI="#_root-1"', 'URI="#_other"', "signature_wrapping"),
        ('URI="#_root-1"', 'URI=""', "signature_wrapping"),
        ('URI="#_root-1"', "URI=\"#xpointer(id('_root-1'))\"", "signature_wrapping"),
        ("</ds:SignedInfo>", '<ds:Reference URI="#_root-1"/></ds:SignedInfo>', "signature_wrapping"),
        ("</ds:Signature>", "<ds:Object/></ds:Signature>", "signature_wrapping"),
        (
            '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>',
            "",
            "signature_wrapping",
        ),
        (
            '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
            '<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>1</ds:XPath>'
            "</ds:Transform>",
            "signature_wrapping",
        ),
        (
            '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
            '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
            '<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/>',
            "signature_wrapping",
        ),
        (
            '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
            '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#WithComments"/>',
            "algorithm_not_allowed",
        ),
        (idp.RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#hmac-sha1", "algorithm_not_allowed"),
        (idp.RSA_SHA256, "http://www.w3.org/2001/04/xmldsig-more#rsa-md5", "algorithm_not_allowed"),
        (idp.RSA_SHA256, idp.RSA_SHA1, "sha1_refused"),
        (idp.RSA_SHA256, "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1", "sha1_refused"),
        (idp.SHA256, idp.SHA1, "sha1_refused"),
        (idp.SHA256, "http://www.w3.org/2001/04/xmldsig-more#sha224", "algorithm_not_allowed"),
        (
            f'<ds:SignatureMethod Algorithm="{idp.RSA_SHA256}"/>',
            f'<ds:SignatureMethod Algorithm="{idp.RSA_SHA256}"><ds:HMACOutputLength>8</ds:HMACOutputLength>'
            "</ds:SignatureMethod>",
            "algorithm_not_allowed",
        ),
    ],
)
def test_profile_violations_are_refused_before_any_cryptography(
    signer: Signer, before: str, after: str, reason: str
) -> None:
    xml = edit(signed_document(signer), before, after)
    root, signature = parse(xml)

    with pytest.raises(SamlResponseError) as caught:
        inspect_signature(root, signature, allow_sha1=False)

    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("options", "transforms"),
    [
        ({"exclusive_c14n_transform": False}, 1),
        ({"inclusive_prefixes": ["xs", "saml"]}, 2),
    ],
)
def test_enveloped_alone_and_inclusive_prefixes_are_accepted(
    signer: Signer, options: dict[str, Any], transforms: int
) -> None:
    root, signature = parse(signed_document(signer, **options))

    verified = verify_enveloped_signature(root, signature, certificates=[signer.cert_pem])

    assert len(verified.shape.transforms) == transforms


def test_sha1_passes_the_profile_only_when_allowed(signer: Signer) -> None:
    root, signature = parse(signed_document(signer, signature_algorithm=idp.RSA_SHA1, digest_algorithm=idp.SHA1))

    assert inspect_signature(root, signature, allow_sha1=True).digest_method == idp.SHA1
    assert verify_enveloped_signature(root, signature, certificates=[signer.cert_pem], allow_sha1=True)
    with pytest.raises(SamlResponseError):
        inspect_signature(root, signature, allow_sha1=False)


def test_signed_element_without_a_valid_id_is_malformed(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))
    root.set("ID", "1 not an NCName")

    with pytest.raises(SamlResponseError) as caught:
        inspect_signature(root, signature, allow_sha1=False)

    assert caught.value.reason == "malformed"


# --- verification with pinned keys -------------------------------------------------------------------


def test_verified_signature_names_the_element_and_the_certificate(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))

    verified = verify_enveloped_signature(root, signature, certificates=[signer.cert_pem])

    assert verified.element is root
    assert verified.certificate.pem.strip() == signer.cert_pem.strip()


def test_any_pinned_certificate_may_verify(signer: Signer, other: Signer) -> None:
    root, signature = parse(signed_document(signer))

    verified = verify_enveloped_signature(root, signature, certificates=[other.cert_pem, signer.cert_pem])

    assert verified.certificate.pem.strip() == signer.cert_pem.strip()


def test_ecdsa_verifies() -> None:
    ec = Signer.make("ec.keyhall.test", key_type="ec256")
    root, signature = parse(signed_document(ec, signature_algorithm=idp.ECDSA_SHA384))

    assert verify_enveloped_signature(root, signature, certificates=[ec.cert_pem]).shape.signature_method == (
        idp.ECDSA_SHA384
    )


def test_key_info_never_makes_a_key_trusted(signer: Signer, other: Signer) -> None:
    # Signed by ``other``, whose certificate is in KeyInfo: the diagnosis says so, nothing trusts it.
    assert reason_of(signed_document(other), signer) == "untrusted_certificate"


def test_changed_content_is_a_bad_signature_even_with_the_pinned_certificate_in_key_info(signer: Signer) -> None:
    assert reason_of(edit(signed_document(signer), "alice@", "mallory@"), signer) == "bad_signature"


def test_foreign_certificate_that_does_not_verify_either_is_a_bad_signature(signer: Signer, other: Signer) -> None:
    xml = edit(signed_document(signer), "alice@", "mallory@")
    root, signature = parse(xml)
    certificate = signature.find(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    assert certificate is not None
    certificate.text = "".join(other.cert_pem.strip().splitlines()[1:-1])

    assert reason_of(idp.to_xml(root), signer) == "bad_signature"


def test_wrong_key_type_for_the_algorithm_is_a_bad_signature(signer: Signer) -> None:
    xml = edit(signed_document(signer), idp.RSA_SHA256, idp.ECDSA_SHA256)

    assert reason_of(xml, signer) == "bad_signature"


def test_another_element_with_the_signed_id_is_wrapping(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))
    etree.SubElement(root, f"{{{NS}}}Decoy", Id="_root-1")

    with pytest.raises(SamlResponseError) as caught:
        verify_enveloped_signature(root, signature, certificates=[signer.cert_pem])

    assert caught.value.reason == "signature_wrapping"


def test_signature_must_be_a_child_and_certificates_are_required(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))

    with pytest.raises(ValueError, match="direct child"):
        verify_enveloped_signature(root[0], signature, certificates=[signer.cert_pem])
    with pytest.raises(ValueError, match="certificate"):
        verify_enveloped_signature(root, signature, certificates=[])


def test_pinned_certificates_are_parsed_once_and_must_be_usable(signer: Signer) -> None:
    assert pinned_keys((signer.cert_pem,)) is pinned_keys((signer.cert_pem,))
    with pytest.raises(CertificateError):
        pinned_keys(("not a certificate",))
    weak = Signer.make("weak", key_type="rsa1024")
    with pytest.raises(CertificateError):
        pinned_keys((weak.cert_pem,))


def test_a_pinned_key_xmlsec_cannot_use_is_a_certificate_error() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed25519.keyhall.test")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start.replace(year=2046))
        .sign(key, None)
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()

    with pytest.raises(CertificateError) as caught:  # parse_certificate accepts Ed25519; xmlsec 1.3.9 cannot
        pinned_keys((pem,))

    assert caught.value.details["reason"] == "unsupported_key"


def test_verifying_twice_on_the_same_tree_works(signer: Signer) -> None:
    root, signature = parse(signed_document(signer))

    verify_enveloped_signature(root, signature, certificates=[signer.cert_pem])
    verify_enveloped_signature(root, signature, certificates=[signer.cert_pem])


# --- comments ---------------------------------------------------------------------------------------------


def test_comment_inside_signed_text_does_not_change_the_signature(signer: Signer) -> None:
    # Exclusive c14n without comments (XML-DSig §4.3.3.2) drops the comment, so the signature over
    # the full text still verifies; whoever reads the text must read all of it.
    injected = idp.inject_comment(signed_document(signer, name=COMMENT_NAME), COMMENT_NAME, len("user@evil.com"))
    root, signature = parse(injected)

    verified = verify_enveloped_signature(root, signature, certificates=[signer.cert_pem])

    name = verified.element.find(f"{{{NS}}}Name")
    assert name is not None
    assert name.text == "user@evil.com"
    assert "".join(str(text) for text in name.itertext()) == COMMENT_NAME


def test_comment_injection_that_changes_the_text_fails(signer: Signer) -> None:
    injected = idp.inject_comment(signed_document(signer, name=COMMENT_NAME), COMMENT_NAME, len("user@evil.com"))

    assert reason_of(edit(injected, "<!---->.example.com", "<!---->"), signer) == "bad_signature"


def test_fixture_time_is_irrelevant_to_signatures(signer: Signer) -> None:
    # Certificates' validity is not judged here (pinning trusts the key); only the signature.
    past = Signer.make("expired.keyhall.test", slot=9, not_before=datetime(2020, 1, 1, tzinfo=UTC), days_valid=30)
    root, signature = parse(signed_document(past))

    assert verify_enveloped_signature(root, signature, certificates=[past.cert_pem]).element is root
