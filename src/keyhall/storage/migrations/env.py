"""Alembic environment: runs against the connection handed in by ``keyhall.storage.migrate``."""

from __future__ import annotations

from alembic import context

from keyhall.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when alembic is run by hand without a URL
    raise RuntimeError("run migrations through 'keyhall migrate' or keyhall.storage.migrate.upgrade()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
