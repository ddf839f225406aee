"""Indexes for the API's dossier lists: a unit's dossiers, newest received first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

INDEXES = {
    "ix_dossiers_receiving_received": ["receiving_unit", "received_at", "code"],
    "ix_dossiers_competent_received": ["competent_unit", "received_at", "code"],
}


def upgrade() -> None:
    existing = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("dossiers")}
    for name, columns in INDEXES.items():
        if name not in existing:
            op.create_index(name, "dossiers", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, "dossiers")
