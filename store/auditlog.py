"""The global audit log in the database: every dossier's audit events in one Merkle tree,
signed checkpoints of it, the engine's own check of events, log and checkpoints together, and
the bundles an auditor verifies alone.

Each dossier's hash chain shows its events were not changed one by one; it cannot show that a
whole chain was not deleted or consistently rewritten. The log can: its checkpoints are signed
with the deployment's key, and a leaf commits to the whole event, chain hash included. The
hashing and the checks are auditlog/verify.py's, the same file the auditor runs.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict
from sqlalchemy import and_, func, select, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from auditlog import verify
from store.audit import as_logged, utc_text
from store.tables import audit_checkpoints, audit_events, audit_log

# Key of the PostgreSQL advisory lock one checkpointer holds while it appends and signs.
_CHECKPOINT_LOCK = 0x48414E4F49_0005  # "HANOI", 5
_INSERT_BATCH = 5000


class AuditLogError(RuntimeError):
    """The log cannot be extended or bundled as it stands; says why."""


class SigningKeyError(RuntimeError):
    """The checkpoint key cannot be used; says which file and why."""


# --- the deployment's key -----------------------------------------------------------------------
def signing_key(path: Path, notice: Callable[[str], None]) -> Ed25519PrivateKey:
    """The Ed25519 key that signs checkpoints; created (mode 0600) on first use, with a notice:
    whoever verifies bundles needs its public key id, and losing it ends the signatures."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if _create_private_file(path, pem):
            created = _load_key(path)
            notice(
                f"audit: created the checkpoint signing key {path} (mode 0600), key id "
                f"{public_key_id(created)}; keep it with the deployment's secrets and publish "
                "the key id to the auditors"
            )
            return created
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SigningKeyError(f"{path}: mode {mode:o} lets others read the key; chmod 600 {path}")
    return _load_key(path)


def _load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as wrong:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({wrong})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: an Ed25519 private key is needed")
    return key


def _create_private_file(path: Path, content: bytes) -> bool:
    # Written whole to a private temporary file, then linked into place: two processes
    # starting at once never read half a key, and the first one wins.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def public_key_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_id(key: Ed25519PrivateKey) -> str:
    return verify.key_id(public_key_raw(key))


# --- rows as the log sees them ------------------------------------------------------------------
def _checkpoint(row: Row[Any]) -> verify.Checkpoint:
    return verify.Checkpoint(
        tree_size=row.tree_size,
        root_hash=row.root_hash,
        signed_at=utc_text(row.signed_at),
        key_id=row.key_id,
        public_key=row.public_key,
        signature=row.signature,
    )


_EVENT_COLUMNS = [
    audit_events.c.dossier_code,
    audit_events.c.seq,
    audit_events.c.event_key,
    audit_events.c.event_type,
    audit_events.c.actor,
    audit_events.c.at,
    audit_events.c.payload_digest,
    audit_events.c.prev_hash,
    audit_events.c.hash,
]


async def checkpoints(conn: AsyncConnection) -> list[verify.Checkpoint]:
    rows = await conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size))
    return [_checkpoint(row) for row in rows]


async def _leaves(conn: AsyncConnection) -> dict[int, bytes]:
    rows = await conn.stream(
        select(audit_log.c.position, audit_log.c.leaf_hash).order_by(audit_log.c.position)
    )
    return {row.position: bytes.fromhex(row.leaf_hash) async for row in rows}


# --- the checkpointer ---------------------------------------------------------------------------
class CheckpointResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    appended: int
    tree_size: int
    root_hash: str
    signed_at: datetime | None  # None: nothing new, no new checkpoint
    key_id: str


async def checkpoint(
    conn: AsyncConnection, key: Ed25519PrivateKey, now: datetime
) -> CheckpointResult:
    """Append every audit event not yet in the log, in the order (dossier, sequence), and sign
    the new tree head. Run in one write transaction: the entries and their checkpoint commit
    together. One checkpointer at a time (an advisory lock on PostgreSQL; SQLite's write
    transaction holds the database from its start). A log that no longer matches its latest
    checkpoint is not extended: it is for `ops audit verify` to name what changed."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHECKPOINT_LOCK})
    leaves = await _leaves(conn)
    size = len(leaves)
    if size and max(leaves) != size - 1:
        raise AuditLogError(
            "the audit log has gaps in its positions: run `ops audit verify` to see which"
        )
    accumulator = verify.Accumulator()
    known = await checkpoints(conn)
    sizes = {c.tree_size: c for c in known}
    for position in range(size):
        accumulator.append(leaves[position])
        signed = sizes.get(accumulator.size)
        if signed is not None and accumulator.root().hex() != signed.root_hash:
            raise AuditLogError(
                f"the audit log does not match its checkpoint of tree size {signed.tree_size}: "
                "run `ops audit verify` to see what changed"
            )
    if known and known[-1].tree_size > size:
        raise AuditLogError(
            f"the audit log holds {size} entries, its latest checkpoint signed "
            f"{known[-1].tree_size}: run `ops audit verify`"
        )
    pending = await conn.execute(
        select(*_EVENT_COLUMNS)
        .select_from(
            audit_events.outerjoin(
                audit_log,
                and_(
                    audit_log.c.dossier_code == audit_events.c.dossier_code,
                    audit_log.c.seq == audit_events.c.seq,
                ),
            )
        )
        .where(audit_log.c.position.is_(None))
        .order_by(audit_events.c.dossier_code, audit_events.c.seq)
    )
    rows: list[dict[str, Any]] = []
    for row in pending:
        leaf = verify.event_leaf_hash(as_logged(row))
        accumulator.append(bytes.fromhex(leaf))
        rows.append(
            {
                "position": size + len(rows),
                "dossier_code": row.dossier_code,
                "seq": row.seq,
                "leaf_hash": leaf,
            }
        )
    root = accumulator.root().hex()
    key_id = public_key_id(key)
    if not rows:  # nothing new (or nothing at all): no checkpoint to sign
        return CheckpointResult(
            appended=0, tree_size=size, root_hash=root, signed_at=None, key_id=key_id
        )
    for start in range(0, len(rows), _INSERT_BATCH):
        await conn.execute(audit_log.insert(), rows[start : start + _INSERT_BATCH])
    signed_at = now.astimezone(UTC).replace(microsecond=0)
    tree_size = size + len(rows)
    message = verify.checkpoint_message(tree_size, root, utc_text(signed_at))
    await conn.execute(
        audit_checkpoints.insert().values(
            tree_size=tree_size,
            root_hash=root,
            signed_at=signed_at,
            key_id=key_id,
            public_key=public_key_raw(key).hex(),
            signature=key.sign(message).hex(),
        )
    )
    return CheckpointResult(
        appended=len(rows), tree_size=tree_size, root_hash=root, signed_at=signed_at, key_id=key_id
    )


# --- the engine's own check ---------------------------------------------------------------------
async def evidence(conn: AsyncConnection, code: str | None = None) -> verify.Evidence:
    """Everything the database holds, for `verify.examine`: every event (of one dossier when
    `code` is given), the whole log, every checkpoint."""
    query = select(*_EVENT_COLUMNS, audit_events.c.payload).order_by(
        audit_events.c.dossier_code, audit_events.c.seq
    )
    if code is not None:
        query = query.where(audit_events.c.dossier_code == code)
    events = [as_logged(row, with_payload=True) async for row in await conn.stream(query)]
    entries = [
        verify.Entry(row.position, row.dossier_code, row.seq, row.leaf_hash)
        async for row in await conn.stream(select(audit_log).order_by(audit_log.c.position))
    ]
    return verify.Evidence(
        events=events,
        entries=entries,
        checkpoints=await checkpoints(conn),
        unlogged_allowed=True,
        dossiers=None if code is None else frozenset({code}),
    )


async def check(conn: AsyncConnection, code: str | None = None) -> verify.Verdict:
    """Every dossier's chain, every event against its place in the log, the log against every
    signed checkpoint; every finding named. Needs nothing but the database."""
    return verify.examine(await evidence(conn, code))


# --- the auditor's bundle -----------------------------------------------------------------------
async def bundle(conn: AsyncConnection, start: datetime, end: datetime) -> dict[str, Any]:
    """One self-contained file for the events of [start, end): the log positions that cover
    them (and every logged event no longer in the database, wherever it was), those entries
    and events, the checkpoints around the period and the latest, and the proofs that let a
    verifier recompute the latest signed root from them alone."""
    known = await checkpoints(conn)
    if not known:
        raise AuditLogError("the audit log has no checkpoint yet: run `ops audit checkpoint`")
    latest = known[-1]
    size = latest.tree_size
    leaves = await _leaves(conn)
    joined = and_(
        audit_log.c.dossier_code == audit_events.c.dossier_code,
        audit_log.c.seq == audit_events.c.seq,
    )
    in_period = (
        await conn.execute(
            select(func.min(audit_log.c.position), func.max(audit_log.c.position))
            .select_from(audit_log.join(audit_events, joined))
            .where(
                audit_events.c.at >= start,
                audit_events.c.at < end,
                audit_log.c.position < size,
            )
        )
    ).one()
    # A logged event that is gone has no time: its position is in every bundle.
    gone = (
        await conn.execute(
            select(func.min(audit_log.c.position), func.max(audit_log.c.position))
            .select_from(audit_log.outerjoin(audit_events, joined))
            .where(audit_events.c.seq.is_(None), audit_log.c.position < size)
        )
    ).one()
    missing = [p for p in range(size) if p not in leaves]
    firsts = [p for p in (in_period[0], gone[0], *missing[:1]) if p is not None]
    lasts = [p + 1 for p in (in_period[1], gone[1], *missing[-1:]) if p is not None]
    if not firsts:
        raise AuditLogError(
            f"no checkpointed audit event from {start.isoformat()} to {end.isoformat()}: "
            "run `ops audit checkpoint` first when the period is recent"
        )
    first, last = min(firsts), max(lasts)
    if max(leaves, default=-1) < size - 1:
        last = size  # the log ends short of its checkpoint: the bundle shows where
    padded = [leaves.get(p, b"") for p in range(size)]
    proof = verify.range_proof(padded, first, last)

    entries = [
        {
            "position": r.position,
            "dossier_code": r.dossier_code,
            "seq": r.seq,
            "leaf_hash": r.leaf_hash,
        }
        for r in await conn.execute(
            select(audit_log)
            .where(audit_log.c.position >= first, audit_log.c.position < last)
            .order_by(audit_log.c.position)
        )
    ]
    events = [
        as_logged(row, with_payload=True)
        for row in await conn.execute(
            select(*_EVENT_COLUMNS, audit_events.c.payload)
            .select_from(audit_events.join(audit_log, joined))
            .where(audit_log.c.position >= first, audit_log.c.position < last)
            .order_by(audit_log.c.position)
        )
    ]
    chosen = _around(known, start, end)
    consistency = [
        {
            "old_size": c.tree_size,
            "proof": [h.hex() for h in verify.consistency_proof(padded, c.tree_size)],
        }
        for c in chosen[:-1]
        if c.tree_size > 0
    ]
    return {
        "format": verify.BUNDLE_FORMAT,
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "public_key": latest.public_key,
        "key_id": latest.key_id,
        "checkpoints": [_checkpoint_json(c) for c in chosen],
        "range": {"start": first, "end": last},
        "range_proof": [h.hex() for h in proof],
        "consistency": consistency,
        "entries": entries,
        "events": [_event_json(e) for e in events],
    }


def _around(
    known: Sequence[verify.Checkpoint], start: datetime, end: datetime
) -> list[verify.Checkpoint]:
    """The last checkpoint signed before the period, the first signed after it, the latest."""

    def signed(c: verify.Checkpoint) -> datetime:
        return datetime.fromisoformat(c.signed_at)

    before = [c for c in known if signed(c) < start]
    after = [c for c in known if signed(c) >= end]
    chosen = {c.tree_size: c for c in (*before[-1:], *after[:1], known[-1])}
    return [chosen[size] for size in sorted(chosen)]


def _checkpoint_json(checkpoint: verify.Checkpoint) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": checkpoint.root_hash,
        "signed_at": checkpoint.signed_at,
        "key_id": checkpoint.key_id,
        "public_key": checkpoint.public_key,
        "signature": checkpoint.signature,
    }


def _event_json(event: verify.Event) -> dict[str, Any]:
    return {
        "dossier_code": event.dossier_code,
        "seq": event.seq,
        "event_key": event.event_key,
        "event_type": event.event_type,
        "actor": event.actor,
        "at": event.at,
        "payload_digest": event.payload_digest,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "payload": event.payload,
    }
