"""Certification-book entries: the number each dossier holds in its book.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if "book_entries" in sa.inspect(op.get_bind()).get_table_names():
        return  # made by `metadata.create_all` before this revision: keep it with its rows
    op.create_table(
        "book_entries",
        sa.Column("scope", sa.String(120), primary_key=True),
        sa.Column("dossier_code", sa.String(40), primary_key=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.UniqueConstraint("scope", "number", name="uq_book_entries_number"),
    )


def downgrade() -> None:
    op.drop_table("book_entries")
