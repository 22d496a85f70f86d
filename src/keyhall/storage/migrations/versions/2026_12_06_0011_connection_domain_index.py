"""index on connection_domains.domain: home-realm discovery looks connections up by email domain

Revision ID: 20261206_0011
Revises: 20261206_0010
Create Date: 2026-12-07 00:10:00
"""

from __future__ import annotations

from alembic import op

revision = "20261206_0011"
down_revision = "20261206_0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_connection_domains_domain", "connection_domains", ["domain"])


def downgrade() -> None:
    op.drop_index("ix_connection_domains_domain", table_name="connection_domains")
