"""Keyhall's own metadata as a SAML service provider, for an organization's IdP to import.

The document is an ``<md:EntityDescriptor>`` (saml-metadata-2.0-os §2.3.2) holding one
``<md:SPSSODescriptor>`` (§2.4.4) for the SAML 2.0 protocol (§2.4.1
``protocolSupportEnumeration``), written in the schema's element order:

1. ``<md:KeyDescriptor use="signing">`` with the certificate whose key signs AuthnRequests, and
   ``<md:KeyDescriptor use="encryption">`` with the one the IdP may encrypt assertions to
   (§2.4.1.1; ``<ds:KeyInfo><ds:X509Data><ds:X509Certificate>``, XML-DSig §4.4.4);
2. ``<md:SingleLogoutService>`` (§2.4.2) at the SLO URL, HTTP-Redirect and HTTP-POST (saml-bindings-2.0-os
   §3.4, §3.5), when one is given;
3. ``<md:NameIDFormat>`` for each accepted NameID format (§2.4.2);
4. one ``<md:AssertionConsumerService>`` (§2.4.4, an IndexedEndpointType §2.2.3) with the
   HTTP-POST binding (saml-bindings-2.0-os §3.5), ``index="0"`` and ``isDefault="true"``.

``AuthnRequestsSigned`` and ``WantAssertionsSigned`` (§2.4.4) are always written, and
``validUntil`` (§2.3.2) tells the IdP when to fetch the metadata again. The document itself is
not signed: the IdP gets it over https from Keyhall or from the organization's owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from lxml import etree

from keyhall.protocols.saml.certificates import isoformat_z, parse_certificate
from keyhall.protocols.saml.metadata import (
    BINDING_HTTP_POST,
    BINDING_HTTP_REDIRECT,
    MAX_ENTITY_ID_CHARS,
    MD_NS,
    SAML2_PROTOCOL,
    is_http_url,
)

__all__ = ["DS_NS", "sp_metadata_xml"]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_NSMAP = {"md": MD_NS, "ds": DS_NS}


def _md(name: str) -> str:
    return f"{{{MD_NS}}}{name}"


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


def _xs_boolean(value: bool) -> str:
    return "true" if value else "false"


def _certificate_body(pem: str, field: str) -> str:
    """The base64 DER of one certificate, on one line (XML-DSig §4.4.4 ``X509Certificate``).

    The certificate is parsed first, so a private key, garbage or a weak key is refused with a
    :class:`~keyhall.errors.CertificateError` naming ``field``.
    """
    info = parse_certificate(pem, field=field)
    return "".join(line for line in info.pem.splitlines() if line and not line.startswith("-----"))


def _key_descriptor(parent: etree._Element, use: str, body: str) -> None:
    descriptor = etree.SubElement(parent, _md("KeyDescriptor"))
    descriptor.set("use", use)
    key_info = etree.SubElement(descriptor, _ds("KeyInfo"))
    x509_data = etree.SubElement(key_info, _ds("X509Data"))
    etree.SubElement(x509_data, _ds("X509Certificate")).text = body


def sp_metadata_xml(
    *,
    entity_id: str,
    acs_url: str,
    name_id_formats: Sequence[str],
    signing_cert_pem: str | None,
    encryption_cert_pem: str | None,
    authn_requests_signed: bool,
    want_assertions_signed: bool = True,
    valid_until: datetime,
    next_cert_pem: str | None = None,
    slo_url: str | None = None,
) -> bytes:
    """The SP's metadata document (saml-metadata-2.0-os §2.3.2, §2.4.4) as UTF-8 XML bytes.

    ``name_id_formats`` are URIs (saml-core-2.0-os §8.3), written once each in the given order.
    ``authn_requests_signed=True`` needs ``signing_cert_pem``: an IdP told to expect signed
    requests must be given the key that checks them. ``valid_until`` must be timezone-aware.
    ``next_cert_pem`` (an SP key rollover) is published beside the current one, for signing and
    encryption, before it becomes active (saml-metadata-2.0-os §2.4.1.1 allows several KeyDescriptors).
    Raises ``ValueError`` for bad arguments and
    :class:`~keyhall.errors.CertificateError` for an unusable certificate.
    """
    if valid_until.tzinfo is None:
        raise ValueError("valid_until must be timezone-aware")
    entity = entity_id.strip()
    if not entity or len(entity) > MAX_ENTITY_ID_CHARS:
        raise ValueError(f"entity_id must have 1 to {MAX_ENTITY_ID_CHARS} characters (saml-metadata-2.0-os §2.3.2)")
    if not is_http_url(acs_url):
        raise ValueError(f"acs_url must be an absolute http(s) URL, got {acs_url[:200]!r}")
    formats = list(dict.fromkeys(name_id_formats))
    for name_id_format in formats:
        if ":" not in name_id_format or any(char.isspace() for char in name_id_format):
            raise ValueError(f"NameID format {name_id_format[:200]!r} is not a URI (saml-core-2.0-os §8.3)")
    if authn_requests_signed and signing_cert_pem is None:
        raise ValueError("authn_requests_signed needs signing_cert_pem, the certificate that verifies the requests")
    signing = None if signing_cert_pem is None else _certificate_body(signing_cert_pem, "signing_cert_pem")
    encryption = None if encryption_cert_pem is None else _certificate_body(encryption_cert_pem, "encryption_cert_pem")

    root = etree.Element(_md("EntityDescriptor"), nsmap=_NSMAP)
    root.set("entityID", entity)
    root.set("validUntil", isoformat_z(valid_until))
    descriptor = etree.SubElement(root, _md("SPSSODescriptor"))
    descriptor.set("AuthnRequestsSigned", _xs_boolean(authn_requests_signed))
    descriptor.set("WantAssertionsSigned", _xs_boolean(want_assertions_signed))
    descriptor.set("protocolSupportEnumeration", SAML2_PROTOCOL)
    if signing is not None:
        _key_descriptor(descriptor, "signing", signing)
    if encryption is not None:
        _key_descriptor(descriptor, "encryption", encryption)
    if next_cert_pem is not None:
        upcoming = _certificate_body(next_cert_pem, "next_cert_pem")
        _key_descriptor(descriptor, "signing", upcoming)
        _key_descriptor(descriptor, "encryption", upcoming)
    if slo_url is not None:
        if not is_http_url(slo_url):
            raise ValueError(f"slo_url must be an absolute http(s) URL, got {slo_url[:200]!r}")
        for binding in (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST):
            slo = etree.SubElement(descriptor, _md("SingleLogoutService"))
            slo.set("Binding", binding)
            slo.set("Location", slo_url)
    for name_id_format in formats:
        etree.SubElement(descriptor, _md("NameIDFormat")).text = name_id_format
    acs = etree.SubElement(descriptor, _md("AssertionConsumerService"))
    acs.set("Binding", BINDING_HTTP_POST)
    acs.set("Location", acs_url)
    acs.set("index", "0")
    acs.set("isDefault", "true")
    xml: bytes = etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return xml
