"""audit search at scale: an index by calling agency and service, for the auditor API's
search by both; a covering index of the statistics roll-up by day, for a month's
statistics; the subject rows by event id, for retention (bench/audit_search.py;
docs/auditor.md, "Ten million records")

Without the first, the search by agency and service reads every record of the agency
(the agency's index) and filters on the service: all of them when the agency never
called the service. Without the second, a month of the roll-up at a province's rate
(~3.2 million rows: ~114,000 a day at 2,000,000 exchanges a day) is read through the
primary key and the table, 6.8 s; from the index alone (PostgreSQL's INCLUDE, an
index-only scan) 0.9 to 1.0 s. On SQLite the second is a plain index on the day (SQLite
has no INCLUDE). The third, the subject rows by event id, is what retention deletes them
by: without it each purge read the whole subject index table (a hash join over every row,
2.6 s at ten million records for one day's 16,000 records; with it 0.17 s), a cost that
grows with the years kept, not with what is purged. Records are not partitioned (the
docs say why).

The indexes are made in the migration's transaction, which holds writes to the table
while it builds (at ten million records: 40 s, 15 s and 15 s here). On a store of years,
make them first with CREATE INDEX CONCURRENTLY under the same names and definitions
(docs/auditor.md): the migration then finds them and goes on (IF NOT EXISTS).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every other column of audit_stats: the statistics page reads the index alone.
_ROLLUP_COLUMNS = ["agency", "service", "procedure", "outcome", "n", "duration_ms"]


def upgrade() -> None:
    op.create_index(
        "ix_audit_agency_service_started",
        "audit_records",
        ["client_agency_code", "service_code", "started_at"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_audit_stats_day_covering",
        "audit_stats",
        ["day"],
        postgresql_include=_ROLLUP_COLUMNS,
        if_not_exists=True,
    )
    op.create_index(
        "ix_audit_subjects_event_id", "audit_subjects", ["event_id"], if_not_exists=True
    )


def downgrade() -> None:
    op.drop_index("ix_audit_subjects_event_id", table_name="audit_subjects")
    op.drop_index("ix_audit_stats_day_covering", table_name="audit_stats")
    op.drop_index("ix_audit_agency_service_started", table_name="audit_records")
