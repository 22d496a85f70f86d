"""indexes for the purge of expired rows (refresh-token expiry and revocation, audit-event age)

Revision ID: 20261206_0010
Revises: 20261206_0009
Create Date: 2026-12-06 23:30:00
"""

from __future__ import annotations

from alembic import op

revision = "20261206_0010"
down_revision = "20261206_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"])
    op.create_index("ix_refresh_tokens_revoked_at", "refresh_tokens", ["revoked_at"])
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_created_at", table_name="audit_events")
    op.drop_index("ix_refresh_tokens_revoked_at", table_name="refresh_tokens")
    op.drop_index("ix_refresh_tokens_expires_at", table_name="refresh_tokens")
