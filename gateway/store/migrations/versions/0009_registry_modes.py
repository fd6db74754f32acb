"""the schema registry's modes (Confluent's /mode): read-write or read-only, registry-wide
or per subject

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_modes",
        sa.Column("subject", sa.String(length=255), primary_key=True),
        sa.Column("mode", sa.String(length=32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_modes")
