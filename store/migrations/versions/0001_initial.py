"""Initial schema: sequences, procedures, dossiers, tasks and the append-only audit log.

Written by hand from store/tables.py so that it never changes with the live metadata.

Databases made before migrations existed (`metadata.create_all`, no alembic_version) are
adopted: a table that already exists is kept with its rows (its columns are checked against
this revision) and only what is missing is created.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

APPEND_ONLY = "audit_events is append-only"

_SQLITE_GUARD = [
    f"""CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"""
    for verb in ("UPDATE", "DELETE")
]

_POSTGRESQL_GUARD = [
    f"""CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'restrict_violation';
END
$$""",
    """CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    # TRUNCATE fires no row triggers: it needs its own, statement-level one.
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
]


def _sequences() -> list[SchemaItem]:
    return [
        sa.Column("scope", sa.String(120), primary_key=True),
        sa.Column("last_value", sa.Integer, nullable=False),
    ]


def _procedures() -> list[SchemaItem]:
    return [
        sa.Column("code", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("definition", sa.Text, nullable=False, comment="the catalogue entry as JSON"),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _dossiers() -> list[SchemaItem]:
    return [
        sa.Column("code", sa.String(40), primary_key=True),
        sa.Column("procedure_code", sa.String(16), nullable=False),
        sa.Column("procedure_version", sa.Integer, nullable=False),
        sa.Column("receiving_unit", sa.String(64), nullable=False),
        sa.Column("competent_unit", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("lane", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("portal_status_code", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("paused_working_seconds", sa.Integer, nullable=False, server_default="0"),
        sa.Column("overdue", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("apologized", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("result_ready_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("on_time", sa.Boolean),
        sa.Column("applicant_ref", sa.String(32), nullable=False),
        sa.Column("last_event_seq", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _tasks() -> list[SchemaItem]:
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dossier_code", sa.String(40), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True)),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("done_by", sa.String(64)),
        sa.UniqueConstraint(
            "dossier_code", "action", "unit", "role", "since", name="uq_tasks_step"
        ),
    ]


def _audit_events() -> list[SchemaItem]:
    return [
        sa.Column("dossier_code", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column(
            "event_key",
            sa.String(120),
            nullable=False,
            comment="run id and timeline index, or operator:<uuid>",
        ),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False, comment="canonical JSON of the event"),
        sa.Column("payload_digest", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("dossier_code", "event_key", name="uq_audit_events_key"),
    ]


# Fresh objects on each call: a Column belongs to the one table it is given to.
_TABLES: dict[str, Callable[[], list[SchemaItem]]] = {
    "sequences": _sequences,
    "procedures": _procedures,
    "dossiers": _dossiers,
    "tasks": _tasks,
    "audit_events": _audit_events,
}

# Columns later revisions add to these tables (0006: dossiers.intake_channel; 0009:
# tasks.escalated_at): a table made by create_all from today's tables.py has them already, and
# those revisions keep them.
_ADDED_LATER: dict[str, set[str]] = {"dossiers": {"intake_channel"}, "tasks": {"escalated_at"}}

_OPEN_DOSSIER = "closed_at IS NULL"
_OPEN_TASK = "done_at IS NULL"

# name: (table, columns, partial-index predicate or None)
_INDEXES: dict[str, tuple[str, list[str], str | None]] = {
    # On-time ratio per unit, per procedure and per period: closed dossiers by close time.
    "ix_dossiers_receiving_closed": ("dossiers", ["receiving_unit", "closed_at"], None),
    "ix_dossiers_competent_closed": ("dossiers", ["competent_unit", "closed_at"], None),
    "ix_dossiers_procedure_closed": ("dossiers", ["procedure_code", "closed_at"], None),
    "ix_dossiers_closed": ("dossiers", ["closed_at"], None),
    # Past due: open dossiers by appointment.
    "ix_dossiers_open_due": ("dossiers", ["due_at"], _OPEN_DOSSIER),
    "ix_dossiers_status_received": ("dossiers", ["status", "received_at"], None),
    # The officers' inbox.
    "ix_tasks_open_inbox": ("tasks", ["unit", "role", "due_at"], _OPEN_TASK),
    "ix_tasks_dossier": ("tasks", ["dossier_code"], None),
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, items in _TABLES.items():
        if name not in existing:
            op.create_table(name, *items())
            continue
        have = {column["name"] for column in inspector.get_columns(name)}
        want = {item.name for item in items() if isinstance(item, sa.Column)}
        if have - _ADDED_LATER.get(name, set()) != want:
            raise RuntimeError(
                f"table {name} exists with columns {sorted(have)}, expected {sorted(want)}: "
                "it was not made by this engine's schema"
            )
    # Only an adopted table can already carry its indexes (create_all makes them too).
    indexed = {index["name"] for name in existing for index in inspector.get_indexes(name)}
    for name, (table, columns, where) in _INDEXES.items():
        if name not in indexed:
            partial = sa.text(where) if where else None
            op.create_index(name, table, columns, postgresql_where=partial, sqlite_where=partial)

    guard = _POSTGRESQL_GUARD if op.get_bind().dialect.name == "postgresql" else _SQLITE_GUARD
    for statement in guard:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    for name, (table, _columns, _where) in reversed(_INDEXES.items()):
        op.drop_index(name, table_name=table)
    for name in reversed(_TABLES):
        op.drop_table(name)
