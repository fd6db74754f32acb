"""accounts signed in through the province's OpenID provider: the issuer and subject
(`sub`) an account is linked to; passkeys (WebAuthn credentials) and the challenge a
console session's page was given

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as t:
        t.add_column(sa.Column("external_subject", sa.String(length=512), nullable=True))
        t.create_unique_constraint("uq_accounts_external_subject", ["external_subject"])
    with op.batch_alter_table("console_sessions") as t:
        t.add_column(sa.Column("challenge", sa.String(length=128), nullable=True))
    op.create_table(
        "passkeys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("credential_id", sa.String(length=1400), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_passkeys_account", "passkeys", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_passkeys_account", table_name="passkeys")
    op.drop_table("passkeys")
    with op.batch_alter_table("console_sessions") as t:
        t.drop_column("challenge")
    with op.batch_alter_table("accounts") as t:
        t.drop_constraint("uq_accounts_external_subject", type_="unique")
        t.drop_column("external_subject")
