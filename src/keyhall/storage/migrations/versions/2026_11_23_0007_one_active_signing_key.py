"""one active signing key per algorithm (partial unique index)

Revision ID: 20261123_0007
Revises: 20261122_0006
Create Date: 2026-11-23 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261123_0007"
down_revision = "20261122_0006"
branch_labels = None
depends_on = None

WHERE = sa.text("retired_at IS NULL")


def upgrade() -> None:
    # Earlier duplicates (instances that raced for their first key): keep the newest active per algorithm.
    op.execute(
        "UPDATE signing_keys SET retired_at = created_at, published_until = created_at WHERE retired_at IS NULL "
        "AND created_at < (SELECT MAX(s2.created_at) FROM signing_keys s2 WHERE s2.alg = signing_keys.alg "
        "AND s2.retired_at IS NULL)"
    )
    op.create_index("uq_signing_keys_active_alg", "signing_keys", ["alg"], unique=True, sqlite_where=WHERE,
                    postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index("uq_signing_keys_active_alg", table_name="signing_keys")
