"""scheduled pulls: jobs (from the policy), their state and lease, runs, bulk packages

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(length=64), nullable=False, unique=True),
        sa.Column("document", sa.JSON(), nullable=False),
    )
    op.create_table(
        "job_states",
        sa.Column("job_code", sa.String(length=64), primary_key=True),
        sa.Column("watermark", _TIME),
        sa.Column("next_due_at", _TIME),
        sa.Column("cron", sa.String(length=120)),
        sa.Column("lease_owner", sa.String(length=128)),
        sa.Column("lease_until", _TIME),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", _BIG, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(length=36), nullable=False, unique=True),
        sa.Column("job_code", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=255)),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("since", _TIME),
        sa.Column("as_of", sa.String(length=10)),
        sa.Column("cursor", sa.String(length=2048)),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("latest_change", _TIME),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=128)),
        sa.Column("package_id", sa.String(length=36)),
        sa.Column("error_type", sa.String(length=64)),
        sa.Column("error", sa.Text()),
        sa.Column("requested_at", _TIME, nullable=False),
        sa.Column("started_at", _TIME),
        sa.Column("finished_at", _TIME),
    )
    op.create_index("ix_job_runs_job_state", "job_runs", ["job_code", "state"])
    op.create_table(
        "bulk_packages",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("job_code", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("since", _TIME),
        sa.Column("as_of", sa.String(length=10)),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("completed_at", _TIME),
    )
    op.create_index("ix_bulk_packages_job_created", "bulk_packages", ["job_code", "created_at"])
    op.create_table(
        "bulk_package_records",
        sa.Column("id", _BIG, primary_key=True, autoincrement=True),
        sa.Column(
            "package_id",
            sa.String(length=36),
            sa.ForeignKey("bulk_packages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("package_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("bulk_package_records")
    op.drop_index("ix_bulk_packages_job_created", "bulk_packages")
    op.drop_table("bulk_packages")
    op.drop_index("ix_job_runs_job_state", "job_runs")
    op.drop_table("job_runs")
    op.drop_table("job_states")
    op.drop_table("jobs")
