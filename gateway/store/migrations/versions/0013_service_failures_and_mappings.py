"""which answers of a service count as its upstream failing (the circuit breaker, retries),
and the digest of its adapter's mapping files validated when the policy was applied

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL is the default list (502, 503, 504): existing services stop counting a 500
    # (a SOAP fault, a provider's business error) as an outage of their upstream.
    op.add_column("services", sa.Column("upstream_failure_statuses", sa.JSON(), nullable=True))
    # NULL until the next `policy apply` records the digest it validated.
    op.add_column("services", sa.Column("adapter_mappings", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("adapter_mappings")
        batch.drop_column("upstream_failure_statuses")
