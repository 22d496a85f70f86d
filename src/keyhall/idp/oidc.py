"""Inspecting an organization's OpenID provider before its connection is stored.

Glue between the guarded fetcher (``keyhall.security.outbound``) and the pure parsers
(``keyhall.protocols.oidc.discovery``): fetch the provider configuration (OpenID Connect
Discovery 1.0 §4), check it (§4.3 issuer, §3 endpoints), then fetch and check its JWK Set
(RFC 7517 §5). Every failure is an ``IdPValidationError`` whose ``field`` names the setting to
fix: ``oidc.discovery_url`` or ``oidc.issuer`` for the configuration, ``oidc.jwks_uri`` for
the keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyhall.errors import DiscoveryError
from keyhall.metrics import idp_call
from keyhall.protocols.oidc.discovery import (
    JwksSummary,
    ProviderMetadata,
    discovery_url_for,
    parse_jwks,
    parse_provider_metadata,
)
from keyhall.security.outbound import OutboundPolicy, check_url, fetch

_JSON = "application/json"
_JWKS_ACCEPT = "application/jwk-set+json, application/json;q=0.9"


@dataclass(frozen=True)
class OidcInspection:
    """What was learnt from an OpenID provider: its configuration and a summary of its keys."""

    discovery_url: str
    metadata: ProviderMetadata
    jwks: JwksSummary

    def as_discovered(self) -> dict[str, Any]:
        """The JSON-able ``discovered`` block a connection shows (lists, or null when absent)."""
        meta = self.metadata
        return {
            "discovery_url": self.discovery_url,
            "issuer": meta.issuer,
            "authorization_endpoint": meta.authorization_endpoint,
            "token_endpoint": meta.token_endpoint,
            "userinfo_endpoint": meta.userinfo_endpoint,
            "jwks_uri": meta.jwks_uri,
            "end_session_endpoint": meta.end_session_endpoint,
            "registration_endpoint": meta.registration_endpoint,
            "scopes_supported": _as_list(meta.scopes_supported),
            "response_types_supported": _as_list(meta.response_types_supported),
            "grant_types_supported": _as_list(meta.grant_types_supported),
            "code_challenge_methods_supported": _as_list(meta.code_challenge_methods_supported),
            "token_endpoint_auth_methods_supported": _as_list(meta.token_endpoint_auth_methods_supported),
            "id_token_signing_alg_values_supported": _as_list(meta.id_token_signing_alg_values_supported),
            "claims_supported": _as_list(meta.claims_supported),
            "jwks": {
                "key_count": self.jwks.key_count,
                "kids": list(self.jwks.kids),
                "algs": list(self.jwks.algs),
            },
        }


@idp_call("oidc_discovery")
def inspect_oidc_provider(*, issuer: str | None, discovery_url: str | None, policy: OutboundPolicy) -> OidcInspection:
    """Fetch and check an OpenID provider's configuration and JWK Set.

    The configuration is read from ``discovery_url`` when given, else from the issuer's
    well-known URL (Discovery §4). When an issuer is given, the document's issuer must equal it
    exactly (§4.3); otherwise the document's own issuer is taken. The ``jwks_uri`` must pass the
    same outbound policy before it is fetched. Raises UnsafeURL, OutboundFetchError or
    DiscoveryError.
    """
    field = "oidc.discovery_url" if discovery_url is not None else "oidc.issuer"
    if discovery_url is None:
        if issuer is None:
            raise DiscoveryError("an issuer or a discovery URL is required", field="oidc.issuer")
        discovery_url = discovery_url_for(issuer)
    configuration = fetch(discovery_url, policy, accept=_JSON, field=field)
    metadata = parse_provider_metadata(configuration.body, expected_issuer=issuer, field=field)
    check_url(metadata.jwks_uri, policy, field="oidc.jwks_uri")
    key_set = fetch(metadata.jwks_uri, policy, accept=_JWKS_ACCEPT, field="oidc.jwks_uri")
    jwks = parse_jwks(key_set.body, field="oidc.jwks_uri")
    return OidcInspection(discovery_url=discovery_url, metadata=metadata, jwks=jwks)


def _as_list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)
