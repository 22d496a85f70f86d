"""Real SAML test material: self-signed X.509 certificates and IdP metadata documents.

Certificates are made with ``cryptography`` (RFC 5280 §4.1 fields; self-signed, so issuer =
subject); metadata follows saml-metadata-2.0-os §2.3 (EntityDescriptor / EntitiesDescriptor) and
§2.4.3 (IDPSSODescriptor), built with lxml so it is always well-formed. Private keys are cached
per (key type, slot) because RSA key generation dominates test time; pass another ``key_slot``
for a distinct key.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

KeyType = Literal["rsa2048", "rsa1024", "ec256"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
BINDINGS = "urn:oasis:names:tc:SAML:2.0:bindings:"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
PERSISTENT_FORMAT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NSMAP = {"md": MD_NS, "ds": DS_NS}


@functools.cache
def private_key(key_type: KeyType = "rsa2048", key_slot: int = 0) -> PrivateKey:
    """A private key of the given type; the same one for the same (type, slot)."""
    del key_slot  # part of the cache key only
    if key_type == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    bits = 1024 if key_type == "rsa1024" else 2048
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def make_certificate(
    common_name: str,
    *,
    days_valid: int = 365,
    not_before_offset_days: int = 0,
    key_type: KeyType = "rsa2048",
    not_before: datetime | None = None,
    organization: str | None = None,
    key_slot: int = 0,
) -> tuple[str, str]:
    """A self-signed certificate and its key, as ``(cert_pem, key_pem)``.

    Validity starts at ``not_before`` (default: now + ``not_before_offset_days``) and lasts
    ``days_valid`` days, so negative offsets larger than ``days_valid`` give an expired one.
    """
    key = private_key(key_type, key_slot)
    start = not_before or datetime.now(UTC).replace(microsecond=0) + timedelta(days=not_before_offset_days)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attributes)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days_valid))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    return cert_pem, key_pem


def pem_body(pem: str) -> str:
    """The base64 body of a PEM block, on one line, as metadata's ``<ds:X509Certificate>`` holds it."""
    lines = [line.strip() for line in pem.strip().splitlines()]
    return "".join(line for line in lines if line and not line.startswith("-----"))


def _md(tag: str) -> str:
    return f"{{{MD_NS}}}{tag}"


def _key_descriptor(parent: etree._Element, cert_pem: str, use: str | None) -> None:
    descriptor = etree.SubElement(parent, _md("KeyDescriptor"))
    if use is not None:
        descriptor.set("use", use)
    key_info = etree.SubElement(descriptor, f"{{{DS_NS}}}KeyInfo")
    x509_data = etree.SubElement(key_info, f"{{{DS_NS}}}X509Data")
    etree.SubElement(x509_data, f"{{{DS_NS}}}X509Certificate").text = pem_body(cert_pem)


def _entity_descriptor(
    entity_id: str,
    sso_url: str,
    cert_pem: str | None,
    *,
    slo_url: str | None = None,
    valid_until: str | None = None,
    sso_bindings: Sequence[str] = ("HTTP-Redirect", "HTTP-POST"),
    cert_use: str | None = "signing",
    encryption_cert_pem: str | None = None,
    name_id_formats: Sequence[str] = (EMAIL_FORMAT,),
    want_authn_requests_signed: bool | None = False,
    protocol_support: str = SAML2_PROTOCOL,
) -> etree._Element:
    entity = etree.Element(_md("EntityDescriptor"), nsmap=NSMAP)
    entity.set("entityID", entity_id)
    if valid_until is not None:
        entity.set("validUntil", valid_until)
    idp = etree.SubElement(entity, _md("IDPSSODescriptor"))
    if want_authn_requests_signed is not None:
        idp.set("WantAuthnRequestsSigned", "true" if want_authn_requests_signed else "false")
    idp.set("protocolSupportEnumeration", protocol_support)
    if cert_pem is not None:
        _key_descriptor(idp, cert_pem, cert_use)
    if encryption_cert_pem is not None:
        _key_descriptor(idp, encryption_cert_pem, "encryption")
    if slo_url is not None:
        for binding in ("HTTP-Redirect", "HTTP-POST"):
            slo = etree.SubElement(idp, _md("SingleLogoutService"))
            slo.set("Binding", BINDINGS + binding)
            slo.set("Location", slo_url)
    for name_id_format in name_id_formats:
        etree.SubElement(idp, _md("NameIDFormat")).text = name_id_format
    for binding in sso_bindings:
        sso = etree.SubElement(idp, _md("SingleSignOnService"))
        sso.set("Binding", binding if ":" in binding else BINDINGS + binding)
        sso.set("Location", sso_url)
    return entity


def make_idp_metadata(
    entity_id: str,
    sso_url: str,
    cert_pem: str | None,
    *,
    slo_url: str | None = None,
    entities: bool = False,
    valid_until: str | None = None,
    sso_bindings: Sequence[str] = ("HTTP-Redirect", "HTTP-POST"),
    cert_use: str | None = "signing",
    encryption_cert_pem: str | None = None,
    name_id_formats: Sequence[str] = (EMAIL_FORMAT,),
    want_authn_requests_signed: bool | None = False,
    protocol_support: str = SAML2_PROTOCOL,
    extra_idps: Sequence[tuple[str, str, str]] = (),
    entities_valid_until: str | None = None,
) -> str:
    """Standard IdP metadata XML (saml-metadata-2.0-os §2.3.2, §2.4.3) as a string.

    ``entities=True`` (or any ``extra_idps``, each ``(entity_id, sso_url, cert_pem)``) wraps the
    entities in an EntitiesDescriptor (§2.3.1). ``valid_until`` is an xs:dateTime string put on
    the EntityDescriptor; ``cert_pem=None`` leaves out the signing KeyDescriptor; ``cert_use=None``
    writes a KeyDescriptor without ``use``; ``want_authn_requests_signed=None`` omits the attribute.
    """
    entity = _entity_descriptor(
        entity_id,
        sso_url,
        cert_pem,
        slo_url=slo_url,
        valid_until=valid_until,
        sso_bindings=sso_bindings,
        cert_use=cert_use,
        encryption_cert_pem=encryption_cert_pem,
        name_id_formats=name_id_formats,
        want_authn_requests_signed=want_authn_requests_signed,
        protocol_support=protocol_support,
    )
    root = entity
    if entities or extra_idps:
        root = etree.Element(_md("EntitiesDescriptor"), nsmap=NSMAP)
        root.set("Name", "urn:keyhall:test:federation")
        if entities_valid_until is not None:
            root.set("validUntil", entities_valid_until)
        root.append(entity)
        for extra_id, extra_sso, extra_cert in extra_idps:
            root.append(_entity_descriptor(extra_id, extra_sso, extra_cert))
    xml: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return xml.decode("utf-8")
