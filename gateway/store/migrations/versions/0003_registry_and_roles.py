"""schema registry tables, client roles, service schemas

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_schemas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schema_type", sa.String(length=16), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schema_type", "fingerprint"),
    )
    op.create_table(
        "registry_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("schema_id", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["schema_id"], ["registry_schemas.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject", "version"),
    )
    op.create_table(
        "registry_config",
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("compatibility", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("roles", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("schemas", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("schemas")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("roles")
    op.drop_table("registry_config")
    op.drop_table("registry_versions")
    op.drop_table("registry_schemas")
