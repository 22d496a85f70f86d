"""Keyhall as an LDAP client of an organization's directory (RFC 4511, RFC 4513), over ldap3.

- ``check_service_account`` (saving a connection): connect, bind as the service account (RFC 4513
  §5.1.3; anonymously, §5.1.1, without ``bind_dn``), read the root DSE, check each base DN with a
  base-scope search (RFC 4511 §4.5.1.2) and try the user filter. Failures are ``LdapError`` (422)
  naming the result code (RFC 4511 §4.1.9, e.g. ``invalidCredentials (49)``) or the network/TLS problem.
- ``authenticate`` (a sign-in): an empty password is refused before any contact (a DN with no
  password is an *unauthenticated* bind that servers answer with success, RFC 4513 §5.1.2); the
  service account searches the escaped username (RFC 4515 §3) asking for two entries at most (none:
  unknown, two: ambiguous); a fresh connection binds as the entry's DN (§5.1.3); groups come from
  ``group_member_attribute`` or a group search. Failures are ``LdapLoginError`` with a typed ``reason``.

Bounds: ``timeout_seconds`` limits connecting and every receive (the TLS handshake too); searches
carry time and size limits; referrals are never followed; connections are read-only. Unless the
operator allows insecure IdP addresses (``OutboundPolicy.allow_insecure``), every address of the host
must be public (ldap3 then connects to a checked address, so DNS cannot change it in between) and
plain LDAP, which would carry passwords in clear text, is refused. TLS (LDAPS, or StartTLS: RFC 4511
§4.14, RFC 4513 §3) verifies the certificate against ``ca_certificate`` or the system's trust store,
and the host name or IP address (RFC 4513 §3.1.3), with Python's checks: ldap3's own calls
``ssl.match_hostname`` (deprecated, gone in Python 3.12) and its fallback refuses IP addresses.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
import ssl
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from secrets import token_hex
from typing import Any, Literal
from urllib.parse import urlsplit

from keyhall.core.connection_settings import LdapSettings
from keyhall.core.validation import validate_model
from keyhall.core.vocabulary import LdapSecurity
from keyhall.errors import InvalidInput, LdapError
from keyhall.idp.ldap_outcomes import LdapIdentity, LdapLoginError, LdapLoginReason
from keyhall.metrics import idp_call
from keyhall.protocols.ldap.filters import group_filter, user_filter
from keyhall.security.addresses import non_public_reason
from keyhall.security.outbound import OutboundPolicy

# isort: split
# ldap3 comes after keyhall.protocols.ldap, which imports it without pyasn1's DeprecationWarning.
import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidFilterError

__all__ = ["LdapIdentity", "LdapLoginError", "LdapLoginReason", "authenticate", "check_service_account"]


DEFAULT_USER_ATTRIBUTES = ("uid", "mail", "cn", "givenName", "sn", "displayName")
MAX_PASSWORD_LENGTH = 1024
MAX_GROUPS = 500
MAX_ADDRESSES = 3  # a name with many addresses (a domain's controllers): try this many, each bounded
_DEFAULT_GROUP_FILTER = "(|(member={dn})(uniqueMember={dn}))"
_INSECURE_HINT = "KEYHALL_ALLOW_INSECURE_IDP_URLS allows it for development"
#: RFC 4512 §2.5: an attribute description is a descriptor or a numeric OID, with options.
_ATTRIBUTE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*")
#: Active Directory's bind diagnostics (``data 775``) for a locked, disabled or expired account.
_AD_ACCOUNT_UNUSABLE = re.compile(r"\bdata (775|533|701)\b")
_LOCKED_RESULTS = {19, 53}  # constraintViolation (389-ds lockout), unwillingToPerform (account inactivated)


class _Failure(Exception):
    """A directory problem in words; the public functions raise it as their own error."""

    def __init__(self, message: str, *, stage: Literal["config", "connect", "bind", "search"],
                 result: int | None = None, diagnostic: str = "") -> None:
        super().__init__(message)
        self.message, self.stage, self.result, self.diagnostic = message, stage, result, diagnostic


@dataclass(frozen=True)
class _Target:
    host: str  # as configured: what TLS verifies
    port: int
    security: LdapSecurity
    addresses: tuple[str, ...]
    context: ssl.SSLContext | None
    timeout: float

    @property
    def url(self) -> str:
        scheme = "ldaps" if self.security is LdapSecurity.LDAPS else "ldap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


class _VerifyingTls(ldap3.Tls):
    """ldap3's TLS hook with the standard library's certificate and host name checks."""

    def __init__(self, context: ssl.SSLContext, server_name: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context, self.server_name = context, server_name
        self.failure: str | None = None

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        try:
            connection.socket = self.context.wrap_socket(connection.socket, server_side=False,
                                                         do_handshake_on_connect=do_handshake,
                                                         server_hostname=self.server_name)
        except ssl.SSLCertVerificationError as exc:
            self.failure = f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
            raise
        except (ssl.SSLError, OSError) as exc:
            self.failure = f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}"
            raise


def _settings(settings: Mapping[str, Any], secrets: Mapping[str, str]) -> LdapSettings:
    values = {**settings, **{k: v for k, v in secrets.items() if v}}
    try:
        model = validate_model(LdapSettings, values, prefix="ldap")
    except InvalidInput as exc:
        raise _Failure(exc.message, stage="config") from exc
    if model.bind_dn and not model.bind_password:
        raise _Failure("ldap.bind_password: is required with bind_dn (a bind with a DN and no password is an "
                       "unauthenticated bind, RFC 4513 §5.1.2)", stage="config")
    return model


def _target(config: LdapSettings, policy: OutboundPolicy) -> _Target:
    """Where and how to connect. ``server`` is a host, ``host:port`` or an LDAP URL's scheme, host and
    port (RFC 4516 §2: ``ldap://`` plain or StartTLS, ``ldaps://`` TLS first); ``port`` wins over the URL's."""
    text = config.server.strip().rstrip("/")
    try:
        parts = urlsplit(text if "://" in text else f"//{text}")
        url_port = parts.port
    except ValueError as exc:
        raise _Failure(f"ldap.server: {text!r} is not a host name or an ldap:// URL", stage="config") from exc
    host = parts.hostname
    if not host:
        raise _Failure(f"ldap.server: {text!r} names no host", stage="config")
    security = config.security
    if parts.scheme.lower() == "ldaps":
        if security is LdapSecurity.STARTTLS:
            raise _Failure("ldap.security: an ldaps:// server cannot also use StartTLS", stage="config")
        security = LdapSecurity.LDAPS
    elif parts.scheme.lower() == "ldap" and security is LdapSecurity.LDAPS:
        raise _Failure("ldap.security: an ldap:// server URL does not speak LDAPS; use ldaps:// or starttls",
                       stage="config")
    if security is LdapSecurity.NONE and not policy.allow_insecure:
        raise _Failure("ldap.security: plain LDAP would send passwords in clear text; use ldaps or starttls "
                       f"({_INSECURE_HINT})", stage="config")
    port = config.port or url_port or (636 if security is LdapSecurity.LDAPS else 389)
    context = None
    if security is not LdapSecurity.NONE:
        try:
            context = ssl.create_default_context(cadata=config.ca_certificate or None)
        except (ssl.SSLError, ValueError) as exc:
            raise _Failure(f"ldap.ca_certificate: not a usable PEM certificate ({exc})", stage="config") from exc
    addresses = _addresses(host, port, policy)
    return _Target(host, port, security, addresses, context, config.timeout_seconds)


def _addresses(host: str, port: int, policy: OutboundPolicy) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise _Failure(f"could not resolve host {host}: {getattr(exc, 'strerror', None) or exc}",
                       stage="connect") from exc
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not policy.allow_insecure:
        for address in addresses:
            reason = non_public_reason(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason is not None:
                # A name's resolved address (or its kind) is never told: it would map the private network.
                what = f"host {host} is {reason}" if host == address else f"host {host} resolves to a non-public"
                raise _Failure(f"ldap.server: {what} address; Keyhall only contacts directories on "
                               f"public addresses ({_INSECURE_HINT})", stage="config")
    return addresses


def _open(target: _Target, user: str | None, password: str | None) -> ldap3.Connection:
    """An open connection to the first address that answers, TLS started when configured, not bound."""
    problems: list[str] = []
    for address in target.addresses[:MAX_ADDRESSES]:
        tls = _VerifyingTls(target.context, target.host) if target.context is not None else None
        server = ldap3.Server(address, port=target.port, use_ssl=target.security is LdapSecurity.LDAPS, tls=tls,
                              get_info=ldap3.NONE, connect_timeout=target.timeout, mode=ldap3.IP_SYSTEM_DEFAULT)
        # receive_timeout must be an int: ldap3 packs it into SO_RCVTIMEO with struct 'LL'.
        conn = ldap3.Connection(server, user=user, password=password,
                                authentication=ldap3.SIMPLE if user else ldap3.ANONYMOUS,
                                auto_bind=ldap3.AUTO_BIND_NONE, client_strategy=ldap3.SYNC, read_only=True,
                                raise_exceptions=False, auto_referrals=False, return_empty_attributes=False,
                                receive_timeout=max(1, math.ceil(target.timeout)))
        try:
            conn.open(read_server_info=False)
            if target.security is LdapSecurity.STARTTLS and not conn.start_tls(read_server_info=False):
                raise _Failure("the server did not start TLS", stage="connect")
        except (LDAPException, OSError) as exc:
            _close(conn)
            problems.append(f"{address}: {tls.failure if tls and tls.failure else _describe(exc)}")
            continue
        except _Failure:
            _close(conn)
            raise
        return conn
    raise _Failure(f"could not connect to {target.url}: {'; '.join(problems)}", stage="connect")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    for known, words in (("refused", "connection refused"), ("timed out", "timed out"),
                         ("unreachable", "network unreachable")):
        if known in text.lower():
            return words
    return text[:300] or type(exc).__name__


def _close(conn: ldap3.Connection) -> None:
    with suppress(LDAPException, OSError):  # already gone: nothing left to release
        conn.unbind()
    # ldap3 leaves the socket of a failed open (refused, timed out, TLS refused) to the garbage collector.
    if conn.socket is not None:
        with suppress(OSError):
            conn.socket.close()


def _result(conn: ldap3.Connection) -> tuple[int, str]:
    result = conn.result or {}
    code = int(result.get("result", -1))
    name = str(result.get("description") or "unknown")
    message = str(result.get("message") or "").strip()
    described = f"{name} ({code})" + (f": {message[:200]}" if message else "")
    return code, described


@contextmanager
def _bound(target: _Target, user: str | None, password: str | None, *, who: str) -> Iterator[ldap3.Connection]:
    """A connection bound as ``user`` (anonymous when None), unbound on leaving."""
    conn = _open(target, user, password)
    try:
        try:
            ok = conn.bind(read_server_info=False)
        except (LDAPException, OSError) as exc:
            raise _Failure(f"{who} could not bind at {target.url}: {_describe(exc)}", stage="connect") from exc
        if not ok:
            code, described = _result(conn)
            raise _Failure(f"{who} could not bind at {target.url}: {described}", stage="bind", result=code,
                           diagnostic=str((conn.result or {}).get("message") or ""))
        yield conn
    finally:
        _close(conn)


def _search(conn: ldap3.Connection, target: _Target, base: str, search_filter: str, *,
            scope: Literal["BASE", "LEVEL", "SUBTREE"], attributes: list[str], size_limit: int) -> list[dict[str, Any]]:
    try:
        conn.search(base, search_filter, search_scope=scope, dereference_aliases=ldap3.DEREF_NEVER,
                    attributes=attributes, size_limit=size_limit, time_limit=max(1, math.ceil(target.timeout)))
    except LDAPInvalidFilterError as exc:
        raise _Failure(f"{search_filter} is not a valid LDAP filter (RFC 4515): {exc}", stage="config") from exc
    except (LDAPException, OSError) as exc:
        raise _Failure(f"search under {base} failed at {target.url}: {_describe(exc)}", stage="connect") from exc
    code, described = _result(conn)
    if code not in (0, 4):  # success, sizeLimitExceeded (the entries so far are returned)
        raise _Failure(f"search under {base} failed: {described}", stage="search", result=code)
    return [entry for entry in conn.response or [] if entry.get("type") == "searchResEntry"]


def _exists(conn: ldap3.Connection, target: _Target, field: str, dn: str) -> None:
    try:
        _search(conn, target, dn, "(objectClass=*)", scope="BASE", attributes=["1.1"], size_limit=1)
    except _Failure as exc:
        if exc.result == 32:  # noSuchObject: absent, or hidden from this account by the ACLs
            raise _Failure(f"ldap.{field}: {dn} does not exist, or the service account may not read it: "
                           "noSuchObject (32)", stage="search", result=32) from exc
        raise


def _root_dse(conn: ldap3.Connection, target: _Target) -> dict[str, list[str]]:
    """The root DSE (RFC 4512 §5.1), when the server shows it; nothing when it does not."""
    names = ["namingContexts", "supportedLDAPVersion", "supportedExtension", "vendorName", "vendorVersion"]
    try:
        entries = _search(conn, target, "", "(objectClass=*)", scope="BASE", attributes=names, size_limit=1)
    except _Failure as exc:
        if exc.stage == "connect":
            raise
        return {}
    return _decoded(entries[0], names) if entries else {}


def _decoded(entry: Mapping[str, Any], names: Collection[str]) -> dict[str, list[str]]:
    """The entry's values of ``names`` (keyed as asked, matched without case), UTF-8 text only."""
    raw = {str(k).lower(): v for k, v in (entry.get("raw_attributes") or {}).items()}
    found: dict[str, list[str]] = {}
    for name in names:
        values = []
        for value in raw.get(name.lower(), []):
            try:
                values.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
            except UnicodeDecodeError:
                continue  # binary (a photo, objectGUID): not a profile value
        if values:
            found[name] = values
    return found


@idp_call("ldap")
def check_service_account(settings: Mapping[str, Any], secrets: Mapping[str, str], *,
                          policy: OutboundPolicy | None = None) -> dict[str, Any]:
    """Connect, bind as the service account, read the root DSE and check the base DNs.

    Returns what becomes the connection's ``discovered``; raises ``LdapError`` saying what failed.
    """
    policy = policy or OutboundPolicy()
    try:
        config = _settings(settings, secrets)
        target = _target(config, policy)
        who = f"the service account {config.bind_dn}" if config.bind_dn else "an anonymous client"
        with _bound(target, config.bind_dn, config.bind_password, who=who) as conn:
            root = _root_dse(conn, target)
            checked = {"base_dn": config.base_dn, "user_search_base": config.user_search_base,
                       "group_search_base": config.group_search_base}
            for field, dn in checked.items():
                if dn:
                    _exists(conn, target, field, dn)
            # The user search as a sign-in runs it, for a name nobody has: the filter must be one the
            # directory accepts, under a base the service account may search.
            probe = user_filter(config.user_search_filter, f"keyhall-check-{token_hex(8)}")
            try:
                _search(conn, target, config.user_search_base or config.base_dn, probe, scope="SUBTREE",
                        attributes=["1.1"], size_limit=1)
            except _Failure as exc:
                raise _Failure(f"ldap.user_search_filter: {exc.message}", stage=exc.stage, result=exc.result) from exc
    except InvalidInput as exc:
        raise LdapError(exc.message, details={"stage": "config"}) from exc
    except _Failure as exc:
        raise LdapError(exc.message, details={"stage": exc.stage, **({"result_code": exc.result}
                                                                     if exc.result is not None else {})}) from exc
    extensions = root.get("supportedExtension", [])
    vendor = " ".join(root.get("vendorName", []) + root.get("vendorVersion", [])) or None
    return {
        "contacted": True, "server": target.url, "security": str(target.security),
        "tls_verified": target.security is not LdapSecurity.NONE,
        "bind": "service_account" if config.bind_dn else "anonymous",
        "base_dn_exists": True, "user_search_base_exists": True, "user_search_checked": True,
        **({"group_search_base_exists": True} if config.group_search_base else {}),
        "naming_contexts": root.get("namingContexts", []), "vendor": vendor,
        "supported_ldap_versions": root.get("supportedLDAPVersion", []),
        "starttls_supported": "1.3.6.1.4.1.1466.20037" in extensions if extensions else None,  # RFC 4511 §4.14.1
    }


def _requested(attributes: Collection[str], config: LdapSettings) -> list[str]:
    names = [a for a in (*attributes, config.group_member_attribute, "entryUUID") if _ATTRIBUTE.fullmatch(a)]
    return list(dict.fromkeys(names))[:64]


def _bind_refusal(exc: _Failure) -> LdapLoginError:
    if exc.result == 49 and not _AD_ACCOUNT_UNUSABLE.search(exc.diagnostic):  # invalidCredentials
        return LdapLoginError("the directory refused the password", reason="invalid_credentials")
    if exc.result == 49 or exc.result in _LOCKED_RESULTS:
        return LdapLoginError(f"the directory refused the account: {exc.message}", reason="account_locked")
    return LdapLoginError(exc.message, reason="directory_unavailable")


def authenticate(settings: Mapping[str, Any], secrets: Mapping[str, str], username: str, password: str, *,
                 attributes: Collection[str] = DEFAULT_USER_ATTRIBUTES,
                 policy: OutboundPolicy | None = None) -> LdapIdentity:
    """Who ``username`` with ``password`` is in the directory; raises ``LdapLoginError``."""
    if not password or not password.strip():
        raise LdapLoginError("no password was given (an unauthenticated bind is not a sign-in, RFC 4513 §5.1.2)",
                             reason="empty_password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise LdapLoginError("the password is longer than any the directory accepts", reason="invalid_credentials")
    policy = policy or OutboundPolicy()
    try:
        config = _settings(settings, secrets)
        search_filter = user_filter(config.user_search_filter, username)
    except InvalidInput as exc:
        if exc.field == "username":
            raise LdapLoginError(f"no directory entry can match that username: {exc.message}",
                                 reason="user_not_found") from exc
        raise LdapLoginError(exc.message, reason="directory_unavailable") from exc
    except _Failure as exc:
        raise LdapLoginError(exc.message, reason="directory_unavailable") from exc
    requested = _requested(attributes, config)
    try:
        target = _target(config, policy)
        who = f"the service account {config.bind_dn}" if config.bind_dn else "an anonymous client"
        with _bound(target, config.bind_dn, config.bind_password, who=who) as service:
            entries = _search(service, target, config.user_search_base or config.base_dn, search_filter,
                              scope="SUBTREE", attributes=requested, size_limit=2)
            if not entries:
                raise LdapLoginError("no directory entry matches the username", reason="user_not_found")
            if len(entries) > 1:
                raise LdapLoginError(f"more than one directory entry matches {search_filter}",
                                     reason="ambiguous_user")
            dn = str(entries[0]["dn"])
            try:
                with _bound(target, dn, password, who=f"the user {dn}"):
                    pass
            except _Failure as exc:
                if exc.stage == "bind":
                    raise _bind_refusal(exc) from exc
                raise
            found = _decoded(entries[0], requested)
            groups = _groups(service, target, config, dn, username, found)
    except _Failure as exc:
        raise LdapLoginError(exc.message, reason="directory_unavailable") from exc
    return LdapIdentity(dn=dn, attributes=found, groups=groups)


def _groups(service: ldap3.Connection, target: _Target, config: LdapSettings, dn: str, username: str,
            found: Mapping[str, list[str]]) -> list[str]:
    """The user's groups (DNs): by a group search when one is configured, else the member attribute."""
    if not (config.group_search_filter or config.group_search_base):
        return list(dict.fromkeys(found.get(config.group_member_attribute, [])))[:MAX_GROUPS]
    try:
        search_filter = group_filter(config.group_search_filter or _DEFAULT_GROUP_FILTER, dn, username=username)
    except InvalidInput as exc:
        raise _Failure(exc.message, stage="config") from exc
    entries = _search(service, target, config.group_search_base or config.base_dn, search_filter,
                      scope="SUBTREE", attributes=["1.1"], size_limit=MAX_GROUPS)
    return list(dict.fromkeys(str(entry["dn"]) for entry in entries))
