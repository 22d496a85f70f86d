"""application version: a counter bumped by every update, so caches can tell a registration changed

Revision ID: 20261207_0016
Revises: 20261207_0015
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261207_0016"
down_revision = "20261207_0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("applications") as batch:
        batch.drop_column("version")
