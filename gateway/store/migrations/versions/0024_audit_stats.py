"""audit_stats: the statistics roll-up (gateway/audit/stats.py), filled from the records

Exchanges and the sum of their durations per Vietnam-time day ('YYYY-MM-DD'; the page's
months are its first seven characters), agency, service,
procedure and outcome, counted one row per exchange as the statistics page counts them (a
two-phase exchange's intent only while it has no outcome). From here on the store keeps
it as it writes and purges records.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DAY = {
    "postgresql": "to_char(timezone('Asia/Ho_Chi_Minh', r.started_at), 'YYYY-MM-DD')",
    "sqlite": "strftime('%Y-%m-%d', r.started_at, '+7 hours')",
}
_FILL = """
INSERT INTO audit_stats (day, agency, service, procedure, outcome, n, duration_ms)
SELECT {day}, coalesce(r.client_agency_code, ''), coalesce(r.service_code, ''),
       coalesce(r.procedure_code, ''),
       CASE WHEN r.status < 400 THEN 'success' WHEN r.status < 500 THEN 'refused'
            ELSE 'failed' END,
       count(*), sum(r.duration_ms)
FROM audit_records r
WHERE r.phase IS NULL OR r.phase != 'intent'
   OR NOT EXISTS (SELECT 1 FROM audit_records o WHERE o.intent_id = r.event_id)
GROUP BY 1, 2, 3, 4, 5
"""


def upgrade() -> None:
    op.create_table(
        "audit_stats",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("agency", sa.String(length=35), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("procedure", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day", "agency", "service", "procedure", "outcome"),
    )
    dialect = op.get_bind().dialect.name
    op.execute(_FILL.format(day=_DAY.get(dialect, _DAY["sqlite"])))


def downgrade() -> None:
    op.drop_table("audit_stats")
