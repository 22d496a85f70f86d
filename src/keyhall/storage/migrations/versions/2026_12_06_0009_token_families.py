"""token families (absolute lifetime, revocation, sid), revoked access tokens, user versions

Revision ID: 20261206_0009
Revises: 20261206_0008
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import keyhall.storage.models.base

revision = "20261206_0009"
down_revision = "20261206_0008"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TIME = keyhall.storage.models.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    families = op.create_table(
        "token_families",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=True),
        sa.Column("amr", _JSON, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_families")),
    )
    with op.batch_alter_table("token_families", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_token_families_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_token_families_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_token_families_connection_id"), ["connection_id"], unique=False)

    op.create_table(
        "revoked_access_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=36), nullable=True),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revoked_access_tokens")),
    )
    with op.batch_alter_table("revoked_access_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revoked_access_tokens_expires_at"), ["expires_at"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))

    _backfill_families(families)


def _backfill_families(families: sa.Table) -> None:
    """Refresh tokens issued before this revision keep working: each family gets its row, started
    when its first token was issued (so the absolute lifetime counts from the original sign-in)."""
    tokens = sa.table("refresh_tokens", sa.column("family_id", sa.String()), sa.column("client_id", sa.String()),
                      sa.column("user_id", sa.String()), sa.column("grant", _JSON),
                      sa.column("created_at", _TIME), sa.column("revoked_at", _TIME))
    bind = op.get_bind()
    found: dict[str, dict[str, Any]] = {}
    for row in bind.execute(sa.select(tokens).order_by(tokens.c.created_at)):
        family = found.get(row.family_id)
        if family is None:
            grant = row.grant or {}
            found[row.family_id] = {
                "id": row.family_id, "client_id": row.client_id, "user_id": row.user_id,
                "connection_id": grant.get("connection_id"), "amr": list(grant.get("amr") or []),
                "created_at": row.created_at, "revoked_at": row.revoked_at,
            }
        else:
            family["revoked_at"] = row.revoked_at  # the newest token says whether the lineage is alive
    if found:
        op.bulk_insert(families, list(found.values()))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("version")
    op.drop_index(op.f("ix_revoked_access_tokens_expires_at"), table_name="revoked_access_tokens")
    op.drop_table("revoked_access_tokens")
    op.drop_index(op.f("ix_token_families_connection_id"), table_name="token_families")
    op.drop_index(op.f("ix_token_families_created_at"), table_name="token_families")
    op.drop_index(op.f("ix_token_families_user_id"), table_name="token_families")
    op.drop_table("token_families")
