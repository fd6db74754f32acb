"""store-and-forward: services declared async, and the messages they keep; event
deliveries' ordering index with `state`, so the claim's "earlier pending delivery of this
key?" is one seek instead of a walk over the key's delivered history

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # NULL: a synchronous service, as every service was before.
    op.add_column("services", sa.Column("async_delivery", sa.JSON(), nullable=True))
    op.create_table(
        "deferred_messages",
        sa.Column("id", _BIG, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(length=36), nullable=False, unique=True),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("accept_event_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=35), nullable=False),
        sa.Column("service_code", sa.String(length=64), nullable=False),
        sa.Column("service_version", sa.String(length=16), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("client_code", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("path", sa.String(length=4096), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("context", sa.JSON()),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=128)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("last_status", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("settled_at", sa.DateTime(timezone=True)),
        sa.Column("answer_status", sa.Integer()),
        sa.Column("answer_headers", sa.JSON()),
        sa.Column("answer_body", sa.LargeBinary()),
    )
    op.create_index("ix_deferred_messages_due", "deferred_messages", ["state", "next_attempt_at"])
    op.create_index(
        "ix_event_deliveries_pending_order",
        "event_deliveries",
        ["subscription_id", "order_key", "state", "event_seq"],
    )
    op.drop_index("ix_event_deliveries_order", table_name="event_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_event_deliveries_order",
        "event_deliveries",
        ["subscription_id", "order_key", "event_seq"],
    )
    op.drop_index("ix_event_deliveries_pending_order", table_name="event_deliveries")
    op.drop_table("deferred_messages")
    with op.batch_alter_table("services") as batch:
        batch.drop_column("async_delivery")
