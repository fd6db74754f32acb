"""audit subjects: the keyed-hash index of whose data an exchange touched, and the
indexes the auditors' console searches by (case number, officer, calling agency)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEARCHED = (
    ("ix_audit_case_started", "case_number"),
    ("ix_audit_officer_started", "officer_id"),
    ("ix_audit_agency_started", "client_agency_code"),
)


def upgrade() -> None:
    op.create_table(
        "audit_subjects",
        sa.Column("subject", sa.String(length=64), primary_key=True),
        sa.Column("event_id", sa.String(length=36), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_audit_subjects_subject_started", "audit_subjects", ["subject", "started_at"]
    )
    for name, column in _SEARCHED:
        op.create_index(name, "audit_records", [column, "started_at"])


def downgrade() -> None:
    for name, _ in _SEARCHED:
        op.drop_index(name, table_name="audit_records")
    op.drop_index("ix_audit_subjects_subject_started", table_name="audit_subjects")
    op.drop_table("audit_subjects")
