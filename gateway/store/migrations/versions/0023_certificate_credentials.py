"""credentials: certificate pins (a system authenticating by its TLS client certificate)

A credential of kind "certificate" pins a system's client certificate by the SHA-256 of
its public key or by its subject DN; `secret_sha256` holds the pin's digest (looked up per
connection like the others) and `pin` the pin itself, which is no secret, for listings.

Revision ID: 0023
Revises: 0021
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("pin", sa.String(length=1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("pin")
