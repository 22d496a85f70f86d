"""Keyhall's SP key pair (keyhall.security.sp_keys) and SP metadata (saml-metadata-2.0-os §2.4.4),
read back with Keyhall's own hardened parser."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from keyhall.errors import CertificateError, SamlMetadataError
from keyhall.protocols.saml.certificates import parse_certificate
from keyhall.protocols.saml.metadata import parse_idp_metadata
from keyhall.protocols.saml.sp_metadata import sp_metadata_xml
from keyhall.protocols.saml.xml import parse_untrusted_xml
from keyhall.security.sp_keys import CLOCK_SKEW, generate_sp_keypair
from tests.support.saml_material import make_certificate

NOW = datetime(2025, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)
MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
ENTITY_ID = "https://keyhall.example/sso/c1/saml/metadata"
ACS_URL = "https://keyhall.example/sso/c1/saml/acs"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
PERSISTENT_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
HTTP_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


@cache
def sp_keypair() -> tuple[str, str]:
    return generate_sp_keypair("keyhall-sp-c1", now=NOW)


def md(name: str) -> str:
    return f"{{{MD_NS}}}{name}"


def metadata(**overrides: object) -> bytes:
    cert_pem, _key_pem = sp_keypair()
    arguments: dict[str, object] = {
        "entity_id": ENTITY_ID,
        "acs_url": ACS_URL,
        "name_id_formats": [EMAIL_FORMAT],
        "signing_cert_pem": cert_pem,
        "encryption_cert_pem": cert_pem,
        "authn_requests_signed": True,
        "valid_until": NOW + timedelta(days=7),
    }
    arguments.update(overrides)
    return sp_metadata_xml(**arguments)  # type: ignore[arg-type]


def parse(document: bytes) -> etree._Element:
    return parse_untrusted_xml(document, field="sp_metadata")


def descriptor_of(root: etree._Element) -> etree._Element:
    descriptor = root.find(md("SPSSODescriptor"))
    assert descriptor is not None
    return descriptor


# --- the key pair ----------------------------------------------------------------------------


def test_keypair_is_a_self_signed_rsa_2048_sha256_certificate_and_its_key() -> None:
    cert_pem, key_pem = sp_keypair()
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)

    assert key_pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS #8, unencrypted
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert certificate.public_key() == key.public_key()
    assert certificate.subject == certificate.issuer
    assert certificate.subject.rfc4514_string() == "CN=keyhall-sp-c1"
    assert isinstance(certificate.signature_hash_algorithm, hashes.SHA256)
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(certificate.signature, certificate.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    assert parse_certificate(cert_pem, field="sp").key_type == "RSA-2048"


def test_keypair_validity_starts_just_before_now_and_lasts_the_given_years() -> None:
    certificate = x509.load_pem_x509_certificate(sp_keypair()[0].encode())

    assert certificate.not_valid_before_utc == NOW.replace(microsecond=0) - CLOCK_SKEW
    assert certificate.not_valid_after_utc == datetime(2035, 3, 14, 15, 9, 26, tzinfo=UTC)
    short = x509.load_pem_x509_certificate(generate_sp_keypair("x", now=NOW, years=1)[0].encode())
    assert short.not_valid_after_utc == datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def test_keypair_from_29_february_ends_on_28_february() -> None:
    leap = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    certificate = x509.load_pem_x509_certificate(generate_sp_keypair("x", now=leap, years=1)[0].encode())

    assert certificate.not_valid_after_utc == datetime(2025, 2, 28, 12, 0, tzinfo=UTC)


def test_keypair_extensions_allow_signing_and_key_encipherment_only() -> None:
    certificate = x509.load_pem_x509_certificate(sp_keypair()[0].encode())

    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert not constraints.value.ca
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_keypair_common_name_is_cut_to_64_characters() -> None:
    certificate = x509.load_pem_x509_certificate(generate_sp_keypair("n" * 100, now=NOW)[0].encode())

    assert certificate.subject.rfc4514_string() == "CN=" + "n" * 64


@pytest.mark.parametrize(
    ("common_name", "now", "years", "message"),
    [
        ("x", datetime(2025, 1, 1), 10, "timezone-aware"),
        ("x", NOW, 0, "years"),
        ("  ", NOW, 10, "common_name"),
    ],
)
def test_keypair_refuses_wrong_arguments(common_name: str, now: datetime, years: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_sp_keypair(common_name, now=now, years=years)


# --- the metadata ----------------------------------------------------------------------------


def test_metadata_parses_with_our_hardened_parser_and_names_the_entity() -> None:
    document = metadata()

    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = parse(document)
    assert root.tag == md("EntityDescriptor")
    assert root.get("entityID") == ENTITY_ID
    assert root.get("validUntil") == "2025-03-21T15:09:26Z"


def test_sp_sso_descriptor_attributes() -> None:
    descriptor = descriptor_of(parse(metadata()))

    assert descriptor.get("protocolSupportEnumeration") == "urn:oasis:names:tc:SAML:2.0:protocol"
    assert descriptor.get("AuthnRequestsSigned") == "true"
    assert descriptor.get("WantAssertionsSigned") == "true"
    unsigned = descriptor_of(parse(metadata(authn_requests_signed=False, want_assertions_signed=False)))
    assert unsigned.get("AuthnRequestsSigned") == "false"
    assert unsigned.get("WantAssertionsSigned") == "false"


def test_assertion_consumer_service_is_http_post_index_0_and_default() -> None:
    descriptor = descriptor_of(parse(metadata()))
    services = descriptor.findall(md("AssertionConsumerService"))

    assert len(services) == 1
    found = {str(name): str(value) for name, value in services[0].attrib.items()}
    assert found == {"Binding": HTTP_POST, "Location": ACS_URL, "index": "0", "isDefault": "true"}


def test_key_descriptors_carry_the_certificates_by_use() -> None:
    signing_pem = sp_keypair()[0]
    encryption_pem, _key = make_certificate("keyhall-sp-encryption", key_slot=33)
    descriptor = descriptor_of(parse(metadata(encryption_cert_pem=encryption_pem)))

    found: dict[str, bytes] = {}
    for key_descriptor in descriptor.findall(md("KeyDescriptor")):
        body = key_descriptor.findtext(f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate")
        assert body is not None
        assert "\n" not in body
        found[str(key_descriptor.get("use"))] = base64.b64decode(body, validate=True)
    for use, pem in (("signing", signing_pem), ("encryption", encryption_pem)):
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
        assert found[use] == der
    assert set(found) == {"signing", "encryption"}


def test_children_follow_the_schema_order() -> None:
    descriptor = descriptor_of(parse(metadata(name_id_formats=[PERSISTENT_FORMAT, EMAIL_FORMAT, PERSISTENT_FORMAT])))

    assert [etree.QName(child).localname for child in descriptor] == [
        "KeyDescriptor",
        "KeyDescriptor",
        "NameIDFormat",
        "NameIDFormat",
        "AssertionConsumerService",
    ]
    assert [element.text for element in descriptor.findall(md("NameIDFormat"))] == [PERSISTENT_FORMAT, EMAIL_FORMAT]


def test_metadata_without_certificates_or_formats() -> None:
    descriptor = descriptor_of(
        parse(
            metadata(signing_cert_pem=None, encryption_cert_pem=None, authn_requests_signed=False, name_id_formats=[])
        )
    )

    assert [etree.QName(child).localname for child in descriptor] == ["AssertionConsumerService"]


def test_signed_requests_need_a_signing_certificate() -> None:
    with pytest.raises(ValueError, match="signing_cert_pem"):
        metadata(signing_cert_pem=None)


def test_valid_until_is_written_in_utc() -> None:
    later = datetime(2025, 3, 21, 19, 9, 26, tzinfo=timezone(timedelta(hours=2)))

    assert parse(metadata(valid_until=later)).get("validUntil") == "2025-03-21T17:09:26Z"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"valid_until": datetime(2025, 3, 21)}, "timezone-aware"),
        ({"entity_id": ""}, "entity_id"),
        ({"entity_id": "urn:" + "x" * 1021}, "entity_id"),
        ({"acs_url": "/sso/c1/saml/acs"}, "acs_url"),
        ({"name_id_formats": ["None"]}, "not a URI"),
        ({"name_id_formats": ["urn:a b"]}, "not a URI"),
    ],
)
def test_wrong_arguments_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metadata(**overrides)


def test_unusable_certificates_are_refused_naming_the_argument() -> None:
    _cert, key_pem = sp_keypair()
    with pytest.raises(CertificateError) as private_key:
        metadata(signing_cert_pem=key_pem)
    assert private_key.value.field == "signing_cert_pem"
    weak_pem, _weak_key = make_certificate("weak", key_type="rsa1024")
    with pytest.raises(CertificateError) as weak:
        metadata(encryption_cert_pem=weak_pem)
    assert weak.value.field == "encryption_cert_pem"


def test_our_idp_metadata_reader_recognizes_it_as_sp_metadata() -> None:
    with pytest.raises(SamlMetadataError, match="service-provider metadata"):
        parse_idp_metadata(metadata(), now=NOW)
