"""All tables, one module each; importing this package registers them on ``Base.metadata``."""

from keyhall.storage.models.api_keys import ApiKeyRow
from keyhall.storage.models.applications import ApplicationRow
from keyhall.storage.models.audit_events import AuditEventRow
from keyhall.storage.models.base import Base
from keyhall.storage.models.certificate_watch import CertificateWatchRow
from keyhall.storage.models.connection_domains import ConnectionDomainRow
from keyhall.storage.models.connections import ConnectionRow
from keyhall.storage.models.directories import DirectoryRow
from keyhall.storage.models.directory_groups import DirectoryGroupRow
from keyhall.storage.models.directory_memberships import DirectoryMembershipRow
from keyhall.storage.models.domains import DomainRow
from keyhall.storage.models.events import EventRow
from keyhall.storage.models.grants import (
    AuthorizationCodeRow,
    RefreshTokenRow,
    RevokedAccessTokenRow,
    TokenFamilyRow,
)
from keyhall.storage.models.login_transactions import LoginTransactionRow
from keyhall.storage.models.logout_notices import LogoutNoticeRow
from keyhall.storage.models.organizations import OrganizationRow
from keyhall.storage.models.portal import PortalLinkRow, PortalSessionRow
from keyhall.storage.models.rate_counters import RateCounterRow
from keyhall.storage.models.saml_replays import SamlReplayRow
from keyhall.storage.models.saml_sessions import SamlSessionRow
from keyhall.storage.models.sign_in_traces import SignInTraceRow
from keyhall.storage.models.signing_keys import SigningKeyRow
from keyhall.storage.models.users import UserRow
from keyhall.storage.models.webhooks import WebhookDeliveryRow, WebhookEndpointRow

__all__ = [
    "ApiKeyRow",
    "ApplicationRow",
    "AuditEventRow",
    "AuthorizationCodeRow",
    "Base",
    "CertificateWatchRow",
    "ConnectionDomainRow",
    "ConnectionRow",
    "DirectoryGroupRow",
    "DirectoryMembershipRow",
    "DirectoryRow",
    "DomainRow",
    "EventRow",
    "LoginTransactionRow",
    "LogoutNoticeRow",
    "OrganizationRow",
    "PortalLinkRow",
    "PortalSessionRow",
    "RateCounterRow",
    "RefreshTokenRow",
    "RevokedAccessTokenRow",
    "SamlReplayRow",
    "SamlSessionRow",
    "SignInTraceRow",
    "SigningKeyRow",
    "TokenFamilyRow",
    "UserRow",
    "WebhookDeliveryRow",
    "WebhookEndpointRow",
]
