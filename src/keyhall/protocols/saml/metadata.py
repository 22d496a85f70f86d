"""An identity provider's SAML 2.0 metadata, read for a service provider.

Implements the reading side of saml-metadata-2.0-os: the document is an ``<EntityDescriptor>``
(§2.3.2) or an ``<EntitiesDescriptor>`` aggregate (§2.3.1) from which one entity is picked; the
entity's ``<IDPSSODescriptor>`` (§2.4.3) must support the SAML 2.0 protocol (§2.4.1
``protocolSupportEnumeration``), offer single sign-on over a front-channel binding
(saml-bindings-2.0-os §3.4 HTTP-Redirect, §3.5 HTTP-POST) and carry a signing certificate in a
``<KeyDescriptor>`` (§2.4.1.1). Metadata past its ``validUntil`` (§2.3.1, §2.3.2, §2.4.1) is
refused. The metadata's own XML signature is not checked here: trust comes from how it was
obtained (an https URL or an owner's paste).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from lxml import etree

from keyhall.errors import CertificateError, SamlMetadataError
from keyhall.protocols.saml.certificates import CertificateInfo, isoformat_z, parse_certificate
from keyhall.protocols.saml.times import parse_xs_datetime
from keyhall.protocols.saml.xml import DEFAULT_MAX_BYTES, parse_untrusted_xml

__all__ = [
    "BINDING_HTTP_POST",
    "BINDING_HTTP_REDIRECT",
    "MD_NS",
    "SAML2_PROTOCOL",
    "IdpMetadata",
    "is_http_url",
    "parse_idp_metadata",
    "parse_xs_datetime",
    "slo_url_for",
    "sso_url_for",
]

MD_NS = "urn:oasis:names:tc:SAML:2.0:metadata"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
BINDINGS_PREFIX = "urn:oasis:names:tc:SAML:2.0:bindings:"
BINDING_HTTP_REDIRECT = BINDINGS_PREFIX + "HTTP-Redirect"
BINDING_HTTP_POST = BINDINGS_PREFIX + "HTTP-POST"
FRONT_CHANNEL_BINDINGS = (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST)
MAX_ENTITY_ID_CHARS = 1024  # saml-metadata-2.0-os §2.3.2: entityID at most 1024 characters

_ENTITIES = f"{{{MD_NS}}}EntitiesDescriptor"
_ENTITY = f"{{{MD_NS}}}EntityDescriptor"
_IDP = f"{{{MD_NS}}}IDPSSODescriptor"
_SP = f"{{{MD_NS}}}SPSSODescriptor"
_KEY_DESCRIPTOR = f"{{{MD_NS}}}KeyDescriptor"
_SSO = f"{{{MD_NS}}}SingleSignOnService"
_SLO = f"{{{MD_NS}}}SingleLogoutService"
_NAME_ID_FORMAT = f"{{{MD_NS}}}NameIDFormat"
_X509_CERTIFICATE = f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate"

_XS_TRUE = frozenset({"true", "1"})
_XS_FALSE = frozenset({"false", "0"})


@dataclass(frozen=True)
class IdpMetadata:
    """What a service provider needs from an IdP's metadata (saml-metadata-2.0-os §2.4.3)."""

    entity_id: str
    sso_urls: dict[str, str]  # binding URI → Location (§2.4.3 SingleSignOnService)
    slo_urls: dict[str, str]  # binding URI → Location (§2.4.2 SingleLogoutService)
    signing_certificates: tuple[CertificateInfo, ...]
    encryption_certificates: tuple[CertificateInfo, ...]
    name_id_formats: tuple[str, ...]
    want_authn_requests_signed: bool
    valid_until: datetime | None  # the earliest validUntil on the path to the IdP role


def is_http_url(value: str) -> bool:
    """Whether ``value`` is an absolute http(s) URL with a host (RFC 3986 §4.3)."""
    if not value or any(char.isspace() for char in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _error(message: str, field: str, reason: str, **details: object) -> SamlMetadataError:
    return SamlMetadataError(message, field=field, details={"reason": reason, **details})


def _valid_until(element: etree._Element, field: str, now: datetime) -> datetime | None:
    """Read ``validUntil`` (saml-metadata-2.0-os §2.3.1) and refuse it once passed."""
    raw = element.get("validUntil")
    if raw is None:
        return None
    try:
        moment = parse_xs_datetime(raw)
    except ValueError:
        raise _error(
            f"validUntil {raw[:64]!r} on {etree.QName(element).localname} is not an xs:dateTime",
            field,
            "bad_valid_until",
        ) from None
    if moment < now:
        raise _error(
            f"metadata expired: validUntil {isoformat_z(moment)} has passed; fetch fresh metadata "
            "from the identity provider",
            field,
            "metadata_expired",
            valid_until=isoformat_z(moment),
        )
    return moment


def _entity_id_of(entity: etree._Element) -> str:
    return (entity.get("entityID") or "").strip()


def _entity_ids(entities: Iterable[etree._Element]) -> list[str]:
    return [_entity_id_of(entity) or "(no entityID)" for entity in entities]


def _select_entity(root: etree._Element, field: str, entity_id: str | None) -> etree._Element:
    """Pick the entity (§2.3.2) from a lone EntityDescriptor or an aggregate (§2.3.1)."""
    if root.tag == _ENTITY:
        found = _entity_id_of(root)
        if entity_id is not None and found and found != entity_id:
            raise _error(
                f"metadata is for entity {found!r}, not the configured entity ID {entity_id!r}",
                field,
                "entity_id_mismatch",
                expected=entity_id,
                found=found,
            )
        return root
    entities = list(root.iter(_ENTITY))
    if entity_id is not None:
        for entity in entities:
            if _entity_id_of(entity) == entity_id:
                return entity
        listed = _entity_ids(entities)
        raise _error(
            f"metadata has no entity {entity_id!r}; it describes: {', '.join(listed) or 'none'}",
            field,
            "entity_not_found",
            expected=entity_id,
            entity_ids=listed,
        )
    identity_providers = [entity for entity in entities if entity.find(_IDP) is not None]
    if len(identity_providers) == 1:
        return identity_providers[0]
    if not identity_providers:
        raise _error(
            "EntitiesDescriptor holds no EntityDescriptor with an IDPSSODescriptor",
            field,
            "no_idp",
            entity_ids=_entity_ids(entities),
        )
    listed = _entity_ids(identity_providers)
    raise _error(
        f"metadata describes {len(listed)} identity providers ({', '.join(listed)}); name the entity ID to use",
        field,
        "several_idps",
        entity_ids=listed,
    )


def _idp_descriptor(entity: etree._Element, entity_id: str, field: str) -> etree._Element:
    """The entity's IDPSSODescriptor (§2.4.3) that lists SAML 2.0 (§2.4.1)."""
    descriptors = entity.findall(_IDP)
    if not descriptors:
        hint = " (this looks like service-provider metadata)" if entity.find(_SP) is not None else ""
        raise _error(
            f"entity {entity_id!r} has no IDPSSODescriptor{hint}: identity-provider metadata is required",
            field,
            "no_idp_descriptor",
        )
    found: list[str] = []
    for descriptor in descriptors:
        protocols = (descriptor.get("protocolSupportEnumeration") or "").split()
        if SAML2_PROTOCOL in protocols:
            return descriptor
        found.extend(protocols)
    raise _error(
        f"IDPSSODescriptor's protocolSupportEnumeration does not list {SAML2_PROTOCOL} "
        f"(found: {' '.join(found) or 'nothing'})",
        field,
        "saml2_not_supported",
    )


def _endpoints(descriptor: etree._Element, tag: str, field: str) -> dict[str, str]:
    """Binding → Location for endpoints (§2.2.2); front-channel ones must be http(s) URLs."""
    endpoints: dict[str, str] = {}
    name = etree.QName(tag).localname
    for element in descriptor.findall(tag):
        binding = (element.get("Binding") or "").strip()
        location = (element.get("Location") or "").strip()
        if not binding or not location:
            raise _error(f"a {name} lacks its Binding or Location attribute", field, "bad_endpoint")
        if binding in FRONT_CHANNEL_BINDINGS and not is_http_url(location):
            raise _error(
                f"{name} Location {location[:200]!r} is not an absolute http(s) URL",
                field,
                "bad_endpoint",
                binding=binding,
            )
        endpoints.setdefault(binding, location)
    return endpoints


def _certificates(descriptor: etree._Element, field: str) -> tuple[list[CertificateInfo], list[CertificateInfo]]:
    """Signing and encryption certificates from KeyDescriptors (§2.4.1.1); no ``use`` = both."""
    signing: dict[str, CertificateInfo] = {}
    encryption: dict[str, CertificateInfo] = {}
    for position, key_descriptor in enumerate(descriptor.findall(_KEY_DESCRIPTOR), start=1):
        use = key_descriptor.get("use")
        if use not in (None, "signing", "encryption"):
            raise _error(f"KeyDescriptor #{position} has an unknown use {use[:40]!r}", field, "bad_key_use")
        for element in key_descriptor.findall(_X509_CERTIFICATE):
            try:
                # itertext() skips comments, which must not split the base64 body.
                body = "".join(text for text in element.itertext() if isinstance(text, str))
                info = parse_certificate(body, field=field)
            except CertificateError as exc:
                raise _error(
                    f"KeyDescriptor #{position} (use={use or 'unspecified'}) certificate: {exc.message}",
                    field,
                    "bad_certificate",
                    certificate_reason=exc.details.get("reason"),
                ) from None
            if use in (None, "signing"):
                signing.setdefault(info.sha256_fingerprint, info)
            if use in (None, "encryption"):
                encryption.setdefault(info.sha256_fingerprint, info)
    return list(signing.values()), list(encryption.values())


def _boolean(descriptor: etree._Element, name: str, field: str) -> bool:
    raw = (descriptor.get(name) or "false").strip()
    if raw in _XS_TRUE:
        return True
    if raw in _XS_FALSE:
        return False
    raise _error(f"{name} {raw[:40]!r} is not an xs:boolean", field, "bad_boolean")


def parse_idp_metadata(
    document: bytes | str,
    *,
    field: str = "saml.metadata_xml",
    entity_id: str | None = None,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> IdpMetadata:
    """Read an IdP's metadata (saml-metadata-2.0-os §2.3, §2.4.1, §2.4.3).

    ``entity_id`` picks the entity from an aggregate and must match a lone EntityDescriptor.
    ``now`` (aware; default: the current time) decides whether ``validUntil`` has passed.
    Every refusal is a :class:`SamlMetadataError` naming ``field`` that says what is missing.
    """
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    root = parse_untrusted_xml(document, max_bytes=max_bytes, field=field)
    if root.tag not in (_ENTITY, _ENTITIES):
        raise _error(
            f"root element is {str(root.tag)[:120]!r}; expected an EntityDescriptor or EntitiesDescriptor "
            f"in the namespace {MD_NS}",
            field,
            "not_metadata",
        )
    entity = _select_entity(root, field, entity_id)
    found_id = _entity_id_of(entity)
    if not found_id:
        raise _error("EntityDescriptor has no entityID attribute", field, "no_entity_id")
    if len(found_id) > MAX_ENTITY_ID_CHARS:
        raise _error(f"entityID is longer than {MAX_ENTITY_ID_CHARS} characters", field, "bad_entity_id")
    descriptor = _idp_descriptor(entity, found_id, field)
    path = [*reversed(list(entity.iterancestors(_ENTITIES))), entity, descriptor]
    deadlines = [deadline for deadline in (_valid_until(e, field, moment) for e in path) if deadline]

    sso_urls = _endpoints(descriptor, _SSO, field)
    if not any(binding in sso_urls for binding in FRONT_CHANNEL_BINDINGS):
        offered = ", ".join(sso_urls) or "none"
        raise _error(
            "IDPSSODescriptor has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding "
            f"(found: {offered})",
            field,
            "no_sso_service",
        )
    signing, encryption = _certificates(descriptor, field)
    if not signing:
        raise _error(
            'IDPSSODescriptor has no signing certificate: a KeyDescriptor (use="signing" or no use) '
            "with ds:KeyInfo/ds:X509Data/ds:X509Certificate is required",
            field,
            "no_signing_certificate",
        )
    formats = [(element.text or "").strip() for element in descriptor.findall(_NAME_ID_FORMAT)]
    return IdpMetadata(
        entity_id=found_id,
        sso_urls=sso_urls,
        slo_urls=_endpoints(descriptor, _SLO, field),
        signing_certificates=tuple(signing),
        encryption_certificates=tuple(encryption),
        name_id_formats=tuple(dict.fromkeys(value for value in formats if value)),
        want_authn_requests_signed=_boolean(descriptor, "WantAuthnRequestsSigned", field),
        valid_until=min(deadlines) if deadlines else None,
    )


def _binding_uri(binding: str) -> str:
    return binding if ":" in binding else BINDINGS_PREFIX + binding


def sso_url_for(
    metadata: IdpMetadata, preferred: Sequence[str] = ("HTTP-Redirect", "HTTP-POST")
) -> tuple[str, str] | None:
    """The first (binding URI, Location) offered among ``preferred`` bindings (short or full names)."""
    for binding in preferred:
        uri = _binding_uri(binding)
        if uri in metadata.sso_urls:
            return uri, metadata.sso_urls[uri]
    return None


def slo_url_for(
    metadata: IdpMetadata, preferred: Sequence[str] = ("HTTP-Redirect", "HTTP-POST")
) -> tuple[str, str] | None:
    """The first (binding URI, Location) of SingleLogoutService (§2.4.2) among ``preferred``."""
    for binding in preferred:
        uri = _binding_uri(binding)
        if uri in metadata.slo_urls:
            return uri, metadata.slo_urls[uri]
    return None
