"""The connections table and the domains each connection routes (``connection_domains``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, delete, exists, func, select, update
from sqlalchemy.orm import Session

from keyhall.core.connections import Connection
from keyhall.core.organizations import is_uuid
from keyhall.core.ports import ConnectionFilter, Page, Slice
from keyhall.core.vocabulary import (
    ConnectionStatus,
    GroupProvisioning,
    Protocol,
    Provider,
    UserProvisioning,
)
from keyhall.security.secrets import SecretBox
from keyhall.storage import hot_queries
from keyhall.storage.cache import VersionedCache
from keyhall.storage.models import (
    ConnectionDomainRow,
    ConnectionRow,
)
from keyhall.storage.repos._query import expire_loaded, flush, paginate


class SqlConnections:
    """Reads by id and by domain go through ``cache`` (see ``keyhall.storage.cache``): a version probe,
    then the cached entity when its version is the current one."""

    def __init__(self, session: Session, box: SecretBox, cache: VersionedCache[str, Connection] | None = None):
        self.session = session
        self.box = box
        self.cache: VersionedCache[str, Connection] = cache if cache is not None else VersionedCache(1)
        self._written: list[Connection] = []  # cached once their transaction commits (see committed)

    def committed(self) -> None:
        """The transaction that wrote them committed: cache the connections it saved, at their new
        version, so the next read (or write) of one needs no reload. Not before the commit: a
        rolled-back version number may later be written with other content."""
        for connection in self._written:
            self.cache.put(connection.id, connection.version, connection)
        self._written.clear()

    def rolled_back(self) -> None:
        self._written.clear()

    def _entity(self, row: ConnectionRow | Row[Any], domains: list[str]) -> Connection:
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
            for row in hot_queries.run(self.session, hot_queries.DOMAINS_OF_CONNECTIONS, ids=list(ids)):
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

    def _write_domains(self, conn: Connection, stored: Sequence[str] | None = None) -> None:
        """The connection's domain rows; with ``stored`` (the domains as stored), only the difference:
        nothing at all when they did not change, which is what most updates send."""
        if stored is None:
            self.session.execute(delete(ConnectionDomainRow).where(ConnectionDomainRow.connection_id == conn.id))
            stored = []
        elif list(stored) == conn.domains:
            return
        wanted = {name: index for index, name in enumerate(conn.domains)}
        was = {name: index for index, name in enumerate(stored)}
        gone = [name for name in was if name not in wanted]
        if gone:
            self.session.execute(delete(ConnectionDomainRow).where(ConnectionDomainRow.connection_id == conn.id,
                                                                   ConnectionDomainRow.domain.in_(gone)))
        for name, index in wanted.items():
            if name not in was:
                self.session.add(ConnectionDomainRow(connection_id=conn.id, domain=name,
                                                     organization_id=conn.organization_id, position=index))
            elif was[name] != index:
                self.session.execute(update(ConnectionDomainRow).where(
                    ConnectionDomainRow.connection_id == conn.id, ConnectionDomainRow.domain == name,
                ).values(position=index))

    def _load(self, row: ConnectionRow) -> Connection:
        conn = self._entity(row, self._domains_of([row.id])[row.id])
        self.cache.put(conn.id, conn.version, conn)
        return conn

    def _cached(self, connection_id: str, version: int | None) -> Connection | None:
        """The cached connection at ``version`` (just probed); None when absent or not current."""
        return None if version is None else self.cache.get(connection_id, version)

    def get(self, organization_id: str, connection_id: str, *, for_update: bool = False,
            shared: bool = False) -> Connection | None:
        if not is_uuid(connection_id):
            return None
        connection_id = connection_id.lower()
        # A write's probe locks the row (FOR UPDATE) and reads its version in one statement; either
        # way the cached entity at that version is the row as it is.
        probe = (hot_queries.CONNECTION_VERSION_IN_ORGANIZATION_FOR_UPDATE if for_update
                 else hot_queries.CONNECTION_VERSION_IN_ORGANIZATION)
        version = hot_queries.run(self.session, probe, id=connection_id, organization_id=organization_id).scalar()
        if version is None:
            return None
        hit = self.cache.get_shared(connection_id, version) if shared else self._cached(connection_id, version)
        if hit is not None:
            return hit
        row = self.session.scalar(hot_queries.connection_in_organization(organization_id, connection_id))
        return self._load(row) if row else None

    def get_any(self, connection_id: str, *, shared: bool = False) -> Connection | None:
        if not is_uuid(connection_id):
            return None
        connection_id = connection_id.lower()
        version = hot_queries.run(self.session, hot_queries.CONNECTION_VERSION, id=connection_id).scalar()
        if version is None:
            return None
        hit = self.cache.get_shared(connection_id, version) if shared else self._cached(connection_id, version)
        if hit is not None:
            return hit
        row = self.session.get(ConnectionRow, connection_id)
        return self._load(row) if row else None

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

    def _with_domains(self, rows: Sequence[ConnectionRow | Row[Any]]) -> list[Connection]:
        domains = self._domains_of([row.id for row in rows])
        return [self._entity(row, domains[row.id]) for row in rows]

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None,
                  where: ConnectionFilter | None = None) -> Page[Connection]:
        query = self._matching(organization_id, where or ConnectionFilter())
        page: Page[ConnectionRow] = paginate(self.session, query, ConnectionRow.created_at, ConnectionRow.id,
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
        active = str(ConnectionStatus.ACTIVE)
        current: list[tuple[str, int]] = [
            (row.id, row.version) for row in hot_queries.run(
                self.session, hot_queries.CONNECTION_VERSIONS_BY_DOMAIN, domain=domain.lower(), status=active)]
        found = {row_id: self._cached(row_id, version) for row_id, version in current}
        missing = [row_id for row_id, conn in found.items() if conn is None]
        if missing:
            rows = list(hot_queries.run(self.session, hot_queries.CONNECTIONS_WITH_STATUS, ids=missing,
                                        status=active))
            for conn in self._with_domains(rows):
                self.cache.put(conn.id, conn.version, conn)
                found[conn.id] = conn
        return [found_conn for row_id, _ in current if (found_conn := found.get(row_id)) is not None]

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
        flush(self.session)
        self._write_domains(connection)
        flush(self.session)

    def save(self, connection: Connection, *, expected_version: int,
             stored_domains: Sequence[str] | None = None) -> bool:
        if connection.version <= expected_version:  # the caches trust the version to change with the row
            raise ValueError("a saved connection needs a version above the one it replaces")
        result = hot_queries.run(self.session, hot_queries.UPDATE_CONNECTION_AT_VERSION, b_id=connection.id,
                                 b_version=expected_version, **self._values(connection))
        if result.rowcount != 1:
            return False
        expire_loaded(self.session, ConnectionRow, connection.id)  # the update went around the ORM
        self._write_domains(connection, stored_domains)
        flush(self.session)
        self._written.append(connection)
        return True

    def delete(self, connection_id: str) -> None:
        self.cache.discard(connection_id)
        self.session.execute(delete(ConnectionDomainRow).where(ConnectionDomainRow.connection_id == connection_id))
        self.session.execute(delete(ConnectionRow).where(ConnectionRow.id == connection_id))

    def all_sealed_secrets(self) -> list[tuple[str, str]]:
        rows = self.session.execute(select(ConnectionRow.id, ConnectionRow.sealed_secrets)
                                    .where(ConnectionRow.sealed_secrets.is_not(None)))
        return [(row_id, blob) for row_id, blob in rows if blob]

    def replace_sealed_secret(self, connection_id: str, blob: str) -> None:
        self.session.execute(update(ConnectionRow).where(ConnectionRow.id == connection_id)
                             .values(sealed_secrets=blob))

