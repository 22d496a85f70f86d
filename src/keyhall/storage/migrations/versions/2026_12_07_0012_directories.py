"""SCIM directories: directories, their groups and memberships; users a directory provisioned

Revision ID: 20261207_0012
Revises: 20261206_0011
Create Date: 2026-12-07 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from keyhall.storage.models.base import UTCDateTime

revision = "20261207_0012"
down_revision = "20261206_0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "directories",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("token_hint", sa.String(8), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("token_rotated_at", UTCDateTime(), nullable=False),
        sa.Column("last_sync_at", UTCDateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name="fk_directories_organization_id_organizations", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_directories"),
    )
    op.create_index("ix_directories_organization_id", "directories", ["organization_id"])
    op.create_table(
        "directory_groups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("directory_id", sa.String(36), nullable=False),
        sa.Column("organization_id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(512), nullable=False),
        sa.Column("display_name_key", sa.String(512), nullable=False),
        sa.Column("external_id", sa.String(512), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["directory_id"], ["directories.id"],
                                name="fk_directory_groups_directory_id_directories", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name="fk_directory_groups_organization_id_organizations", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_directory_groups"),
    )
    op.create_index("ix_directory_groups_directory_external", "directory_groups", ["directory_id", "external_id"])
    op.create_index("ix_directory_groups_directory_display", "directory_groups", ["directory_id", "display_name_key"])
    op.create_table(
        "directory_memberships",
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("display", sa.String(512), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["directory_groups.id"],
                                name="fk_directory_memberships_group_id_directory_groups", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name="fk_directory_memberships_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_directory_memberships"),
    )
    op.create_index("ix_directory_memberships_user_id", "directory_memberships", ["user_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("directory_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("user_name", sa.String(512), nullable=True))
        batch.add_column(sa.Column("user_name_key", sa.String(512), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(512), nullable=True))
        batch.add_column(sa.Column("scim_attributes", JSON, nullable=True))
        batch.create_foreign_key("fk_users_directory_id_directories", "directories", ["directory_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_unique_constraint("ux_users_directory_user_name", ["directory_id", "user_name_key"])
    op.create_index("ix_users_directory_external_id", "users", ["directory_id", "external_id"])


def downgrade() -> None:
    op.drop_index("ix_users_directory_external_id", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("ux_users_directory_user_name", type_="unique")
        batch.drop_column("user_name_key")
        batch.drop_constraint("fk_users_directory_id_directories", type_="foreignkey")
        batch.drop_column("scim_attributes")
        batch.drop_column("external_id")
        batch.drop_column("user_name")
        batch.drop_column("directory_id")
    op.drop_table("directory_memberships")
    op.drop_table("directory_groups")
    op.drop_table("directories")
