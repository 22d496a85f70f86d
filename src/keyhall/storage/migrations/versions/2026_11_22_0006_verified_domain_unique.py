"""a verified domain belongs to one organization (partial unique index)

Revision ID: 20261122_0006
Revises: 20261122_0005
Create Date: 2026-11-22 23:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261122_0006"
down_revision = "20261122_0005"
branch_labels = None
depends_on = None

WHERE = sa.text("status = 'verified'")


def upgrade() -> None:
    op.create_index("uq_domains_verified_name", "domains", ["name"], unique=True, sqlite_where=WHERE,
                    postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index("uq_domains_verified_name", table_name="domains")
