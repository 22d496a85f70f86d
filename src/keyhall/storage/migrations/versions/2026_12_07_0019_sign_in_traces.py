"""sign-in traces: the steps and checks of test sign-ins and failed sign-ins

Revision ID: 20261207_0019
Revises: 20261207_0018
Create Date: 2026-12-07 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from keyhall.storage.models.base import UTCDateTime

revision = "20261207_0019"
down_revision = "20261207_0018"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sign_in_traces",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("steps", JSON, nullable=False),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("profile", JSON, nullable=False),
        sa.Column("failure", JSON, nullable=True),
        sa.Column("started_by", sa.String(length=128), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("browser_binding", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_traces")),
    )
    op.create_index("ix_sign_in_traces_org_created", "sign_in_traces", ["organization_id", "created_at"])
    op.create_index(op.f("ix_sign_in_traces_created_at"), "sign_in_traces", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sign_in_traces_created_at"), table_name="sign_in_traces")
    op.drop_index("ix_sign_in_traces_org_created", table_name="sign_in_traces")
    op.drop_table("sign_in_traces")
