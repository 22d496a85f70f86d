"""sessions and logout: applications' post-logout redirect URIs and back-channel logout URI, and
the back-channel logout outbox

Revision ID: 20261207_0014
Revises: 20261207_0013
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import keyhall.storage.models.base

revision = "20261207_0014"
down_revision = "20261207_0013"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TIME = keyhall.storage.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("post_logout_redirect_uris", _JSON, nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("backchannel_logout_uri", sa.String(length=2048), nullable=True))

    op.create_table(
        "logout_notices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("next_attempt_at", _TIME, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", _TIME, nullable=True),
        sa.Column("abandoned_at", _TIME, nullable=True),
        sa.Column("last_error", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logout_notices")),
    )
    with op.batch_alter_table("logout_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_logout_notices_created_at"), ["created_at"], unique=False)
        batch_op.create_index("ix_logout_notices_due", ["delivered_at", "abandoned_at", "next_attempt_at"],
                              unique=False)


def downgrade() -> None:
    op.drop_table("logout_notices")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_column("backchannel_logout_uri")
        batch_op.drop_column("post_logout_redirect_uris")
