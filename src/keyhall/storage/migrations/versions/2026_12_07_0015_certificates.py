"""certificates: per SAML connection, when its metadata is next refreshed, what was noticed, and its SP key rollover

Revision ID: 20261207_0015
Revises: 20261207_0014
Create Date: 2026-12-07 03:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyhall.storage.models.base import JSONDocument, UTCDateTime

revision = "20261207_0015"
down_revision = "20261207_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connection_certificate_watch",
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("etag", sa.String(length=512), nullable=True),
        sa.Column("last_modified", sa.String(length=64), nullable=True),
        sa.Column("missing_since", JSONDocument, nullable=False),
        sa.Column("fired", JSONDocument, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sp_next_certificate", sa.Text(), nullable=True),
        sa.Column("sp_next_activates_at", UTCDateTime(), nullable=True),
        sa.Column("sp_previous_until", UTCDateTime(), nullable=True),
        sa.Column("sealed_sp_keys", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name=op.f("fk_connection_certificate_watch_connection_id_connections"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_connection_certificate_watch")),
    )
    op.create_index(op.f("ix_connection_certificate_watch_due_at"), "connection_certificate_watch", ["due_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_connection_certificate_watch_due_at"), table_name="connection_certificate_watch")
    op.drop_table("connection_certificate_watch")
