"""The typed records of a sign-in in progress, and the one place they meet their stored form.

A login transaction (``core.transactions.LoginTransaction``) is stored as a ``kind`` and a JSON
``data`` dict, so that any instance can finish it. Each kind has a record here:

- ``AuthorizeRecord`` (``authorize``): the browser's sign-in: the product's request, the forms'
  CSRF token, the product's ``max_age``, and what the routing pinned;
- ``OidcTrip`` (``oidc``): a trip to an OpenID Connect IdP: nonce, PKCE verifier, redirect URI;
- ``SamlTrip`` (``saml``): a trip to a SAML IdP: the AuthnRequest's id;
- ``SamlHandoff`` (``saml_done``): the ACS's single-use step to the completion page: who signed
  in and how;
- ``SignInTestRecord`` (``test_sign_in``) and ``SignInTestTicket`` (``test_ticket``): a test sign-in, and the
  single-use ticket in its URL.

``to_dict``/``from_dict`` below are the only code that reads or writes a transaction's ``data``
(the keys are the stored format, unchanged); everything else goes through ``Record.of(tx)``,
``new_record_transaction`` and ``rewrite``. Only ``keyhall.login`` uses them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar

from keyhall.core.ports import TransactionRepository
from keyhall.core.tokens import SamlSubject
from keyhall.core.transactions import LOGIN_TTL, LoginTransaction, new_transaction
from keyhall.provider.authorize import AuthorizeRequest


class Kind(StrEnum):
    """The stored ``kind`` of each record."""

    AUTHORIZE = "authorize"
    OIDC = "oidc"
    SAML = "saml"
    SAML_HANDOFF = "saml_done"
    SAML_LOGOUT = "saml_logout"
    TEST_SIGN_IN = "test_sign_in"
    TEST_TICKET = "test_ticket"


@dataclass(frozen=True)
class Reauthentication:
    """What the product asked about the freshness of the person's authentication, carried to the
    IdP trip (``login.identity.check_reauthentication`` checks the answer against it)."""

    force: bool = False  # prompt=login: the IdP must authenticate the person again
    max_age: int | None = None  # seconds the IdP's authentication may be old

    @classmethod
    def of(cls, parent: LoginTransaction) -> Reauthentication:
        """What the product asked of the authorize transaction ``parent`` (``prompt=login``, ``max_age``);
        a test sign-in (no product) asks nothing."""
        if parent.kind == Kind.TEST_SIGN_IN:
            return cls()
        record = AuthorizeRecord.of(parent)
        return cls(force=bool(record.request.prompt and "login" in record.request.prompt.split()),
                   max_age=record.max_age)

    @property
    def asked(self) -> bool:
        return self.force or self.max_age is not None

    def to_dict(self) -> dict[str, Any]:
        return {"force": self.force, "max_age": self.max_age}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Reauthentication:
        data = data or {}
        return cls(force=bool(data.get("force")), max_age=_int_or_none(data.get("max_age")))


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Record:
    """What every record shares: its kind, and reading it back from a transaction."""

    KIND: ClassVar[Kind]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    @classmethod
    def of(cls, tx: LoginTransaction) -> Self:
        """The record a transaction of this kind stores. Raises ValueError for another kind or
        stored data this record cannot read."""
        if tx.kind != cls.KIND:
            raise ValueError(f"a {tx.kind!r} transaction is not a {cls.KIND.value!r} record")
        try:
            return cls.from_dict(tx.data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"unreadable {cls.KIND.value!r} record") from exc

    @classmethod
    def maybe_of(cls, tx: LoginTransaction | None) -> Self | None:
        """``of(tx)``, or None when there is no transaction, it is of another kind, or unreadable."""
        if tx is None:
            return None
        try:
            return cls.of(tx)
        except ValueError:
            return None


@dataclass(frozen=True)
class AuthorizeRecord(_Record):
    """The product's request, the forms' CSRF token, the product's ``max_age``, and the pin: the
    connections the routing allowed, and the organizations whose local accounts may sign in with a
    password (None: any; empty: password sign-in is not allowed)."""

    KIND: ClassVar[Kind] = Kind.AUTHORIZE

    request: AuthorizeRequest
    csrf: str
    max_age: int | None = None
    connections: tuple[str, ...] = ()
    password_organizations: tuple[str, ...] | None = ()

    @classmethod
    def new(cls, request: AuthorizeRequest, *, max_age: int | None) -> AuthorizeRecord:
        """Nothing pinned yet, but the connection the request names (an IdP-initiated SAML sign-in)."""
        return cls(request=request, csrf=secrets.token_urlsafe(24), max_age=max_age,
                   connections=(request.connection,) if request.connection else ())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        pin = data.get("pin") or {}
        orgs = pin.get("password_organizations", [])
        return cls(request=AuthorizeRequest.from_dict(data["request"]), csrf=str(data.get("csrf", "")),
                   max_age=_int_or_none(data.get("max_age")),
                   connections=tuple(str(c) for c in pin.get("connections") or []),
                   password_organizations=None if orgs is None else tuple(str(o) for o in orgs))

    def to_dict(self) -> dict[str, Any]:
        orgs = self.password_organizations
        return {"request": self.request.as_dict(), "csrf": self.csrf, "max_age": self.max_age,
                "pin": {"connections": list(self.connections),
                        "password_organizations": None if orgs is None else list(orgs)}}

    def pinned(self, connections: list[str], password_organizations: list[str] | None) -> AuthorizeRecord:
        return replace(self, connections=tuple(connections),
                       password_organizations=None if password_organizations is None
                       else tuple(password_organizations))


@dataclass(frozen=True)
class OidcTrip(_Record):
    """A trip to an OpenID Connect IdP: the transaction's id is the ``state``."""

    KIND: ClassVar[Kind] = Kind.OIDC

    connection_id: str
    nonce: str
    verifier: str  # the PKCE code verifier (RFC 7636 §4.1)
    redirect_uri: str
    reauth: Reauthentication = Reauthentication()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(connection_id=str(data["connection_id"]), nonce=str(data["nonce"]),
                   verifier=str(data["verifier"]), redirect_uri=str(data["redirect_uri"]),
                   reauth=Reauthentication.from_dict(data.get("reauth")))

    def to_dict(self) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "nonce": self.nonce, "verifier": self.verifier,
                "redirect_uri": self.redirect_uri, "reauth": self.reauth.to_dict()}


@dataclass(frozen=True)
class SamlTrip(_Record):
    """A trip to a SAML IdP: the transaction's id is the RelayState; ``request_id`` the
    AuthnRequest's ID, which the Response's ``InResponseTo`` must name."""

    KIND: ClassVar[Kind] = Kind.SAML

    connection_id: str
    request_id: str
    reauth: Reauthentication = Reauthentication()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(connection_id=str(data["connection_id"]), request_id=str(data["request_id"]),
                   reauth=Reauthentication.from_dict(data.get("reauth")))

    def to_dict(self) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "request_id": self.request_id, "reauth": self.reauth.to_dict()}


@dataclass(frozen=True)
class SamlHandoff(_Record):
    """The ACS's step to the completion page: the provisioned user and how the IdP authenticated
    them (``amr``, ``acr``, ``auth_time``), as the ACS validated it."""

    KIND: ClassVar[Kind] = Kind.SAML_HANDOFF

    connection_id: str
    user_id: str
    amr: tuple[str, ...] = ("ext",)
    acr: str | None = None
    auth_time: datetime | None = None
    subject: SamlSubject | None = None  # the assertion's NameID/SessionIndex, kept with the session

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        authn = data.get("authn") or {}
        acr = authn.get("acr")
        return cls(connection_id=str(data["connection_id"]), user_id=str(data["user_id"]),
                   amr=tuple(str(v) for v in authn.get("amr") or ["ext"]),
                   acr=acr if isinstance(acr, str) else None, auth_time=timestamp(authn.get("auth_time")),
                   subject=SamlSubject.from_dict(data.get("subject")))

    def to_dict(self) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "user_id": self.user_id, "authn": {
            "amr": list(self.amr), "acr": self.acr,
            "auth_time": self.auth_time.timestamp() if self.auth_time else None},
            **({"subject": self.subject.to_dict()} if self.subject else {})}


@dataclass(frozen=True)
class SamlLogoutTrip(_Record):
    """Keyhall's LogoutRequest on its way to the IdP (the transaction's id is the RelayState):
    ``request_id`` the ID its LogoutResponse must answer, ``continue_to`` where the browser goes
    afterwards (the product's registered post-logout redirect URI, or None: the signed-out page)."""

    KIND: ClassVar[Kind] = Kind.SAML_LOGOUT

    connection_id: str
    request_id: str
    continue_to: str | None = None
    application: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(connection_id=str(data["connection_id"]), request_id=str(data["request_id"]),
                   continue_to=data.get("continue_to") if isinstance(data.get("continue_to"), str) else None,
                   application=data.get("application") if isinstance(data.get("application"), str) else None)

    def to_dict(self) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "request_id": self.request_id,
                "continue_to": self.continue_to, "application": self.application}


@dataclass(frozen=True)
class SignInTestRecord(_Record):
    """A test sign-in through one connection (``login.sign_in_test``): it stands where a product's
    authorize transaction would, but no code is issued; its id is the browser's secret (cookie)."""

    KIND: ClassVar[Kind] = Kind.TEST_SIGN_IN

    organization_id: str
    connection_id: str
    actor: str
    csrf: str = ""  # the LDAP form's CSRF token

    @classmethod
    def new(cls, organization_id: str, connection_id: str, actor: str) -> SignInTestRecord:
        return cls(organization_id=organization_id, connection_id=connection_id, actor=actor,
                   csrf=secrets.token_urlsafe(24))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(organization_id=str(data["organization_id"]), connection_id=str(data["connection_id"]),
                   actor=str(data["actor"]), csrf=str(data.get("csrf", "")))

    def to_dict(self) -> dict[str, Any]:
        return {"organization_id": self.organization_id, "connection_id": self.connection_id, "actor": self.actor,
                "csrf": self.csrf}


@dataclass(frozen=True)
class SignInTestTicket(_Record):
    """The single-use ticket in a test sign-in's URL; its parent is the ``SignInTestRecord``."""

    KIND: ClassVar[Kind] = Kind.TEST_TICKET

    connection_id: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(connection_id=str(data["connection_id"]))

    def to_dict(self) -> dict[str, Any]:
        return {"connection_id": self.connection_id}


def timestamp(value: Any) -> datetime | None:
    """A JWT NumericDate (``auth_time``) as a datetime; None when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


Record = AuthorizeRecord | OidcTrip | SamlTrip | SamlHandoff | SamlLogoutTrip | SignInTestRecord | SignInTestTicket
R = TypeVar("R", AuthorizeRecord, OidcTrip, SamlTrip, SamlHandoff, SamlLogoutTrip, SignInTestRecord, SignInTestTicket)


def new_record_transaction(record: Record, now: datetime, *, parent_id: str | None = None,
                           ttl: timedelta = LOGIN_TTL) -> LoginTransaction:
    """A new transaction storing ``record`` (the caller adds it to the repository)."""
    return new_transaction(record.KIND.value, record.to_dict(), now, parent_id=parent_id, ttl=ttl)


def rewrite(transactions: TransactionRepository, tx: LoginTransaction, record: R) -> None:
    """Store ``record`` as ``tx``'s data (in memory and in the repository); the caller commits."""
    if tx.kind != record.KIND:
        raise ValueError(f"a {tx.kind!r} transaction cannot store a {record.KIND.value!r} record")
    tx.data = record.to_dict()
    transactions.update_data(tx.id, tx.data)
