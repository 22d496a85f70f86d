"""portal: single-use setup links and the portal sessions they open

Revision ID: 20261207_0018
Revises: 20261207_0017
Create Date: 2026-12-07 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyhall.storage.models.base import UTCDateTime

revision = "20261207_0018"
down_revision = "20261207_0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_links",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("intent", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("return_url", sa.String(length=2048), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_portal_links_organization_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_portal_links_token_hash")),
    )
    op.create_index(op.f("ix_portal_links_organization_id"), "portal_links", ["organization_id"])
    op.create_index(op.f("ix_portal_links_expires_at"), "portal_links", ["expires_at"])
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("link_id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("intent", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("return_url", sa.String(length=2048), nullable=True),
        sa.Column("draft_connection_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["link_id"], ["portal_links.id"],
                                name=op.f("fk_portal_sessions_link_id_portal_links"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_portal_sessions_organization_id_organizations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_portal_sessions_secret_hash")),
    )
    op.create_index(op.f("ix_portal_sessions_link_id"), "portal_sessions", ["link_id"])
    op.create_index(op.f("ix_portal_sessions_organization_id"), "portal_sessions", ["organization_id"])
    op.create_index(op.f("ix_portal_sessions_expires_at"), "portal_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("portal_sessions")
    op.drop_table("portal_links")
