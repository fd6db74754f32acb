"""the other side of a converted exchange in audit records: the digest of what went to
the provider after conversion, and of what the caller received

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Nullable without a default: rows from before hold neither, and their chain hashes leave
# out a null value (HASHED_WHEN_SET), so they still verify.


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("provider_request_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("caller_response_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("caller_response_sha256")
        batch.drop_column("provider_request_sha256")
