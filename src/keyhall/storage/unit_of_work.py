"""The unit of work: one session, one transaction, and every repository over it."""

from __future__ import annotations

import contextlib

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
        # One plain attribute per repository of ``core.ports.UnitOfWork``: a new repository module
        # adds its import above and one line here.
        self.session = session
        caches = caches if caches is not None else StorageCaches()
        self.organizations = SqlOrganizations(session)
        self.api_keys = SqlApiKeys(session)
        self.connections = SqlConnections(session, box, caches.connections)
        self.domains = SqlDomains(session)
        self.audit = SqlAudit(session)
        self.users = SqlUsersWithDirectories(session)  # sign-in also finds the users directories provisioned
        self.directories = SqlDirectories(session, caches.directories)
        self.directory_users = SqlDirectoryUsers(session)
        self.directory_groups = SqlDirectoryGroups(session)
        self.applications = SqlApplications(session, caches.applications)
        self.signing_keys = SqlSigningKeys(session, box, caches.private_keys)
        self.transactions = SqlTransactions(session)
        self.grants = SqlGrants(session)
        self.replays = SqlReplays(session)
        self.session_ends = SqlSessionEnds(session)
        self.saml_sessions = SqlSamlSessions(session)
        self.events = SqlEvents(session)
        self.webhooks = SqlWebhooks(session, box)
        self.certificate_watch = SqlCertificateWatch(session, box)
        self.sign_in_traces = SqlSignInTraces(session)
        self.portal = SqlPortal(session)

    def commit(self) -> None:
        try:
            self.session.commit()
        except IntegrityError as exc:
            self.rollback()
            raise Conflict("the change clashes with stored data (a name or domain already in use)") from exc
        except (OperationalError, PoolTimeout) as exc:
            self.connections.rolled_back()
            with contextlib.suppress(DBAPIError):
                self.session.rollback()
            raise ServiceUnavailable("the database is unavailable") from exc
        self.connections.committed()

    def rollback(self) -> None:
        self.connections.rolled_back()
        self.session.rollback()

    def close(self) -> None:
        self.connections.rolled_back()
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
