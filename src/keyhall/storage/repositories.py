"""SQLAlchemy implementations of the core's repositories, and the unit of work that holds them."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, exists, func, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from keyhall.core.api_keys import ApiKey
from keyhall.core.audit import AuditEvent
from keyhall.core.connections import Connection
from keyhall.core.domains import Domain
from keyhall.core.organizations import Organization, is_uuid
from keyhall.core.ports import ConnectionFilter, Page, Slice
from keyhall.core.vocabulary import (
    ConnectionStatus,
    DomainStatus,
    GroupProvisioning,
    Protocol,
    Provider,
    Role,
    UserProvisioning,
)
from keyhall.errors import Conflict, InvalidInput, ServiceUnavailable
from keyhall.security.secrets import SecretBox
from keyhall.storage import hot_queries
from keyhall.storage.models import (
    ApiKeyRow,
    AuditEventRow,
    ConnectionDomainRow,
    ConnectionRow,
    DomainRow,
    OrganizationRow,
)
from keyhall.storage.pagination import paginate
from keyhall.storage.session_ends import SqlSessionEnds

_paginate = paginate  # the name the repositories (here and in signin_repositories) page with


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc


class SqlOrganizations:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: OrganizationRow) -> Organization:
        return Organization(id=row.id, slug=row.slug, name=row.name,
                            admins_may_configure_sso=row.admins_may_configure_sso,
                            break_glass_email=row.break_glass_email, short_id=row.short_id,
                            default_connection_id=row.default_connection_id, created_at=row.created_at,
                            updated_at=row.updated_at)

    def get(self, id_or_slug: str) -> Organization | None:
        column = OrganizationRow.id if is_uuid(id_or_slug) else OrganizationRow.slug
        value = id_or_slug.lower() if is_uuid(id_or_slug) else id_or_slug
        row = self.session.scalar(select(OrganizationRow).where(column == value))
        return self._entity(row) if row else None

    def slug_taken(self, slug: str) -> bool:
        return bool(self.session.scalar(select(exists().where(OrganizationRow.slug == slug))))

    def add(self, organization: Organization) -> None:
        self.session.add(OrganizationRow(**vars(organization)))

    def save(self, organization: Organization) -> None:
        self.session.execute(update(OrganizationRow).where(OrganizationRow.id == organization.id)
                             .values(**{k: v for k, v in vars(organization).items() if k != "id"}))

    def delete(self, organization_id: str) -> None:
        for table in (ConnectionDomainRow, ConnectionRow, DomainRow, ApiKeyRow):
            self.session.execute(delete(table).where(table.organization_id == organization_id))
        self.session.execute(delete(OrganizationRow).where(OrganizationRow.id == organization_id))

    def list_page(self, *, limit: int, cursor: str | None) -> Page[Organization]:
        return _paginate(self.session, select(OrganizationRow), OrganizationRow.created_at, OrganizationRow.id,
                         limit=limit, cursor=cursor, convert=self._entity)


class SqlApiKeys:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: ApiKeyRow) -> ApiKey:
        return ApiKey(id=row.id, organization_id=row.organization_id, role=Role(row.role) if row.role else None,
                      secret_hash=row.secret_hash, name=row.name, created_at=row.created_at,
                      last_used_at=row.last_used_at, revoked_at=row.revoked_at)

    def get(self, key_id: str) -> ApiKey | None:
        row = self.session.get(ApiKeyRow, key_id)
        return self._entity(row) if row else None

    def add(self, key: ApiKey) -> None:
        values = vars(key).copy()
        values["role"] = str(key.role) if key.role else None
        self.session.add(ApiKeyRow(**values))

    def save(self, key: ApiKey) -> None:
        self.session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key.id).values(
            name=key.name, last_used_at=key.last_used_at, revoked_at=key.revoked_at))

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[ApiKey]:
        query = select(ApiKeyRow).where(ApiKeyRow.organization_id == organization_id)
        return _paginate(self.session, query, ApiKeyRow.created_at, ApiKeyRow.id, limit=limit, cursor=cursor,
                         convert=self._entity)


class SqlConnections:
    def __init__(self, session: Session, box: SecretBox):
        self.session = session
        self.box = box

    def _entity(self, row: ConnectionRow, domains: list[str]) -> Connection:
        return Connection(
            id=row.id, organization_id=row.organization_id, protocol=Protocol(row.protocol),
            provider=Provider(row.provider), name=row.name, display_name=row.display_name,
            status=ConnectionStatus(row.status), domains=domains, contacts=list(row.contacts),
            branding=dict(row.branding), is_verified=row.is_verified, verified_at=row.verified_at,
            disable_email_password=row.disable_email_password, sync_profile=row.sync_profile,
            require_verified_email=row.require_verified_email,
            user_provisioning=UserProvisioning(row.user_provisioning),
            group_provisioning=GroupProvisioning(row.group_provisioning),
            attribute_mappings=dict(row.attribute_mappings), group_mappings=list(row.group_mappings),
            settings=dict(row.settings), secrets=self.box.open(row.sealed_secrets),
            discovered=row.discovered, text_record=row.text_record, version=row.version,
            listing_id=row.sso_configuration_id,  # the column keeps its first name (no migration)
            created_at=row.created_at, updated_at=row.updated_at,
        )

    def _domains_of(self, ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            for row in self.session.scalars(hot_queries.domains_of_connections(ids)):
                found[row.connection_id].append(row.domain)
        return found

    def _values(self, conn: Connection) -> dict[str, Any]:
        return dict(
            organization_id=conn.organization_id, protocol=str(conn.protocol), provider=str(conn.provider),
            name=conn.name, display_name=conn.display_name, status=str(conn.status), contacts=conn.contacts,
            branding=conn.branding, is_verified=conn.is_verified, verified_at=conn.verified_at,
            disable_email_password=conn.disable_email_password, sync_profile=conn.sync_profile,
            require_verified_email=conn.require_verified_email,
            user_provisioning=str(conn.user_provisioning), group_provisioning=str(conn.group_provisioning),
            attribute_mappings=conn.attribute_mappings, group_mappings=conn.group_mappings,
            settings=conn.settings, sealed_secrets=self.box.seal(conn.secrets), discovered=conn.discovered,
            text_record=conn.text_record, sso_configuration_id=conn.listing_id,
            version=conn.version, created_at=conn.created_at,
            updated_at=conn.updated_at,
        )

    def _write_domains(self, conn: Connection) -> None:
        self.session.execute(delete(ConnectionDomainRow).where(ConnectionDomainRow.connection_id == conn.id))
        self.session.add_all(
            ConnectionDomainRow(connection_id=conn.id, domain=name, organization_id=conn.organization_id,
                                position=index)
            for index, name in enumerate(conn.domains)
        )

    def get(self, organization_id: str, connection_id: str, *, for_update: bool = False) -> Connection | None:
        if not is_uuid(connection_id):
            return None
        query = hot_queries.connection_in_organization(organization_id, connection_id.lower())
        row = self.session.scalar(query.with_for_update() if for_update else query)
        return self._entity(row, self._domains_of([row.id])[row.id]) if row else None

    def get_any(self, connection_id: str) -> Connection | None:
        if not is_uuid(connection_id):
            return None
        row = self.session.get(ConnectionRow, connection_id.lower())
        return self._entity(row, self._domains_of([row.id])[row.id]) if row else None

    def _matching(self, organization_id: str, where: ConnectionFilter) -> Select[ConnectionRow]:
        query = select(ConnectionRow).where(ConnectionRow.organization_id == organization_id)
        if where.protocols is not None:
            query = query.where(ConnectionRow.protocol.in_(where.protocols))
        if where.id is not None:
            query = query.where(ConnectionRow.id == (where.id.lower() if is_uuid(where.id) else ""))
        for column, value in ((ConnectionRow.name, where.name), (ConnectionRow.status, where.status),
                              (ConnectionRow.is_verified, where.is_verified),
                              (ConnectionRow.disable_email_password, where.disable_email_password)):
            if value is not None:
                query = query.where(column == value)
        return query

    def _with_domains(self, rows: list[ConnectionRow]) -> list[Connection]:
        domains = self._domains_of([row.id for row in rows])
        return [self._entity(row, domains[row.id]) for row in rows]

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None,
                  where: ConnectionFilter | None = None) -> Page[Connection]:
        query = self._matching(organization_id, where or ConnectionFilter())
        page: Page[ConnectionRow] = _paginate(self.session, query, ConnectionRow.created_at, ConnectionRow.id,
                                              limit=limit, cursor=cursor, convert=lambda row: row)
        return Page(items=self._with_domains(page.items), next_cursor=page.next_cursor)

    def list_slice(self, organization_id: str, where: ConnectionFilter, *, offset: int = 0,
                   limit: int | None = None) -> Slice[Connection]:
        query = self._matching(organization_id, where)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = list(self.session.scalars(query.order_by(ConnectionRow.created_at, ConnectionRow.id)
                                         .offset(offset).limit(limit)))
        return Slice(items=self._with_domains(rows), total=total)

    def by_domain(self, domain: str) -> list[Connection]:
        """Active connections, of any organization, that route this email domain."""
        ids = list(self.session.scalars(hot_queries.connection_ids_by_domain(domain.lower())))
        if not ids:
            return []
        rows = list(self.session.scalars(hot_queries.connections_with_status(ids, str(ConnectionStatus.ACTIVE))))
        domains = self._domains_of([r.id for r in rows])
        return [self._entity(r, domains[r.id]) for r in rows]

    def name_taken(self, organization_id: str, name: str, *, exclude_id: str | None) -> bool:
        cond: list[ColumnElement[bool]] = [ConnectionRow.organization_id == organization_id,
                                           ConnectionRow.name == name]
        if exclude_id:
            cond.append(ConnectionRow.id != exclude_id)
        return bool(self.session.scalar(select(exists().where(*cond))))

    def domains_claimed(self, organization_id: str, domains: Sequence[str], *, exclude_id: str | None) -> list[str]:
        if not domains:
            return []
        query = hot_queries.domains_routed_in_organization(organization_id, domains)
        if exclude_id:
            query = query.where(ConnectionDomainRow.connection_id != exclude_id)
        return sorted(set(self.session.scalars(query)))

    def add(self, connection: Connection) -> None:
        self.session.add(ConnectionRow(id=connection.id, **self._values(connection)))
        _flush(self.session)
        self._write_domains(connection)
        _flush(self.session)

    def save(self, connection: Connection, *, expected_version: int) -> bool:
        result = self.session.execute(
            update(ConnectionRow)
            .where(ConnectionRow.id == connection.id, ConnectionRow.version == expected_version)
            .values(**self._values(connection))
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        self._write_domains(connection)
        _flush(self.session)
        return True

    def delete(self, connection_id: str) -> None:
        self.session.execute(delete(ConnectionDomainRow).where(ConnectionDomainRow.connection_id == connection_id))
        self.session.execute(delete(ConnectionRow).where(ConnectionRow.id == connection_id))

    def all_sealed_secrets(self) -> list[tuple[str, str]]:
        rows = self.session.execute(select(ConnectionRow.id, ConnectionRow.sealed_secrets)
                                    .where(ConnectionRow.sealed_secrets.is_not(None)))
        return [(row_id, blob) for row_id, blob in rows if blob]

    def replace_sealed_secret(self, connection_id: str, blob: str) -> None:
        self.session.execute(update(ConnectionRow).where(ConnectionRow.id == connection_id)
                             .values(sealed_secrets=blob))


class SqlDomains:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: DomainRow) -> Domain:
        return Domain(id=row.id, organization_id=row.organization_id, name=row.name,
                      verification_token=row.verification_token, status=DomainStatus(row.status),
                      last_checked_at=row.last_checked_at, last_error=row.last_error,
                      verified_at=row.verified_at, created_at=row.created_at)

    def _values(self, domain: Domain) -> dict[str, Any]:
        values = vars(domain).copy()
        values["status"] = str(domain.status)
        return values

    def get(self, organization_id: str, domain_id: str) -> Domain | None:
        row = self.session.scalar(select(DomainRow).where(DomainRow.id == domain_id,
                                                          DomainRow.organization_id == organization_id))
        return self._entity(row) if row else None

    def find(self, organization_id: str, name: str) -> Domain | None:
        row = self.session.scalar(hot_queries.domain_claim(organization_id, name))
        return self._entity(row) if row else None

    def verified_elsewhere(self, organization_id: str, name: str) -> bool:
        return bool(self.session.scalar(select(exists().where(
            DomainRow.name == name, DomainRow.organization_id != organization_id,
            DomainRow.status == str(DomainStatus.VERIFIED)))))

    def add(self, domain: Domain) -> None:
        self.session.add(DomainRow(**self._values(domain)))
        _flush(self.session)

    def save(self, domain: Domain) -> None:
        values = self._values(domain)
        values.pop("id")
        self.session.execute(update(DomainRow).where(DomainRow.id == domain.id).values(**values))

    def delete(self, domain_id: str) -> None:
        self.session.execute(delete(DomainRow).where(DomainRow.id == domain_id))

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None) -> Page[Domain]:
        query = select(DomainRow).where(DomainRow.organization_id == organization_id)
        return _paginate(self.session, query, DomainRow.created_at, DomainRow.id, limit=limit, cursor=cursor,
                         convert=self._entity)


class SqlAudit:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: AuditEventRow) -> AuditEvent:
        return AuditEvent(id=row.id, organization_id=row.organization_id, actor=row.actor, action=row.action,
                          target_type=row.target_type, target_id=row.target_id, request_id=row.request_id,
                          changes=dict(row.changes), created_at=row.created_at)

    def add(self, event: AuditEvent) -> None:
        self.session.add(AuditEventRow(**vars(event)))

    def list_page(self, organization_id: str | None, *, limit: int, cursor: str | None,
             action: str | None = None, target_id: str | None = None) -> Page[AuditEvent]:
        query = select(AuditEventRow).where(AuditEventRow.organization_id == organization_id)
        if action:
            query = query.where(AuditEventRow.action == action)
        if target_id:
            query = query.where(AuditEventRow.target_id == target_id)
        return _paginate(self.session, query, AuditEventRow.created_at, AuditEventRow.id, limit=limit,
                         cursor=cursor, convert=self._entity)


class SqlUnitOfWork:
    """One session, one transaction; used as a context manager that rolls back what is not committed."""

    def __init__(self, session: Session, box: SecretBox):
        self.session = session
        self.organizations = SqlOrganizations(session)
        self.api_keys = SqlApiKeys(session)
        self.connections = SqlConnections(session, box)
        self.domains = SqlDomains(session)
        self.audit = SqlAudit(session)
        # Imported here: the sign-in repositories import helpers from this module.
        from keyhall.storage.signin_repositories import (
            SqlApplications,
            SqlGrants,
            SqlReplays,
            SqlSigningKeys,
            SqlTransactions,
            SqlUsers,
        )

        self.users = SqlUsers(session)
        self.applications = SqlApplications(session)
        self.signing_keys = SqlSigningKeys(session, box)
        self.transactions = SqlTransactions(session)
        self.grants = SqlGrants(session)
        self.sessions = self.grants  # the core's view of them: what ends when a connection is switched off
        self.replays = SqlReplays(session)
        self.session_ends = SqlSessionEnds(session)

    def commit(self) -> None:
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.session.rollback()
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc
        except (OperationalError, PoolTimeout) as exc:
            with contextlib.suppress(DBAPIError):
                self.session.rollback()
            raise ServiceUnavailable("the database is unavailable") from exc

    def rollback(self) -> None:
        self.session.rollback()

    def close(self) -> None:
        self.session.rollback()
        self.session.close()

    def __enter__(self) -> SqlUnitOfWork:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        with contextlib.suppress(DBAPIError):  # the connection is gone; the error below says why
            self.close()
        if isinstance(exc, IntegrityError):
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc
        if isinstance(exc, DataError):
            raise InvalidInput("a value cannot be stored (too long or not valid text)") from exc
        if isinstance(exc, DBAPIError | PoolTimeout):  # PoolTimeout: every pooled connection stayed busy
            raise ServiceUnavailable("the database is unavailable; try again shortly") from exc
