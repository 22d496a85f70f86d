"""Inspecting a SAML identity provider before a connection is stored.

"Validation before storage" (DESIGN.md) for SAML: the IdP is described by its metadata
(saml-metadata-2.0-os §2.4.3), fetched from a URL through the SSRF guard or pasted as XML, or by
hand (entity ID, SSO URL and certificates). Explicit fields override (entity ID is checked
against the metadata; SSO and SLO URLs replace the metadata's) or complement (certificates are
added to the metadata's signing certificates, e.g. to pin a rollover key) what the metadata
says. The result reports each certificate's expiry (RFC 5280 §4.1.2.5) for the connection's
``discovered`` block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from keyhall.core.certificates import FetchedMetadata
from keyhall.errors import InvalidInput, SamlMetadataError
from keyhall.metrics import idp_call
from keyhall.protocols.saml.certificates import CertificateInfo, isoformat_z, parse_certificates
from keyhall.protocols.saml.metadata import (
    BINDING_HTTP_REDIRECT,
    MAX_ENTITY_ID_CHARS,
    IdpMetadata,
    is_http_url,
    parse_idp_metadata,
    slo_url_for,
    sso_url_for,
)
from keyhall.security.outbound import OutboundPolicy, fetch

__all__ = ["METADATA_ACCEPT", "SamlInspection", "SamlSource", "inspect_saml_idp", "refetch_metadata"]

SamlSource = Literal["metadata_url", "metadata_xml", "manual"]

# saml-metadata-2.0-os §4.1.1 registers application/samlmetadata+xml; many IdPs serve plain XML.
METADATA_ACCEPT = "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"


@dataclass(frozen=True)
class SamlInspection:
    """What Keyhall learned about a SAML IdP, ready to store and to report."""

    idp_entity_id: str
    sso_url: str
    sso_urls: dict[str, str]  # binding URI → Location
    slo_url: str | None
    certificates: tuple[CertificateInfo, ...]  # signing certificates, explicit ones first
    name_id_formats: tuple[str, ...]
    want_authn_requests_signed: bool
    metadata_valid_until: datetime | None
    source: SamlSource

    def soonest_expiring(self) -> CertificateInfo | None:
        """The certificate whose notAfter (RFC 5280 §4.1.2.5) comes first."""
        return min(self.certificates, key=lambda info: info.not_after, default=None)

    def as_discovered(self, now: datetime) -> dict[str, Any]:
        """The JSON-able ``discovered`` block of a connection, as of ``now``."""
        soonest = self.soonest_expiring()
        return {
            "source": self.source,
            "idp_entity_id": self.idp_entity_id,
            "sso_url": self.sso_url,
            "sso_urls": dict(self.sso_urls),
            "slo_url": self.slo_url,
            "certificates": [{**info.as_dict(now), "pem": info.pem} for info in self.certificates],
            "certificate_expires_at": isoformat_z(soonest.not_after) if soonest else None,
            "certificate_days_left": soonest.days_left(now) if soonest else None,
            "name_id_formats": list(self.name_id_formats),
            "want_authn_requests_signed": self.want_authn_requests_signed,
            "metadata_valid_until": (isoformat_z(self.metadata_valid_until) if self.metadata_valid_until else None),
        }


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def _check_url(value: str | None, field: str) -> None:
    if value is not None and not is_http_url(value):
        raise SamlMetadataError(f"{field} must be an absolute http(s) URL", field=field, details={"reason": "bad_url"})


@idp_call("saml_metadata")
def _fetch_metadata(url: str, policy: OutboundPolicy, entity_id: str | None, now: datetime) -> IdpMetadata:
    """GET the metadata through the SSRF guard, then read it (saml-metadata-2.0-os §4.1)."""
    field = "saml.metadata_url"
    document = fetch(url, policy, accept=METADATA_ACCEPT, field=field)
    try:
        return parse_idp_metadata(document.body, field=field, entity_id=entity_id, now=now, max_bytes=policy.max_bytes)
    except SamlMetadataError as exc:
        if "html" not in document.content_type.lower():
            raise
        # A sign-in or landing page instead of metadata: say so rather than quote a parse error.
        raise SamlMetadataError(
            f"{field} answered a web page ({document.content_type}), not SAML metadata: {exc.message}",
            field=field,
            details={**exc.details, "content_type": document.content_type},
        ) from None


def _manual(
    entity_id: str | None, sso_url: str | None, slo_url: str | None, certificates: list[CertificateInfo]
) -> SamlInspection:
    """A hand-configured IdP: entity ID, SSO URL and at least one certificate are required."""
    required = {
        "saml.idp_entity_id": entity_id is not None,
        "saml.sso_url": sso_url is not None,
        "saml.certificates": bool(certificates),
    }
    missing = [name for name, present in required.items() if not present]
    if missing or entity_id is None or sso_url is None:
        raise SamlMetadataError(
            f"{missing[0]} is required when no metadata is given (saml.metadata_url or "
            f"saml.metadata_xml); missing: {', '.join(missing)}",
            field=missing[0],
            details={"reason": "missing", "missing": missing},
        )
    return SamlInspection(
        idp_entity_id=entity_id,
        sso_url=sso_url,
        # Without metadata the binding is unknown; HTTP-Redirect is what hand-entered SSO URLs serve.
        sso_urls={BINDING_HTTP_REDIRECT: sso_url},
        slo_url=slo_url,
        certificates=tuple(certificates),
        name_id_formats=(),
        want_authn_requests_signed=False,
        metadata_valid_until=None,
        source="manual",
    )


def inspect_saml_idp(
    *,
    metadata_url: str | None = None,
    metadata_xml: str | None = None,
    idp_entity_id: str | None = None,
    sso_url: str | None = None,
    slo_url: str | None = None,
    certificates: Sequence[str] = (),
    policy: OutboundPolicy,
    now: datetime,
) -> SamlInspection:
    """Validate a SAML IdP configuration and describe the IdP (saml-metadata-2.0-os §2.4.3).

    Raises ``InvalidInput`` when both metadata fields are given; ``UnsafeURL`` or
    ``OutboundFetchError`` from the fetch; ``SamlMetadataError`` for unusable metadata, a
    metadata entity ID other than ``idp_entity_id`` (both are named), a bad URL or a missing
    manual field; ``CertificateError`` for an unusable entry of ``certificates``.
    """
    metadata_url = _blank_to_none(metadata_url)
    metadata_xml = metadata_xml if metadata_xml and metadata_xml.strip() else None
    idp_entity_id = _blank_to_none(idp_entity_id)
    sso_url = _blank_to_none(sso_url)
    slo_url = _blank_to_none(slo_url)
    if metadata_url is not None and metadata_xml is not None:
        raise InvalidInput(
            "give saml.metadata_url or saml.metadata_xml, not both",
            field="saml.metadata_xml",
            details={"reason": "conflicting_fields"},
        )
    if idp_entity_id is not None and len(idp_entity_id) > MAX_ENTITY_ID_CHARS:
        raise SamlMetadataError(
            f"saml.idp_entity_id is longer than {MAX_ENTITY_ID_CHARS} characters",
            field="saml.idp_entity_id",
            details={"reason": "too_long"},
        )
    _check_url(sso_url, "saml.sso_url")
    _check_url(slo_url, "saml.slo_url")
    explicit = parse_certificates(certificates, field="saml.certificates")

    source: SamlSource
    if metadata_url is not None:
        metadata = _fetch_metadata(metadata_url, policy, idp_entity_id, now)
        source = "metadata_url"
    elif metadata_xml is not None:
        metadata = parse_idp_metadata(metadata_xml, field="saml.metadata_xml", entity_id=idp_entity_id, now=now)
        source = "metadata_xml"
    else:
        return _manual(idp_entity_id, sso_url, slo_url, explicit)

    chosen_sso = sso_url_for(metadata)
    chosen_slo = slo_url_for(metadata)
    merged: dict[str, CertificateInfo] = {}
    for info in (*explicit, *metadata.signing_certificates):
        merged.setdefault(info.sha256_fingerprint, info)
    return SamlInspection(
        idp_entity_id=metadata.entity_id,
        # parse_idp_metadata guarantees an HTTP-Redirect or HTTP-POST SingleSignOnService.
        sso_url=sso_url or (chosen_sso[1] if chosen_sso else ""),
        sso_urls=dict(metadata.sso_urls),
        slo_url=slo_url or (chosen_slo[1] if chosen_slo else None),
        certificates=tuple(merged.values()),
        name_id_formats=metadata.name_id_formats,
        want_authn_requests_signed=metadata.want_authn_requests_signed,
        metadata_valid_until=metadata.valid_until,
        source=source,
    )


# --- background refresh (keyhall.core.certificate_service) -----------------------------------------


@idp_call("saml_metadata")
def refetch_metadata(url: str, policy: OutboundPolicy, *, etag: str | None, last_modified: str | None,
                     now: datetime) -> FetchedMetadata | None:
    """GET the metadata again through the SSRF guard, conditionally (RFC 9110 §13.1.1, §13.1.3):
    None when it did not change (304), else its entity ID and signing certificates as
    ``discovered`` entries. Raises what ``inspect_saml_idp`` raises for a bad document."""
    field = "saml.metadata_url"
    headers = {name: value for name, value in (("if-none-match", etag), ("if-modified-since", last_modified))
               if value}
    document = fetch(url, policy, accept=METADATA_ACCEPT, field=field, headers=headers or None, not_modified_ok=True)
    if document.status == 304:
        return None
    metadata = parse_idp_metadata(document.body, field=field, entity_id=None, now=now, max_bytes=policy.max_bytes)
    return FetchedMetadata(
        entity_id=metadata.entity_id,
        certificates=tuple({**info.as_dict(now), "pem": info.pem} for info in metadata.signing_certificates),
        etag=document.validators.get("etag"), last_modified=document.validators.get("last-modified"))
