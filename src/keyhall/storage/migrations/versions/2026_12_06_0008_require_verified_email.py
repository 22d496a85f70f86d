"""per-connection choice to refuse sign-ins whose email Keyhall cannot vouch for

Revision ID: 20261206_0008
Revises: 20261123_0007
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206_0008"
down_revision = "20261123_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("require_verified_email", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("require_verified_email")
