"""config version row, bumped by every admin change

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "config_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Start from the number of changes already made, so running gateways see a new version.
    op.bulk_insert(table, [{"id": 1, "version": 0}])
    op.execute("UPDATE config_state SET version = (SELECT COUNT(*) FROM admin_events) WHERE id = 1")


def downgrade() -> None:
    op.drop_table("config_state")
