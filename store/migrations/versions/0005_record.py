"""The record that outlives Temporal: each dossier's last `status` and `timeline` answers, and
the archived histories of its closed workflow runs (append-only).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

APPEND_ONLY = "archived_histories is append-only"

_SQLITE_GUARD = [
    f"""CREATE TRIGGER archived_histories_no_{verb.lower()} BEFORE {verb} ON archived_histories
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"""
    for verb in ("UPDATE", "DELETE")
]

_POSTGRESQL_GUARD = [
    f"""CREATE FUNCTION archived_histories_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation';
END
$$""",
    """CREATE TRIGGER archived_histories_no_update_delete
BEFORE UPDATE OR DELETE ON archived_histories
FOR EACH ROW EXECUTE FUNCTION archived_histories_append_only()""",
    """CREATE TRIGGER archived_histories_no_truncate BEFORE TRUNCATE ON archived_histories
FOR EACH STATEMENT EXECUTE FUNCTION archived_histories_append_only()""",
]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "dossier_snapshots" not in existing:
        op.create_table(
            "dossier_snapshots",
            sa.Column("code", sa.String(40), primary_key=True),
            sa.Column("view", sa.Text, nullable=False, comment="DossierView as JSON"),
            sa.Column("timeline", sa.Text, nullable=False, comment="list of TimelineEntry as JSON"),
            sa.Column("last_event_seq", sa.Integer, nullable=False),
            sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.text("false")),
        )
    if "archived_histories" in existing:
        return
    op.create_table(
        "archived_histories",
        sa.Column("workflow_id", sa.String(80), primary_key=True),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("workflow_type", sa.String(40), nullable=False),
        sa.Column("execution_status", sa.String(24), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("history_bytes", sa.Integer, nullable=False, comment="size before compression"),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("history", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_archived_histories_dossier", "archived_histories", ["dossier_code"])
    op.create_index("ix_archived_histories_closed", "archived_histories", ["closed_at"])
    guard = _POSTGRESQL_GUARD if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARD
    for statement in guard:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS archived_histories_no_truncate ON archived_histories")
        op.execute(
            "DROP TRIGGER IF EXISTS archived_histories_no_update_delete ON archived_histories"
        )
        op.execute("DROP FUNCTION IF EXISTS archived_histories_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS archived_histories_no_update")
        op.execute("DROP TRIGGER IF EXISTS archived_histories_no_delete")
    op.drop_table("archived_histories")
    op.drop_table("dossier_snapshots")
