"""organization short id and default connection; connection SSO configuration id

Revision ID: 20261122_0002
Revises: 20261122_0001
Create Date: 2026-11-22 23:00:00
"""

from __future__ import annotations

import secrets
import string

import sqlalchemy as sa
from alembic import op

revision = "20261122_0002"
down_revision = "20261122_0001"
branch_labels = None
depends_on = None

_ALPHABET = string.ascii_lowercase + string.digits


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("short_id", sa.String(length=21), nullable=True))
        batch_op.add_column(sa.Column("default_connection_id", sa.String(length=36), nullable=True))
    connection = op.get_bind()
    ids = [row[0] for row in connection.execute(sa.text("SELECT id FROM organizations"))]
    for org_id in ids:
        short_id = "".join(secrets.choice(_ALPHABET) for _ in range(21))
        connection.execute(
            sa.text("UPDATE organizations SET short_id = :s WHERE id = :i"), {"s": short_id, "i": org_id}
        )
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.alter_column("short_id", existing_type=sa.String(length=21), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_organizations_short_id"), ["short_id"])
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sso_configuration_id", sa.String(length=36), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_connections_sso_configuration_id"), ["sso_configuration_id"])


def downgrade() -> None:
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_connections_sso_configuration_id"), type_="unique")
        batch_op.drop_column("sso_configuration_id")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_organizations_short_id"), type_="unique")
        batch_op.drop_column("default_connection_id")
        batch_op.drop_column("short_id")
