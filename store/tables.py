"""The engine's tables. Temporal holds the truth; these are what lists, inboxes, KPIs and
auditors read. Schema changes go through the Alembic migrations in store/migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from store.db import metadata


class UTCDateTime(TypeDecorator[datetime]):
    """Instants stored in UTC on every backend: SQLite keeps no offset, so a +07:00 appointment
    written as is would read back seven hours off."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every stored instant carries its offset")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


sequences = Table(
    "sequences",
    metadata,
    Column("scope", String(120), primary_key=True),
    Column("last_value", Integer, nullable=False),
)

# The number each dossier holds in a certification book (scope: the unit's book of the year).
# A number belongs to one dossier, and a dossier has one number per book.
book_entries = Table(
    "book_entries",
    metadata,
    Column("scope", String(120), primary_key=True),
    Column("dossier_code", String(40), primary_key=True),
    Column("number", Integer, nullable=False),
    UniqueConstraint("scope", "number", name="uq_book_entries_number"),
)

# The catalogue, versioned: a dossier keeps the version it was filed under.
procedures = Table(
    "procedures",
    metadata,
    Column("code", String(16), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("tier", String(16), nullable=False),
    Column("definition", Text, nullable=False, comment="the catalogue entry as JSON"),
    Column("loaded_at", UTCDateTime(), nullable=False),
)

# One row per dossier: its latest state, for lists and KPIs.
dossiers = Table(
    "dossiers",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("procedure_code", String(16), nullable=False),
    Column("procedure_version", Integer, nullable=False),
    Column("receiving_unit", String(64), nullable=False),
    Column("competent_unit", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("lane", String(32), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("portal_status_code", Integer, nullable=False),
    Column("outcome", String(32)),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime()),
    Column("paused_working_seconds", Integer, nullable=False, server_default="0"),
    Column("overdue", Boolean, nullable=False, server_default=text("false")),
    Column("apologized", Boolean, nullable=False, server_default=text("false")),
    Column("result_ready_at", UTCDateTime()),
    Column("closed_at", UTCDateTime()),
    Column("on_time", Boolean),
    Column("applicant_ref", String(32), nullable=False),
    Column("last_event_seq", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # How the citizen filed: counter, online (the national portal) or post.
    Column("intake_channel", String(16), nullable=False, server_default="counter"),
    # On-time ratio per unit, per procedure and per period: closed dossiers by close time.
    Index("ix_dossiers_receiving_closed", "receiving_unit", "closed_at"),
    Index("ix_dossiers_competent_closed", "competent_unit", "closed_at"),
    Index("ix_dossiers_procedure_closed", "procedure_code", "closed_at"),
    Index("ix_dossiers_closed", "closed_at"),
    # Past due: open dossiers by appointment.
    Index(
        "ix_dossiers_open_due",
        "due_at",
        postgresql_where=text("closed_at IS NULL"),
        sqlite_where=text("closed_at IS NULL"),
    ),
    Index("ix_dossiers_status_received", "status", "received_at"),
    # The API's lists: a unit's dossiers, newest received first, keyset-paged.
    Index("ix_dossiers_receiving_received", "receiving_unit", "received_at", "code"),
    Index("ix_dossiers_competent_received", "competent_unit", "received_at", "code"),
    # The console's dashboard: what the city received, by day, and each unit's backlog.
    Index("ix_dossiers_received", "received_at"),
    Index("ix_dossiers_applicant_received", "applicant_ref", "received_at"),
    Index(
        "ix_dossiers_open_competent",
        "competent_unit",
        "tier",
        "due_at",
        postgresql_where=text("closed_at IS NULL"),
        sqlite_where=text("closed_at IS NULL"),
    ),
)

# The officers' inbox: what each unit and role is awaited for.
tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dossier_code", String(40), nullable=False),
    Column("action", String(32), nullable=False),
    Column("unit", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("since", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime()),
    Column("claimed_by", String(64)),
    # When the task, waiting past its unit's threshold, went to the unit's leader.
    Column("escalated_at", UTCDateTime()),
    Column("done_at", UTCDateTime()),
    Column("done_by", String(64)),
    UniqueConstraint("dossier_code", "action", "unit", "role", "since", name="uq_tasks_step"),
    Index(
        "ix_tasks_open_inbox",
        "unit",
        "role",
        "due_at",
        postgresql_where=text("done_at IS NULL"),
        sqlite_where=text("done_at IS NULL"),
    ),
    Index("ix_tasks_dossier", "dossier_code"),
)

# A dossier as its workflow last showed it: the `status` and `timeline` answers as JSON,
# written with each step. Closed dossiers are read from here, not replayed on a worker, and
# stay readable after Temporal has deleted their histories.
dossier_snapshots = Table(
    "dossier_snapshots",
    metadata,
    Column("code", String(40), primary_key=True),
    Column("view", Text, nullable=False, comment="DossierView as JSON"),
    Column("timeline", Text, nullable=False, comment="list of TimelineEntry as JSON"),
    Column("last_event_seq", Integer, nullable=False),
    Column("closed", Boolean, nullable=False, server_default=text("false")),
)

# Every closed run of a dossier's workflows, its history copied from Temporal before the
# namespace's retention deletes it: the protobuf History, payloads encrypted as stored,
# zlib-compressed, with the SHA-256 of the uncompressed bytes. Only the archiver writes here;
# triggers refuse UPDATE and DELETE.
archived_histories = Table(
    "archived_histories",
    metadata,
    Column("workflow_id", String(80), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("dossier_code", String(40), nullable=False),
    Column("workflow_type", String(40), nullable=False),
    Column("execution_status", String(24), nullable=False),
    Column("closed_at", UTCDateTime(), nullable=False),
    Column("archived_at", UTCDateTime(), nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("history_bytes", Integer, nullable=False, comment="size before compression"),
    Column("sha256", String(64), nullable=False),
    Column("history", LargeBinary, nullable=False),
    Index("ix_archived_histories_dossier", "dossier_code"),
    Index("ix_archived_histories_closed", "closed_at"),
)

# Append-only and hash-chained per dossier; triggers refuse UPDATE and DELETE.
audit_events = Table(
    "audit_events",
    metadata,
    Column("dossier_code", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column(
        "event_key",
        String(120),
        nullable=False,
        comment="run id and timeline index, or operator:<uuid>",
    ),
    Column("event_type", String(64), nullable=False),
    Column("actor", String(120), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("payload", Text, nullable=False, comment="canonical JSON of the event"),
    Column("payload_digest", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("dossier_code", "event_key", name="uq_audit_events_key"),
)

# The global audit log over every dossier's events: position -> event and its leaf hash in the
# Merkle tree (auditlog/verify.py). Positions are given by the checkpointer alone; append-only.
audit_log = Table(
    "audit_log",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("dossier_code", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("leaf_hash", String(64), nullable=False),
    UniqueConstraint("dossier_code", "seq", name="uq_audit_log_event"),
)

# The log's signed tree heads: the deployment's Ed25519 signature over (tree size, root, time).
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", Integer, primary_key=True, autoincrement=False),
    Column("root_hash", String(64), nullable=False),
    Column("signed_at", UTCDateTime(), nullable=False),
    Column("key_id", String(64), nullable=False, comment="SHA-256 of the raw public key"),
    Column("public_key", String(64), nullable=False, comment="raw Ed25519 public key, hex"),
    Column("signature", String(128), nullable=False),
)

# --- the HTTP API ------------------------------------------------------------------------------
# Keys of the integrating systems (counter and portal software), stored hashed; each bound to
# the units it acts for and the roles it may act as.
api_keys = Table(
    "api_keys",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("key_prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("units", Text, nullable=False),  # comma-separated unit codes
    Column("roles", Text, nullable=False),  # comma-separated roles
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
)

# One submission per (system, Idempotency-Key): a retried POST returns the same dossier.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("body_digest", String(64), nullable=False),
    Column("dossier_code", String(40), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("system", String(64), nullable=False),
    Column("unit", String(64), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", String(128), nullable=False),  # the HMAC-SHA256 key of the signatures
    Column("created_at", UTCDateTime(), nullable=False),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Index("ix_webhook_subscriptions_unit", "unit"),
)

# Which subscription has received which status change: a retried delivery skips them.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("event_id", String(120), primary_key=True),
    Column("subscription_id", String(36), primary_key=True),
    Column("delivered_at", UTCDateTime(), nullable=False),
    Column("status_code", Integer, nullable=False),
)

# What only informs the outside world (portal syncs, notifications, webhooks): one row per
# message, written in the transaction of the step that causes it and delivered after it by
# the drainer, in order per dossier and destination. `message_key` makes a retried step's
# write a no-op; attempts, the last error and the next attempt survive a restart; the lease
# keeps two drainers off one row.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_key", String(200), nullable=False, unique=True),
    Column("dossier_code", String(40), nullable=False),
    Column("sequence", Integer, nullable=False),  # the step's seq in the dossier's audit chain
    Column("event_key", String(120), nullable=False),
    Column("kind", String(16), nullable=False),  # portal_sync | notification | webhook
    Column("destination", String(64), nullable=False),  # portal | notify | webhook:<id>
    Column("subscription_id", String(36)),
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | refused | failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    Column("status_code", Integer),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("event_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime()),
    Column("lease_until", UTCDateTime()),
    Column("leased_by", String(64)),
    Index("ix_outbox_due", "state", "next_attempt_at"),
    Index("ix_outbox_queue", "dossier_code", "destination", "id"),
    Index("ix_outbox_subscription", "subscription_id", "id"),
)


# --- the web console ----------------------------------------------------------------------------
# The people who sign in to the console: city leaders, unit leaders, operators, auditors.
# Passwords are Argon2id hashes; a disabled account keeps its row (the audit names it).
console_users = Table(
    "console_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("full_name", String(120), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("roles", Text, nullable=False),  # comma-separated console roles
    Column("unit", String(64)),  # the unit a unit leader leads
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime()),
)

# What was done in the console and by whom: sign-ins (refused ones too, which the login rate
# limit counts), downloads, operator actions, refusals. Append-only: triggers refuse UPDATE
# and DELETE. Operator actions are also in the dossier's own audit chain (ops retry, reset).
console_events = Table(
    "console_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("username", String(64), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", String(200), nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    Index("ix_console_events_user", "username", "at"),
    Index("ix_console_events_ip", "client_ip", "at"),
)

# A leader opened the unit's certification lane to a neighbour's certifiers for a period (a
# surge): one row per neighbour. Closing sets closed_at; rows are never deleted, so the table
# is the record of who opened and closed each sharing (the steps taken under it are in the
# dossiers' timelines and audit chains).
certification_sharing = Table(
    "certification_sharing",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("unit", String(64), nullable=False),
    Column("neighbour", String(64), nullable=False),
    Column("opened_by", String(64), nullable=False),
    Column("opened_at", UTCDateTime(), nullable=False),
    Column("until", UTCDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
    Column("recorded_by", String(120), nullable=False),
    Column("closed_at", UTCDateTime()),
    Column("closed_by", String(64)),
    Column("close_reason", Text),
    Index("ix_certification_sharing_neighbour", "neighbour", "unit"),
    Index("ix_certification_sharing_unit", "unit"),
)
