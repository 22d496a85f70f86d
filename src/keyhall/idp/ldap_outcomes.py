"""What a sign-in through an LDAP directory comes to: the identity the directory vouched for, or the
typed reason it did not.

Kept apart from ``keyhall.idp.ldap_client`` so that the sign-in flow can name them without loading
ldap3 and pyasn1 (some 6 MB per worker) in a service whose organizations use no directory: the
client is imported on the first LDAP sign-in or connection check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from keyhall.errors import KeyhallError

LdapLoginReason = Literal["empty_password", "user_not_found", "ambiguous_user", "invalid_credentials",
                          "directory_unavailable", "account_locked"]


class LdapLoginError(KeyhallError):
    """A sign-in through an LDAP directory failed; ``reason`` (also ``details["reason"]``) says
    why, for the audit. The person is told less: an unknown user and a wrong password read alike."""

    code = "ldap_login_failed"
    reason: LdapLoginReason

    def __init__(self, message: str, *, reason: LdapLoginReason, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "reason": reason})
        self.reason = reason


@dataclass(frozen=True)
class LdapIdentity:
    """The person the directory vouched for: their entry's DN, its attributes, their groups (DNs)."""

    dn: str
    attributes: dict[str, list[str]]
    groups: list[str]
