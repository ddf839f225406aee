"""The outbox: portal syncs, notifications and webhooks written with the step that causes
them, delivered after it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    if "outbox" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_key", sa.String(200), nullable=False, unique=True),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("event_key", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.String(36)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text),
        sa.Column("status_code", sa.Integer),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("event_at", _instant(), nullable=False),
        sa.Column("next_attempt_at", _instant(), nullable=False),
        sa.Column("delivered_at", _instant()),
        sa.Column("lease_until", _instant()),
        sa.Column("leased_by", sa.String(64)),
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "next_attempt_at"])
    op.create_index("ix_outbox_queue", "outbox", ["dossier_code", "destination", "id"])
    op.create_index("ix_outbox_subscription", "outbox", ["subscription_id", "id"])


def downgrade() -> None:
    op.drop_table("outbox")
