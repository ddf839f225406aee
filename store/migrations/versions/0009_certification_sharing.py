"""Surge sharing of a unit's certification lane with its neighbours' certifiers; when an
open task was escalated to its unit's leader.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "escalated_at" not in {c["name"] for c in inspector.get_columns("tasks")}:
        op.add_column("tasks", sa.Column("escalated_at", _instant()))
    if "certification_sharing" in set(inspector.get_table_names()):
        return
    op.create_table(
        "certification_sharing",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("neighbour", sa.String(64), nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_at", _instant(), nullable=False),
        sa.Column("until", _instant(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.String(120), nullable=False),
        sa.Column("closed_at", _instant()),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("close_reason", sa.Text),
    )
    op.create_index(
        "ix_certification_sharing_neighbour", "certification_sharing", ["neighbour", "unit"]
    )
    op.create_index("ix_certification_sharing_unit", "certification_sharing", ["unit"])


def downgrade() -> None:
    op.drop_index("ix_certification_sharing_unit", "certification_sharing")
    op.drop_index("ix_certification_sharing_neighbour", "certification_sharing")
    op.drop_table("certification_sharing")
    op.drop_column("tasks", "escalated_at")
