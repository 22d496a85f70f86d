"""The unit of work: one session, one transaction, and every repository over it."""

from __future__ import annotations

import contextlib
from functools import cached_property

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from keyhall.errors import Conflict, InvalidInput, ServiceUnavailable
from keyhall.security.secrets import SecretBox
from keyhall.storage.cache import StorageCaches
from keyhall.storage.repos.api_keys import SqlApiKeys
from keyhall.storage.repos.applications import SqlApplications
from keyhall.storage.repos.audit import SqlAudit
from keyhall.storage.repos.certificate_watch import SqlCertificateWatch
from keyhall.storage.repos.connections import SqlConnections
from keyhall.storage.repos.directories import (
    SqlDirectories,
    SqlDirectoryGroups,
    SqlDirectoryUsers,
    SqlUsersWithDirectories,
)
from keyhall.storage.repos.domains import SqlDomains
from keyhall.storage.repos.events import SqlEvents, SqlWebhooks
from keyhall.storage.repos.grants import SqlGrants
from keyhall.storage.repos.organizations import SqlOrganizations
from keyhall.storage.repos.portal import SqlPortal
from keyhall.storage.repos.replays import SqlReplays
from keyhall.storage.repos.saml_sessions import SqlSamlSessions
from keyhall.storage.repos.session_ends import SqlSessionEnds
from keyhall.storage.repos.sign_in_traces import SqlSignInTraces
from keyhall.storage.repos.signing_keys import SqlSigningKeys
from keyhall.storage.repos.transactions import SqlTransactions


class SqlUnitOfWork:
    """One session, one transaction; used as a context manager that rolls back what is not committed."""

    def __init__(self, session: Session, box: SecretBox, caches: StorageCaches | None = None):
        self.session = session
        self._box = box
        self._caches = caches if caches is not None else StorageCaches()

    # One repository per attribute of ``core.ports.UnitOfWork``, made on first use: a request uses a
    # few of them (a GET of a connection, three), and a unit is made per request. A new repository
    # module adds its import above and one property here.

    @cached_property
    def organizations(self) -> SqlOrganizations:
        return SqlOrganizations(self.session)

    @cached_property
    def api_keys(self) -> SqlApiKeys:
        return SqlApiKeys(self.session)

    @cached_property
    def connections(self) -> SqlConnections:
        return SqlConnections(self.session, self._box, self._caches.connections)

    @cached_property
    def domains(self) -> SqlDomains:
        return SqlDomains(self.session)

    @cached_property
    def audit(self) -> SqlAudit:
        return SqlAudit(self.session)

    @cached_property
    def users(self) -> SqlUsersWithDirectories:  # sign-in also finds the users directories provisioned
        return SqlUsersWithDirectories(self.session)

    @cached_property
    def directories(self) -> SqlDirectories:
        return SqlDirectories(self.session, self._caches.directories)

    @cached_property
    def directory_users(self) -> SqlDirectoryUsers:
        return SqlDirectoryUsers(self.session)

    @cached_property
    def directory_groups(self) -> SqlDirectoryGroups:
        return SqlDirectoryGroups(self.session)

    @cached_property
    def applications(self) -> SqlApplications:
        return SqlApplications(self.session, self._caches.applications)

    @cached_property
    def signing_keys(self) -> SqlSigningKeys:
        return SqlSigningKeys(self.session, self._box, self._caches.private_keys)

    @cached_property
    def transactions(self) -> SqlTransactions:
        return SqlTransactions(self.session)

    @cached_property
    def grants(self) -> SqlGrants:
        return SqlGrants(self.session)

    @cached_property
    def replays(self) -> SqlReplays:
        return SqlReplays(self.session)

    @cached_property
    def session_ends(self) -> SqlSessionEnds:
        return SqlSessionEnds(self.session)

    @cached_property
    def saml_sessions(self) -> SqlSamlSessions:
        return SqlSamlSessions(self.session)

    @cached_property
    def events(self) -> SqlEvents:
        return SqlEvents(self.session)

    @cached_property
    def webhooks(self) -> SqlWebhooks:
        return SqlWebhooks(self.session, self._box)

    @cached_property
    def certificate_watch(self) -> SqlCertificateWatch:
        return SqlCertificateWatch(self.session, self._box)

    @cached_property
    def sign_in_traces(self) -> SqlSignInTraces:
        return SqlSignInTraces(self.session)

    @cached_property
    def portal(self) -> SqlPortal:
        return SqlPortal(self.session)

    def commit(self) -> None:
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.rollback()
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc
        except (OperationalError, PoolTimeout) as exc:
            self._connections_rolled_back()
            with contextlib.suppress(DBAPIError):
                self.session.rollback()
            raise ServiceUnavailable("the database is unavailable") from exc
        if (connections := self.__dict__.get("connections")) is not None:
            connections.committed()

    def _connections_rolled_back(self) -> None:
        if (connections := self.__dict__.get("connections")) is not None:  # made: it may hold changes
            connections.rolled_back()

    def rollback(self) -> None:
        self._connections_rolled_back()
        self.session.rollback()

    def close(self) -> None:
        self._connections_rolled_back()
        # Closing ends the transaction (a rollback) and forgets every object; a rollback() first
        # would expire them all for nothing.
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
