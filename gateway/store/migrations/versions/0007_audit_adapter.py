"""audit records name the adapter that converted the exchange, and its version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Nullable, without a default: rows from before say nothing about an adapter, and their
# chain hashes leave out a null adapter (gateway/audit/chain.py), so they still verify.


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("adapter", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("adapter_version", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("adapter_version")
        batch.drop_column("adapter")
