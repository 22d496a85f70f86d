"""saml slo: the NameID and SessionIndex of each session begun by a SAML sign-in

Revision ID: 20261207_0017
Revises: 20261207_0016
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyhall.storage.models.base import UTCDateTime

revision = "20261207_0017"
down_revision = "20261207_0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saml_sessions",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("name_id", sa.String(length=512), nullable=False),
        sa.Column("name_id_format", sa.String(length=256), nullable=True),
        sa.Column("session_index", sa.String(length=256), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["token_families.id"],
                                name=op.f("fk_saml_sessions_session_id_token_families"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_saml_sessions")),
    )
    op.create_index("ix_saml_sessions_subject", "saml_sessions", ["connection_id", "name_id"])


def downgrade() -> None:
    op.drop_index("ix_saml_sessions_subject", table_name="saml_sessions")
    op.drop_table("saml_sessions")
