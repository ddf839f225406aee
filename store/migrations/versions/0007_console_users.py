"""The web console: its accounts and its own audit record (append-only); each dossier's intake
channel; the indexes of the dashboard's queries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

APPEND_ONLY = "console_events is append-only"

_SQLITE_GUARD = [
    f"""CREATE TRIGGER console_events_no_{verb.lower()} BEFORE {verb} ON console_events
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"""
    for verb in ("UPDATE", "DELETE")
]

_POSTGRESQL_GUARD = [
    f"""CREATE FUNCTION console_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation';
END
$$""",
    """CREATE TRIGGER console_events_no_update_delete
BEFORE UPDATE OR DELETE ON console_events
FOR EACH ROW EXECUTE FUNCTION console_events_append_only()""",
    """CREATE TRIGGER console_events_no_truncate BEFORE TRUNCATE ON console_events
FOR EACH STATEMENT EXECUTE FUNCTION console_events_append_only()""",
]


def _instant() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("dossiers")}
    if "intake_channel" not in columns:
        op.add_column(
            "dossiers",
            sa.Column("intake_channel", sa.String(16), nullable=False, server_default="counter"),
        )
    indexes = {i["name"] for i in inspector.get_indexes("dossiers")}
    if "ix_dossiers_received" not in indexes:
        op.create_index("ix_dossiers_received", "dossiers", ["received_at"])
    if "ix_dossiers_applicant_received" not in indexes:
        op.create_index(
            "ix_dossiers_applicant_received", "dossiers", ["applicant_ref", "received_at"]
        )
    if "ix_dossiers_open_competent" not in indexes:
        op.create_index(
            "ix_dossiers_open_competent",
            "dossiers",
            ["competent_unit", "tier", "due_at"],
            postgresql_where=sa.text("closed_at IS NULL"),
            sqlite_where=sa.text("closed_at IS NULL"),
        )
    if "console_users" not in existing:
        op.create_table(
            "console_users",
            sa.Column("username", sa.String(64), primary_key=True),
            sa.Column("full_name", sa.String(120), nullable=False),
            sa.Column("password_hash", sa.String(200), nullable=False),
            sa.Column("roles", sa.Text, nullable=False),
            sa.Column("unit", sa.String(64)),
            sa.Column("created_at", _instant(), nullable=False),
            sa.Column("disabled_at", _instant()),
        )
    if "console_events" in existing:
        return
    op.create_table(
        "console_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _instant(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(200), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_console_events_user", "console_events", ["username", "at"])
    op.create_index("ix_console_events_ip", "console_events", ["client_ip", "at"])
    guard = _POSTGRESQL_GUARD if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARD
    for statement in guard:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS console_events_no_truncate ON console_events")
        op.execute("DROP TRIGGER IF EXISTS console_events_no_update_delete ON console_events")
        op.execute("DROP FUNCTION IF EXISTS console_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS console_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS console_events_no_delete")
    op.drop_table("console_events")
    op.drop_table("console_users")
    op.drop_index("ix_dossiers_open_competent", "dossiers")
    op.drop_index("ix_dossiers_applicant_received", "dossiers")
    op.drop_index("ix_dossiers_received", "dossiers")
    with op.batch_alter_table("dossiers") as batch:
        batch.drop_column("intake_channel")
