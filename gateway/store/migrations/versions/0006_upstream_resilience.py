"""upstream resilience: retries, circuit breaker, concurrency limit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Server defaults give existing rows the policy defaults, so upgrading changes no
# behaviour except the concurrency limit of 100 per upstream and worker process.
UPSTREAM_COLUMNS = (
    ("breaker_failure_threshold", sa.Integer(), "5"),
    ("breaker_open_seconds", sa.Float(), "10"),
    ("breaker_half_open_requests", sa.Integer(), "1"),
    ("max_concurrency", sa.Integer(), "100"),
    ("queue_timeout_ms", sa.Integer(), "0"),
)
SERVICE_COLUMNS = (
    ("retry_attempts", sa.Integer(), "1"),
    ("retry_backoff_ms", sa.Integer(), "50"),
    ("retry_max_backoff_ms", sa.Integer(), "1000"),
)


def upgrade() -> None:
    for name, type_, default in UPSTREAM_COLUMNS:
        op.add_column("upstreams", sa.Column(name, type_, nullable=False, server_default=default))
    for name, type_, default in SERVICE_COLUMNS:
        op.add_column("services", sa.Column(name, type_, nullable=False, server_default=default))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("services") as batch:
        for name, _, _ in reversed(SERVICE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("upstreams") as batch:
        for name, _, _ in reversed(UPSTREAM_COLUMNS):
            batch.drop_column(name)
