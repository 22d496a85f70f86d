"""The products' OpenID client registrations."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keyhall.core.applications import Application
from keyhall.storage import hot_queries
from keyhall.storage.cache import VersionedCache
from keyhall.storage.models import (
    ApplicationRow,
)
from keyhall.storage.repos._query import flush


class SqlApplications:
    """``get`` goes through ``cache`` (see ``keyhall.storage.cache``): a version probe, then the cached
    registration when its version is the current one."""

    def __init__(self, session: Session, cache: VersionedCache[str, Application] | None = None):
        self.session = session
        self.cache: VersionedCache[str, Application] = cache if cache is not None else VersionedCache(1)

    @staticmethod
    def _entity(row: ApplicationRow) -> Application:
        return Application(id=row.id, name=row.name, public=row.public, redirect_uris=list(row.redirect_uris),
                           allowed_scopes=list(row.allowed_scopes), id_token_alg=row.id_token_alg,  # type: ignore[arg-type]
                           secret_hash=row.secret_hash, created_at=row.created_at, updated_at=row.updated_at,
                           post_logout_redirect_uris=list(row.post_logout_redirect_uris or []),
                           backchannel_logout_uri=row.backchannel_logout_uri)

    def get(self, client_id: str, *, shared: bool = False) -> Application | None:
        version = hot_queries.run(self.session, hot_queries.APPLICATION_VERSION, id=client_id).scalar()
        if version is None:
            return None
        hit = self.cache.get_shared(client_id, version) if shared else self.cache.get(client_id, version)
        if hit is not None:
            return hit
        row = self.session.get(ApplicationRow, client_id)
        if row is None:
            return None
        app = self._entity(row)
        self.cache.put(client_id, row.version, app)
        return app

    def add(self, app: Application) -> None:
        self.session.add(ApplicationRow(**vars(app)))
        flush(self.session)

    def save(self, app: Application) -> None:
        values = {k: v for k, v in vars(app).items() if k != "id"}
        self.session.execute(update(ApplicationRow).where(ApplicationRow.id == app.id)
                             .values(**values, version=ApplicationRow.version + 1))

    def delete(self, client_id: str) -> None:
        self.cache.discard(client_id)
        row = self.session.get(ApplicationRow, client_id)
        if row is not None:
            self.session.delete(row)

    def list_all(self) -> list[Application]:
        rows = self.session.scalars(select(ApplicationRow).order_by(ApplicationRow.created_at, ApplicationRow.id))
        return [self._entity(r) for r in rows]

