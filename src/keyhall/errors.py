"""Keyhall's exception tree.

Every error that the rules of Keyhall can raise is a ``KeyhallError``. The core, the protocol
engines and storage raise them; only the surfaces (native API, dialects, pages) decide how each
one is rendered and with which HTTP status. ``code`` is the stable machine-readable name.

    KeyhallError                          code
    ├── InvalidInput                      invalid_request       a field breaks a rule (400)
    ├── Unauthenticated                   unauthenticated       no or bad credentials (401)
    ├── PermissionDenied                  forbidden             role too low (403)
    ├── NotFound                          not_found             absent, or another org's (404)
    ├── NotAcceptable                     not_acceptable        the client accepts no format we send (406)
    ├── Conflict                          conflict              clashes with stored state (409)
    ├── PreconditionFailed                precondition_failed   If-Match is stale (412)
    ├── IdPValidationError                idp_validation_failed the IdP cannot be verified (422)
    │   ├── UnsafeURL                     unsafe_url            SSRF guard refused the URL
    │   ├── OutboundFetchError            fetch_failed          timeout, refused, too big, non-2xx
    │   ├── DiscoveryError                discovery_invalid     OIDC discovery/JWKS unusable
    │   ├── LdapError                     ldap_check_failed     the directory refused the connection, bind or search
    │   ├── SamlMetadataError             saml_metadata_invalid SAML metadata unusable
    │   └── CertificateError              certificate_invalid   PEM/DER certificate unusable
    ├── IdPLoginError                     idp_login_failed      a sign-in at the IdP failed (``reason`` says how)
    │   ├── IdTokenError                  id_token_invalid      the ID token fails OIDC Core 1.0 §3.1.3.7
    │   └── SamlResponseError             saml_response_invalid the SAML Response fails saml-core-2.0-os /
    │                                                           saml-profiles-2.0-os §4.1.4 or its XML signature
    ├── RateLimited                       rate_limited          too many requests (429)
    └── ServiceUnavailable                unavailable           database or dependency down (503)
        └── IdPBusy                       idp_busy              an IdP already has its most calls in flight
"""

from __future__ import annotations

from typing import Any, Literal


class KeyhallError(Exception):
    """Base of every error Keyhall raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details: dict[str, Any] = dict(details or {})
        if field is not None:
            self.details.setdefault("field", field)


class InvalidInput(KeyhallError):
    code = "invalid_request"


class Unauthenticated(KeyhallError):
    code = "unauthenticated"


class PermissionDenied(KeyhallError):
    code = "forbidden"


class NotFound(KeyhallError):
    code = "not_found"


class NotAcceptable(KeyhallError):
    code = "not_acceptable"


class Conflict(KeyhallError):
    code = "conflict"


class PreconditionFailed(KeyhallError):
    code = "precondition_failed"


class IdPValidationError(KeyhallError):
    code = "idp_validation_failed"


class UnsafeURL(IdPValidationError):
    code = "unsafe_url"


class OutboundFetchError(IdPValidationError):
    code = "fetch_failed"


class DiscoveryError(IdPValidationError):
    code = "discovery_invalid"


class SamlMetadataError(IdPValidationError):
    code = "saml_metadata_invalid"


class CertificateError(IdPValidationError):
    code = "certificate_invalid"


class LdapError(IdPValidationError):
    """The LDAP directory could not be used: no connection, TLS refused, the service account's
    bind failed (the LDAP result code is in the message, RFC 4511 §4.1.9), or a base DN is missing."""

    code = "ldap_check_failed"


#: Why a sign-in through an OpenID provider failed outside the ID token itself.
IdPLoginReason = Literal["token_error", "idp_unreachable", "bad_token_response", "jwks_invalid", "userinfo_failed"]
#: Why an ID token was refused (OpenID Connect Core 1.0 §3.1.3.7).
IdTokenReason = Literal[
    "malformed",
    "alg_not_allowed",
    "unknown_kid",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "azp_mismatch",
    "expired",
    "issued_in_future",
    "nonce_mismatch",
    "missing_claim",
]
#: Why a SAML Response was refused (saml-core-2.0-os §2.3.3, §2.5.1, §3.2.2; saml-profiles-2.0-os
#: §4.1.4.2-§4.1.4.3; XML-DSig 1.1; XML Encryption 1.1).
SamlReason = Literal[
    "malformed",
    "dtd_forbidden",
    "too_large",
    "status_not_success",
    "unsigned",
    "bad_signature",
    "untrusted_certificate",
    "signature_wrapping",
    "algorithm_not_allowed",
    "sha1_refused",
    "wrong_destination",
    "wrong_recipient",
    "wrong_audience",
    "wrong_issuer",
    "expired",
    "not_yet_valid",
    "in_response_to_mismatch",
    "unsolicited",
    "missing_subject",
    "decryption_failed",
    "multiple_assertions",
]


class IdPLoginError(KeyhallError):
    """A sign-in through an organization's identity provider failed; ``reason`` (also in
    ``details["reason"]``) is the machine-readable cause."""

    code = "idp_login_failed"
    reason: IdPLoginReason | IdTokenReason | SamlReason

    def __init__(
        self,
        message: str,
        *,
        reason: IdPLoginReason | IdTokenReason | SamlReason,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details={**(details or {}), "reason": reason})
        self.reason = reason


class IdTokenError(IdPLoginError):
    """The ID token was refused; ``reason`` names the check of OIDC Core 1.0 §3.1.3.7 it failed."""

    code = "id_token_invalid"
    reason: IdTokenReason

    def __init__(self, message: str, *, reason: IdTokenReason, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, reason=reason, details=details)
        self.reason = reason


class SamlResponseError(IdPLoginError):
    """The SAML Response posted to the assertion consumer service was refused; ``reason`` names
    the check (saml-core-2.0-os, saml-profiles-2.0-os §4.1.4, XML-DSig 1.1) it failed."""

    code = "saml_response_invalid"
    reason: SamlReason

    def __init__(self, message: str, *, reason: SamlReason, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, reason=reason, details=details)
        self.reason = reason


class RateLimited(KeyhallError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class ServiceUnavailable(KeyhallError):
    code = "unavailable"


class IdPBusy(ServiceUnavailable):
    """Too many calls to one identity provider are already waiting (``security.bulkhead``)."""

    code = "idp_busy"
