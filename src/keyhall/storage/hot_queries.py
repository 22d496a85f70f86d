"""The queries on the request path, in one place.

The repositories build these statements here (or, for a lookup by primary key, call
``Session.get``, whose statement is :func:`by_primary_key` of the same model); the ones every API
call or token request runs are built once, with bound parameters, and run as plain Core through
:func:`run` (the ORM's per-statement work cost more than SQLite's). And
``tests/integration/test_query_plans.py`` runs ``EXPLAIN`` on every entry of :data:`HOT_QUERIES`
on SQLite and PostgreSQL and fails when one reads a whole table: a query or index changed here
is checked where it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Executable, Select, Table, bindparam, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from keyhall.storage.models import (
    ApiKeyRow,
    ApplicationRow,
    AuditEventRow,
    AuthorizationCodeRow,
    CertificateWatchRow,
    ConnectionDomainRow,
    ConnectionRow,
    DomainRow,
    EventRow,
    LoginTransactionRow,
    OrganizationRow,
    RefreshTokenRow,
    RevokedAccessTokenRow,
    SamlReplayRow,
    SamlSessionRow,
    SigningKeyRow,
    TokenFamilyRow,
    UserRow,
    WebhookEndpointRow,
)
from keyhall.storage.prepared import StatementResult
from keyhall.storage.unit_sessions import CoreFirstSession


def by_primary_key(model: Any, *key: Any) -> Select[Any]:
    """What ``Session.get(model, key)`` runs when the row is not in the session yet."""
    columns = list(model.__table__.primary_key.columns)
    return select(model).where(*(column == value for column, value in zip(columns, key, strict=True)))


def run(session: Session, statement: Executable, **params: Any) -> StatementResult:
    """Run a prebuilt statement of this module (bound parameters named in ``params``) on the
    session's connection as plain Core: no ORM compile step, no entity loading, no identity map.
    What the session holds is flushed first, as the ORM's own autoflush would. A unit of work's
    session (:class:`~keyhall.storage.unit_sessions.CoreFirstSession`) runs it on its connection directly."""
    if isinstance(session, CoreFirstSession):
        return session.execute_core(statement, params)
    session.flush()
    return session.connection().execute(statement, params)


#: Built once (only their parameters change): the per-request statements of an API call.
API_KEY_BY_ID = select(ApiKeyRow.__table__).where(ApiKeyRow.__table__.c.id == bindparam("id"))
ORGANIZATION_BY_ID = select(OrganizationRow.__table__).where(OrganizationRow.__table__.c.id == bindparam("value"))
ORGANIZATION_BY_SLUG = select(OrganizationRow.__table__).where(
    OrganizationRow.__table__.c.slug == bindparam("value"))
CONNECTION_VERSION_IN_ORGANIZATION = select(ConnectionRow.version).where(
    ConnectionRow.id == bindparam("id"), ConnectionRow.organization_id == bindparam("organization_id"))
CONNECTION_VERSION_IN_ORGANIZATION_FOR_UPDATE = CONNECTION_VERSION_IN_ORGANIZATION.with_for_update()
#: Every column but the primary key, each from the parameter of its own name; ``b_id`` and
#: ``b_version`` pick the row at the version the writer read.
_CONNECTIONS = cast(Table, ConnectionRow.__table__)
UPDATE_CONNECTION_AT_VERSION = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("b_id"), _CONNECTIONS.c.version == bindparam("b_version"))
    .values({column.name: bindparam(column.name, type_=column.type)
             for column in _CONNECTIONS.columns if not column.primary_key})
)


CONNECTION_VERSIONS_BY_DOMAIN = (
    select(_CONNECTIONS.c.id, _CONNECTIONS.c.version)
    .join(ConnectionDomainRow.__table__, ConnectionDomainRow.__table__.c.connection_id == _CONNECTIONS.c.id)
    .where(ConnectionDomainRow.__table__.c.domain == bindparam("domain"), _CONNECTIONS.c.status == bindparam("status"))
    .order_by(_CONNECTIONS.c.created_at, _CONNECTIONS.c.id))
CONNECTIONS_WITH_STATUS = (select(_CONNECTIONS)
                           .where(_CONNECTIONS.c.id.in_(bindparam("ids", expanding=True)),
                                  _CONNECTIONS.c.status == bindparam("status"))
                           .order_by(_CONNECTIONS.c.created_at))
DOMAINS_OF_CONNECTIONS = (
    select(ConnectionDomainRow.__table__.c.connection_id, ConnectionDomainRow.__table__.c.domain)
    .where(ConnectionDomainRow.__table__.c.connection_id.in_(bindparam("ids", expanding=True)))
    .order_by(ConnectionDomainRow.__table__.c.position))


def connection_in_organization(organization_id: str, connection_id: str) -> Select[ConnectionRow]:
    return select(ConnectionRow).where(ConnectionRow.id == connection_id,
                                       ConnectionRow.organization_id == organization_id)


CONNECTION_VERSION = select(ConnectionRow.version).where(ConnectionRow.id == bindparam("id"))
USER_BY_ID = select(cast(Table, UserRow.__table__)).where(UserRow.__table__.c.id == bindparam("id"))
_SIGNING_KEYS = cast(Table, SigningKeyRow.__table__)
ACTIVE_SIGNING_KEY = (select(_SIGNING_KEYS)
                      .where(_SIGNING_KEYS.c.alg == bindparam("alg"), _SIGNING_KEYS.c.retired_at.is_(None))
                      .order_by(_SIGNING_KEYS.c.created_at.desc()).limit(1))
#: The JWKS: public halves only (no sealed private key read, none opened). Not in HOT_QUERIES: the
#: table holds a few rows by design (one active key per algorithm, retired ones until their tokens
#: expire), which SQLite reads whole whatever the index.
PUBLISHED_SIGNING_KEYS = (select(_SIGNING_KEYS.c.kid, _SIGNING_KEYS.c.alg, _SIGNING_KEYS.c.public_jwk,
                                 _SIGNING_KEYS.c.retired_at)
                          .where(or_(_SIGNING_KEYS.c.retired_at.is_(None),
                                     _SIGNING_KEYS.c.published_until > bindparam("now")))
                          .order_by(_SIGNING_KEYS.c.created_at))
APPLICATION_VERSION = select(ApplicationRow.version).where(ApplicationRow.id == bindparam("id"))
_CODES = cast(Table, AuthorizationCodeRow.__table__)
#: Marks a code used and returns it, in one statement; no row when it was used before (or is unknown).
USE_CODE = (update(_CODES).where(_CODES.c.code_hash == bindparam("b_code_hash"), _CODES.c.used_at.is_(None))
            .values(used_at=bindparam("b_now", type_=_CODES.c.used_at.type)).returning(*_CODES.columns))
INSERT_CODE = insert(_CODES)
CODE_BY_HASH = select(_CODES).where(_CODES.c.code_hash == bindparam("b_code_hash"))
SET_CODE_GRANT = (update(_CODES).where(_CODES.c.code_hash == bindparam("b_code_hash"))
                  .values(grant=bindparam("b_grant", type_=_CODES.c.grant.type)))
_FAMILIES = cast(Table, TokenFamilyRow.__table__)
INSERT_TOKEN_FAMILY = insert(_FAMILIES)
TOKEN_FAMILY_BY_ID = select(_FAMILIES).where(_FAMILIES.c.id == bindparam("id"))
_REVOKED_ACCESS_TOKENS = cast(Table, RevokedAccessTokenRow.__table__)
ACCESS_TOKEN_REVOKED = select(_REVOKED_ACCESS_TOKENS.c.jti).where(_REVOKED_ACCESS_TOKENS.c.jti == bindparam("jti"))
INSERT_REFRESH_TOKEN = insert(cast(Table, RefreshTokenRow.__table__))
INSERT_SAML_SESSION = insert(cast(Table, SamlSessionRow.__table__))


def connection_ids_by_domain(domain: str) -> Select[str]:
    """Home-realm discovery: which connections, of any organization, route this email domain."""
    return select(ConnectionDomainRow.connection_id).where(ConnectionDomainRow.domain == domain)


def domains_routed_in_organization(organization_id: str, domains: Sequence[str]) -> Select[str]:
    return select(ConnectionDomainRow.domain).where(ConnectionDomainRow.organization_id == organization_id,
                                                    ConnectionDomainRow.domain.in_(list(domains)))


INSERT_AUDIT_EVENT = insert(cast(Table, AuditEventRow.__table__))
_EVENTS = cast(Table, EventRow.__table__)
#: The event log's sequence is the database's to give: the insert returns it.
INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.sequence)
_WEBHOOK_ENDPOINTS = cast(Table, WebhookEndpointRow.__table__)
ENABLED_WEBHOOK_SUBSCRIPTIONS = select(_WEBHOOK_ENDPOINTS.c.id, _WEBHOOK_ENDPOINTS.c.event_types).where(
    _WEBHOOK_ENDPOINTS.c.enabled.is_(True))
_DOMAINS = cast(Table, DomainRow.__table__)
DOMAIN_CLAIM = select(_DOMAINS).where(_DOMAINS.c.name == bindparam("name"),
                                      _DOMAINS.c.organization_id == bindparam("organization_id"))
_USERS = cast(Table, UserRow.__table__)
USER_BY_SUBJECT = select(_USERS).where(_USERS.c.connection_id == bindparam("connection_id"),
                                       _USERS.c.subject == bindparam("subject"))
#: The columns a core ``User`` holds (the SCIM ones are the directory repository's), but ``id``
#: and ``version``.
USER_WRITTEN = ("organization_id", "connection_id", "subject", "email", "email_verified", "name", "given_name",
                "family_name", "username", "picture", "locale", "phone_number", "groups", "password_hash",
                "disabled", "created_at", "updated_at", "last_login_at", "directory_id")
#: A user's ``USER_WRITTEN`` columns from the parameters of their own names; the version goes up
#: by one and comes back. ``b_id`` picks the row, and ``b_version`` too in the checked one.
_USER_VALUES = {name: bindparam(name, type_=_USERS.c[name].type) for name in USER_WRITTEN}
INSERT_USER = insert(_USERS)
UPDATE_USER = (update(_USERS).where(_USERS.c.id == bindparam("b_id"))
               .values({**_USER_VALUES, "version": _USERS.c.version + 1}).returning(_USERS.c.version))
UPDATE_USER_AT_VERSION = (update(_USERS).where(_USERS.c.id == bindparam("b_id"),
                                               _USERS.c.version == bindparam("b_version"))
                          .values({**_USER_VALUES, "version": _USERS.c.version + 1}).returning(_USERS.c.version))
_TRANSACTIONS = cast(Table, LoginTransactionRow.__table__)
LOGIN_TRANSACTION_BY_ID = select(_TRANSACTIONS).where(_TRANSACTIONS.c.id == bindparam("id"))
INSERT_LOGIN_TRANSACTION = insert(_TRANSACTIONS)
SET_LOGIN_TRANSACTION_DATA = (update(_TRANSACTIONS).where(_TRANSACTIONS.c.id == bindparam("b_id"))
                              .values(data=bindparam("b_data", type_=_TRANSACTIONS.c.data.type)))
_CERTIFICATE_WATCH = cast(Table, CertificateWatchRow.__table__)
#: What an ACS needs of a SAML connection's SP key rollover (its sealed keys decrypt too).
SP_ROLLOVER = select(_CERTIFICATE_WATCH.c.sealed_sp_keys, _CERTIFICATE_WATCH.c.sp_next_certificate,
                     _CERTIFICATE_WATCH.c.sp_next_activates_at, _CERTIFICATE_WATCH.c.sp_previous_until).where(
    _CERTIFICATE_WATCH.c.connection_id == bindparam("connection_id"))
#: Spends a live login transaction of a kind and returns it, in one statement; no row when it was
#: spent before, expired, is of another kind or unknown.
CONSUME_LOGIN_TRANSACTION = (
    update(_TRANSACTIONS)
    .where(_TRANSACTIONS.c.id == bindparam("b_id"), _TRANSACTIONS.c.kind == bindparam("b_kind"),
           _TRANSACTIONS.c.consumed_at.is_(None),
           _TRANSACTIONS.c.expires_at > bindparam("b_now", type_=_TRANSACTIONS.c.expires_at.type))
    .values(consumed_at=bindparam("b_now", type_=_TRANSACTIONS.c.consumed_at.type))
    .returning(*_TRANSACTIONS.columns))

_REPLAYS = cast(Table, SamlReplayRow.__table__)


def _remember_replay(dialect: Any) -> Executable:
    """Insert an assertion id, or take over its row when that one has expired (``b_now``); the
    row comes back either way, and nothing when an unexpired one holds the id: a replay."""
    statement = dialect.insert(_REPLAYS)
    return cast(Executable, statement.on_conflict_do_update(
        index_elements=[_REPLAYS.c.connection_id, _REPLAYS.c.assertion_id],
        set_={"expires_at": statement.excluded.expires_at},
        where=_REPLAYS.c.expires_at < bindparam("b_now", type_=_REPLAYS.c.expires_at.type))
        .returning(_REPLAYS.c.assertion_id))


_REMEMBER_REPLAY = {"sqlite": _remember_replay(sqlite), "postgresql": _remember_replay(postgresql)}


def remember_replay(dialect_name: str) -> Executable:
    """The replay cache's one statement for this database (SQLite and PostgreSQL both upsert)."""
    return _REMEMBER_REPLAY[dialect_name]


#: The active keys of two algorithms (an ID token's and an access token's) in one read.
#: Two plain parameters (the same algorithm twice when one key signs both tokens): an expanding
#: ``IN`` is rendered again at every execution, some 25 us a token request.
_TWO_ALGS = [bindparam(name, type_=_SIGNING_KEYS.c.alg.type) for name in ("alg_a", "alg_b")]
ACTIVE_SIGNING_KEYS = (select(_SIGNING_KEYS)
                       .where(_SIGNING_KEYS.c.alg.in_(_TWO_ALGS),
                              _SIGNING_KEYS.c.retired_at.is_(None))
                       .order_by(_SIGNING_KEYS.c.created_at.desc()))

_ORGANIZATIONS = cast(Table, OrganizationRow.__table__)
#: The label each organization column takes beside a user's in :data:`USER_WITH_ORGANIZATION`.
ORGANIZATION_LABELS = {column.name: f"organization__{column.name}" for column in _ORGANIZATIONS.columns}
#: A user and its organization in one read (what a refresh or userinfo call checks still stands).
USER_WITH_ORGANIZATION = (
    select(_USERS, *(column.label(ORGANIZATION_LABELS[column.name]) for column in _ORGANIZATIONS.columns))
    .join(_ORGANIZATIONS, _ORGANIZATIONS.c.id == _USERS.c.organization_id)
    .where(_USERS.c.id == bindparam("id")))


_ID = "0b9d7c7e-3f1c-4c55-9f0e-2f6f5f0d8c11"

#: Every hot query with sample arguments: name -> the statement.
HOT_QUERIES: dict[str, Callable[[], Select[*tuple[Any, ...]]]] = {
    "API key by id": lambda: API_KEY_BY_ID.params(id="k" * 22),
    "organization by id": lambda: ORGANIZATION_BY_ID.params(value=_ID),
    "organization by slug": lambda: ORGANIZATION_BY_SLUG.params(value="acme"),
    "connection by id": lambda: by_primary_key(ConnectionRow, _ID),
    "connection by id in its organization": lambda: connection_in_organization(_ID, _ID),
    "connection version by id in its organization": lambda: CONNECTION_VERSION_IN_ORGANIZATION.params(
        id=_ID, organization_id=_ID),
    "connection version by id in its organization, locked": lambda: (
        CONNECTION_VERSION_IN_ORGANIZATION_FOR_UPDATE.params(id=_ID, organization_id=_ID)),
    "active connection versions by domain": lambda: CONNECTION_VERSIONS_BY_DOMAIN.params(
        domain="example.com", status="active"),
    "application version by client_id": lambda: APPLICATION_VERSION.params(id="client"),
    "authorization code by hash, prebuilt": lambda: CODE_BY_HASH.params(b_code_hash="h" * 43),
    "domains of connections": lambda: DOMAINS_OF_CONNECTIONS.params(ids=[_ID, _ID]),
    "connections by domain": lambda: connection_ids_by_domain("example.com"),
    "active connections by ids": lambda: CONNECTIONS_WITH_STATUS.params(ids=[_ID, _ID], status="active"),
    "routed domains in an organization": lambda: domains_routed_in_organization(_ID, ["example.com", "example.org"]),
    "domain claim by organization and domain": lambda: DOMAIN_CLAIM.params(organization_id=_ID,
                                                                             name="example.com"),
    "user by connection and subject": lambda: USER_BY_SUBJECT.params(connection_id=_ID, subject="subject"),
    "user by id": lambda: USER_BY_ID.params(id=_ID),
    "connection version by id": lambda: CONNECTION_VERSION.params(id=_ID),
    "active signing key by algorithm": lambda: ACTIVE_SIGNING_KEY.params(alg="RS256"),
    "refresh token by hash": lambda: by_primary_key(RefreshTokenRow, "h" * 43),
    "token family by id": lambda: by_primary_key(TokenFamilyRow, _ID),
    "login transaction by id": lambda: LOGIN_TRANSACTION_BY_ID.params(id="t" * 43),
    "SP key rollover by connection": lambda: SP_ROLLOVER.params(connection_id=_ID),
    "authorization code by hash": lambda: by_primary_key(AuthorizationCodeRow, "h" * 43),
    "active signing keys of algorithms": lambda: ACTIVE_SIGNING_KEYS.params(alg_a="RS256", alg_b="ES256"),
    "user with its organization": lambda: USER_WITH_ORGANIZATION.params(id=_ID),
    "token family by id, prebuilt": lambda: TOKEN_FAMILY_BY_ID.params(id=_ID),
    "revoked access token by jti": lambda: ACCESS_TOKEN_REVOKED.params(jti=_ID),
}


_DOMAINS = cast(Table, DomainRow.__table__)
#: Whether another organization verified a domain (a connection's update checks each domain it routes).
DOMAIN_VERIFIED_ELSEWHERE = select(_DOMAINS.c.id).where(
    _DOMAINS.c.name == bindparam("name"), _DOMAINS.c.status == bindparam("status"),
    _DOMAINS.c.organization_id != bindparam("organization_id")).limit(1)
HOT_QUERIES["domain verified by another organization"] = lambda: DOMAIN_VERIFIED_ELSEWHERE.params(
    name="example.com", status="verified", organization_id=_ID)
