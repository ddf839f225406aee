"""The HTTP API's tables: API keys, idempotency keys, webhook subscriptions and deliveries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    # A database made by `metadata.create_all` before migrations (adopted by 0001) may hold
    # these tables already: keep them.
    existing = set(sa.inspect(op.get_bind()).get_table_names())

    def create_table(name: str, *items: sa.schema.SchemaItem) -> None:
        if name not in existing:
            op.create_table(name, *items)

    create_table(
        "api_keys",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("key_prefix", sa.String(16), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("units", sa.Text, nullable=False),
        sa.Column("roles", sa.Text, nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("revoked_at", _instant()),
    )
    create_table(
        "idempotency_keys",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("body_digest", sa.String(64), nullable=False),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("received_at", _instant(), nullable=False),
        sa.Column("due_at", _instant(), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
    )
    create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", _instant(), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.text("true")),
    )
    if "webhook_subscriptions" not in existing:
        op.create_index("ix_webhook_subscriptions_unit", "webhook_subscriptions", ["unit"])
    create_table(
        "webhook_deliveries",
        sa.Column("event_id", sa.String(120), primary_key=True),
        sa.Column("subscription_id", sa.String(36), primary_key=True),
        sa.Column("delivered_at", _instant(), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_subscriptions_unit", "webhook_subscriptions")
    op.drop_table("webhook_subscriptions")
    op.drop_table("idempotency_keys")
    op.drop_table("api_keys")
