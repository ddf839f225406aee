"""The global audit log over every dossier's events, and its signed checkpoints; both
append-only, as audit_events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("audit_log", "audit_checkpoints")


def _sqlite_guard(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
        for verb in ("UPDATE", "DELETE")
    ]


_POSTGRESQL_FUNCTION = """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$"""


def _postgresql_guard(table: str) -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
        f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
        # TRUNCATE fires no row triggers: it needs its own, statement-level one.
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()""",
    ]


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    # Made by `metadata.create_all` before this revision: kept with its rows.
    if "audit_log" not in existing:
        op.create_table(
            "audit_log",
            sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("dossier_code", sa.String(40), nullable=False),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("leaf_hash", sa.String(64), nullable=False),
            sa.UniqueConstraint("dossier_code", "seq", name="uq_audit_log_event"),
        )
    if "audit_checkpoints" not in existing:
        op.create_table(
            "audit_checkpoints",
            sa.Column("tree_size", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("root_hash", sa.String(64), nullable=False),
            sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column(
                "key_id", sa.String(64), nullable=False, comment="SHA-256 of the raw public key"
            ),
            sa.Column(
                "public_key",
                sa.String(64),
                nullable=False,
                comment="raw Ed25519 public key, hex",
            ),
            sa.Column("signature", sa.String(128), nullable=False),
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRESQL_FUNCTION)
        for table in TABLES:
            for statement in _postgresql_guard(table):
                op.execute(statement)
    else:
        for table in TABLES:
            for statement in _sqlite_guard(table):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    for table in reversed(TABLES):
        op.drop_table(table)
