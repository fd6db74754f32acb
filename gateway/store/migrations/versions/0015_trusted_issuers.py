"""trusted external token issuers (the national platform calling in), and the issuer of
the caller's token in audit records

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# audit_records.issuer is nullable without a default: rows from before name no issuer,
# and their chain hashes leave out a null issuer (HASHED_WHEN_SET), so they still verify.


def upgrade() -> None:
    op.create_table(
        "trusted_issuers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("issuer", sa.String(length=255), nullable=False, unique=True),
        sa.Column("jwks_url", sa.String(length=2048), nullable=False),
        sa.Column("audience", sa.String(length=255), nullable=False),
        sa.Column("algorithms", sa.JSON(), nullable=False),
        sa.Column("client_code", sa.String(length=64), nullable=False),
        sa.Column("max_token_lifetime_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
    )
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("issuer", sa.String(length=255), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite drops columns by copying the table.
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("issuer")
    op.drop_table("trusted_issuers")
