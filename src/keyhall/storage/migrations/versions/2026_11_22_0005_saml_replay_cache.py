"""saml replay cache

Revision ID: 20261122_0005
Revises: 20261122_0004
Create Date: 2026-11-22 23:13:06.004569
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keyhall.storage.models.base

revision = "20261122_0005"
down_revision = "20261122_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saml_replays",
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("assertion_id", sa.String(length=256), nullable=False),
        sa.Column("expires_at", keyhall.storage.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "assertion_id", name=op.f("pk_saml_replays")),
    )
    with op.batch_alter_table("saml_replays", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saml_replays_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("saml_replays", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_saml_replays_expires_at"))

    op.drop_table("saml_replays")
