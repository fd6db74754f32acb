"""audit search at scale: an index by calling agency and service, for the auditor API's
search by both (bench/audit_search.py, docs/auditor.md "Searching ten million records")

Without it the search by agency and service reads every record of the agency (the
agency's index) and filters on the service: at ten million records, ~40,000 rows for a
mid-sized agency, all of them when the agency never called the service. Records are not
partitioned (the docs say why); this index works the same on SQLite and PostgreSQL.

Revision ID: 0026
Revises: 0024
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_audit_agency_service_started",
        "audit_records",
        ["client_agency_code", "service_code", "started_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_audit_agency_service_started", table_name="audit_records")
