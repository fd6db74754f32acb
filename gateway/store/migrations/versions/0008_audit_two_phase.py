"""audit records of fail_closed exchanges come in two: the intent, durable before the
request is forwarded, and the outcome that names it

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Nullable, without a default: rows from before are exchanges recorded in one event, and
# their chain hashes leave out a null phase and intent_id (gateway/audit/chain.py).


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("intent_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_audit_records_intent_id", ["intent_id"])


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_index("ix_audit_records_intent_id")
        batch.drop_column("intent_id")
        batch.drop_column("phase")
