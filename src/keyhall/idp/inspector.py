"""The IdP inspector the core is handed: contacts IdPs through the SSRF-guarded client."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyhall.idp.oidc import inspect_oidc_provider
from keyhall.idp.saml import inspect_saml_idp
from keyhall.security.outbound import OutboundPolicy


class NetworkInspector:
    """Implements ``keyhall.core.ports.IdPInspector`` over real network calls."""

    def __init__(self, policy: OutboundPolicy):
        self.policy = policy

    def inspect_oidc(self, settings: dict[str, Any]) -> dict[str, Any]:
        found = inspect_oidc_provider(
            issuer=settings.get("issuer"), discovery_url=settings.get("discovery_url"), policy=self.policy
        )
        return found.as_discovered()

    def inspect_saml(self, settings: dict[str, Any], now: datetime) -> dict[str, Any]:
        found = inspect_saml_idp(
            metadata_url=settings.get("metadata_url"), metadata_xml=settings.get("metadata_xml"),
            idp_entity_id=settings.get("idp_entity_id"), sso_url=settings.get("sso_url"),
            slo_url=settings.get("slo_url"), certificates=list(settings.get("certificates") or []),
            policy=self.policy, now=now,
        )
        return found.as_discovered(now)

    def inspect_ldap(self, settings: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
        # Imported here: ldap3 and pyasn1 (some 6 MB per worker) load with the first LDAP connection check.
        from keyhall.idp.ldap_client import check_service_account

        return check_service_account(settings, secrets, policy=self.policy)
