"""accounts signed in through the province's OpenID provider: the issuer and subject
(`sub`) an account is linked to

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as t:
        t.add_column(sa.Column("external_subject", sa.String(length=512), nullable=True))
        t.create_unique_constraint("uq_accounts_external_subject", ["external_subject"])


def downgrade() -> None:
    with op.batch_alter_table("accounts") as t:
        t.drop_constraint("uq_accounts_external_subject", type_="unique")
        t.drop_column("external_subject")
