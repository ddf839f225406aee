"""The global audit log's hashing, proofs and checks, and the auditor's standalone verifier.

    pip install cryptography
    python verify.py bundle.json [--key-id HEX] [--json]

This one file is what an auditor copies to a machine that has nothing of the engine: it needs
only the Python standard library and `cryptography`. The engine imports the same file to build
the log, the checkpoints and the bundles, so there is one implementation of every hash.

The log is a Merkle tree over every dossier's audit events, hashed as Certificate Transparency
does (RFC 6962 / RFC 9162): leaf = SHA-256(0x00 || leaf bytes), node = SHA-256(0x01 || left ||
right), a tree of n leaves split at the largest power of two smaller than n. The leaf bytes are
the canonical JSON of the whole event (its chain hash included). A checkpoint is the deployment's
Ed25519 signature over (tree size, root, time). Exit code 0 when everything holds, 1 when
anything does not (every dossier and event that does not hold is named), 2 for a file that is
not a bundle.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_FORMAT = "hanoi-dossier-audit-bundle/1"
# The first line of every signed checkpoint: a signature made for anything else never passes.
CHECKPOINT_ORIGIN = "hanoi-dossier-audit-log/1"
GENESIS = "0" * 64  # the previous hash of a dossier's first event
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()

LEAF_FIELDS = (
    "dossier_code",
    "seq",
    "event_key",
    "event_type",
    "actor",
    "at",
    "payload_digest",
    "prev_hash",
    "hash",
)


class ProofError(ValueError):
    """A proof of the wrong shape for the tree it claims to be about."""


class BundleError(ValueError):
    """The file is not a bundle this verifier reads; says which field and why."""


# --- RFC 6962 hashing ---------------------------------------------------------------------------
def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of these leaf hashes (MTH of RFC 6962)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    accumulator = Accumulator()
    for leaf in leaves:
        accumulator.append(leaf)
    return accumulator.root()


class Accumulator:
    """The tree grown one leaf at a time, holding only its perfect subtrees (one per bit of
    the size): the root at every size costs a few hashes, not a pass over the log."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (height, hash), largest first

    def append(self, leaf: bytes) -> None:
        height, digest = 0, leaf
        while self._peaks and self._peaks[-1][0] == height:
            _, left = self._peaks.pop()
            digest = node_hash(left, digest)
            height += 1
        self._peaks.append((height, digest))
        self.size += 1

    def root(self) -> bytes:
        if not self._peaks:
            return hashlib.sha256(b"").digest()
        # A tree of 2^a + 2^b + ... leaves (a > b > ...) is node(T_a, node(T_b, ...)).
        digest = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            digest = node_hash(left, digest)
        return digest


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of these leaves (RFC 6962 PATH)."""
    if not 0 <= index < len(leaves):
        raise ProofError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = split_point(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root_of(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root_of(leaves[:k])]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that leaf `index` and its audit path make (RFC 9162 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn, digest = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the path")
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the path")
    return digest


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first `old_size` leaves is a prefix of this one
    (RFC 6962 PROOF)."""
    if not 0 < old_size <= len(leaves):
        raise ProofError(f"no consistency proof from {old_size} to {len(leaves)}")
    return _subproof(leaves, old_size, True)


def _subproof(leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = split_point(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete), root_of(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, False), root_of(leaves[:k])]


def consistency_holds(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether `proof` shows the old tree to be a prefix of the new one (RFC 9162 2.1.4.2)."""
    if old_size > new_size or old_size < 0:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def range_proof(leaves: Sequence[bytes], start: int, end: int) -> list[bytes]:
    """What a verifier holding only leaves [start, end) needs to recompute the root: the
    hashes of the largest subtrees outside the range, left to right."""
    if not 0 <= start < end <= len(leaves):
        raise ProofError(f"range {start}..{end} is not in a tree of {len(leaves)}")
    proof: list[bytes] = []

    def walk(lo: int, hi: int) -> None:
        if hi <= start or lo >= end:
            proof.append(root_of(leaves[lo:hi]))
        elif not (start <= lo and hi <= end):
            k = split_point(hi - lo)
            walk(lo, lo + k)
            walk(lo + k, hi)

    walk(0, len(leaves))
    return proof


def root_from_range(
    size: int, start: int, in_range: Sequence[bytes], proof: Sequence[bytes]
) -> bytes:
    """The root of a tree of `size` leaves from its leaves [start, start + len) and the
    range proof."""
    end = start + len(in_range)
    if not 0 <= start < end <= size:
        raise ProofError(f"range {start}..{end} is not in a tree of {size}")
    hashes = iter(proof)

    def walk(lo: int, hi: int) -> bytes:
        if hi <= start or lo >= end:
            try:
                return next(hashes)
            except StopIteration:
                raise ProofError("the range proof is too short") from None
        if start <= lo and hi <= end:
            return root_of(in_range[lo - start : hi - start])
        k = split_point(hi - lo)
        return node_hash(walk(lo, lo + k), walk(lo + k, hi))

    root = walk(0, size)
    if next(hashes, None) is not None:
        raise ProofError("the range proof is too long")
    return root


# --- events -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    """One dossier's audit event as the log sees it. `at` is the UTC ISO text of its instant;
    `payload` is absent where only the digest travels."""

    dossier_code: str
    seq: int
    event_key: str
    event_type: str
    actor: str
    at: str
    payload_digest: str
    prev_hash: str
    hash: str
    payload: str | None = None


def chain_hash(
    prev_hash: str,
    dossier_code: str,
    seq: int,
    event_key: str,
    event_type: str,
    actor: str,
    at: str,
    payload_digest: str,
) -> str:
    """An event's hash in its dossier's chain (`at` as UTC ISO text)."""
    fields = (prev_hash, dossier_code, str(seq), event_key, event_type, actor, at, payload_digest)
    return hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()


def leaf_bytes(event: Event) -> bytes:
    """The canonical encoding of the whole event: JSON, keys sorted, no spaces, UTF-8."""
    document = {name: getattr(event, name) for name in LEAF_FIELDS}
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def event_leaf_hash(event: Event) -> str:
    return leaf_hash(leaf_bytes(event)).hex()


# --- checkpoints --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Checkpoint:
    tree_size: int
    root_hash: str
    signed_at: str  # UTC ISO text, whole seconds
    key_id: str
    public_key: str  # hex of the raw Ed25519 public key
    signature: str  # hex


def key_id(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()


def checkpoint_message(tree_size: int, root_hash: str, signed_at: str) -> bytes:
    """What a checkpoint's signature covers."""
    return f"{CHECKPOINT_ORIGIN}\n{tree_size}\n{root_hash}\n{signed_at}\n".encode()


def signature_holds(checkpoint: Checkpoint) -> str | None:
    """None when the checkpoint is signed by the key it names; else what is wrong."""
    try:
        raw = bytes.fromhex(checkpoint.public_key)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return "its public key is not an Ed25519 key"
    if key_id(raw) != checkpoint.key_id:
        return "its key id is not the SHA-256 of its public key"
    message = checkpoint_message(checkpoint.tree_size, checkpoint.root_hash, checkpoint.signed_at)
    try:
        key.verify(bytes.fromhex(checkpoint.signature), message)
    except (InvalidSignature, ValueError):
        return "its signature does not hold"
    return None


# --- what is checked, and what is found ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Entry:
    """One position of the log: which event it holds, and that event's leaf hash."""

    position: int
    dossier_code: str
    seq: int
    leaf_hash: str


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    proof: tuple[str, ...]


@dataclass(frozen=True)
class Evidence:
    """What is checked: events, the log entries [start, start + len(entries)), the signed
    checkpoints, and proofs against the latest one. The engine's own check passes the whole
    log from position 0 (no proof needed); a bundle passes a range and its proofs."""

    events: Sequence[Event]
    entries: Sequence[Entry]
    checkpoints: Sequence[Checkpoint]
    start: int = 0
    end: int | None = None  # None: the whole log, to the latest checkpoint or its last entry
    range_proof: Sequence[str] = ()
    consistency: Sequence[ConsistencyProof] = ()
    # True for the engine's database: events after the last checkpoint are not logged yet.
    # False for a bundle, which carries only logged events.
    unlogged_allowed: bool = False
    trusted_key_ids: frozenset[str] = frozenset()
    # Only these dossiers' events and entries are checked one by one (the log's root still
    # over every entry); None: all.
    dossiers: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """Something that does not hold, with what it concerns (a dossier, an event, a position
    of the log, a checkpoint) and why."""

    reason: str
    dossier_code: str | None = None
    seq: int | None = None
    position: int | None = None

    def line(self) -> str:
        where = []
        if self.dossier_code is not None:
            where.append(f"dossier {self.dossier_code}")
        if self.seq is not None:
            where.append(f"event {self.seq}")
        if self.position is not None:
            where.append(f"log position {self.position}")
        return f"{', '.join(where) or 'log'}: {self.reason}"


@dataclass
class Verdict:
    dossiers: int = 0
    events: int = 0
    logged: int = 0  # events found in the log at their position
    unlogged: int = 0  # events after the last checkpoint (engine's database only)
    tree_size: int = 0  # of the latest checkpoint
    checkpoints: int = 0
    key_ids: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.findings

    def broken_dossiers(self) -> list[str]:
        return sorted({f.dossier_code for f in self.findings if f.dossier_code is not None})


def chain_findings(chain: Sequence[Event]) -> list[Finding]:
    """Every event of one dossier's chain (in sequence order) that does not hold: its content
    against its hash, its link to the event before, its place in the sequence. A chain that
    starts after event 1 (a bundle covering a later period) is anchored at its first event."""
    found: list[Finding] = []
    previous: Event | None = None
    for event in chain:
        reasons = []
        if previous is None:
            if event.seq == 1 and event.prev_hash != GENESIS:
                reasons.append("the dossier's first event does not start the chain")
            elif event.seq < 1:
                reasons.append(f"sequence number {event.seq} is not a position in a chain")
        else:
            if event.seq != previous.seq + 1:
                reasons.append(f"sequence jumps from {previous.seq} to {event.seq}")
            if event.prev_hash != previous.hash:
                reasons.append("previous hash does not match the event before")
        if event.payload is not None:
            payload_digest = hashlib.sha256(event.payload.encode("utf-8")).hexdigest()
            if payload_digest != event.payload_digest:
                reasons.append("payload does not match its digest")
        recomputed = chain_hash(
            event.prev_hash,
            event.dossier_code,
            event.seq,
            event.event_key,
            event.event_type,
            event.actor,
            event.at,
            event.payload_digest,
        )
        if recomputed != event.hash:
            reasons.append("hash does not match the event's content")
        if reasons:
            found.append(Finding("; ".join(reasons), event.dossier_code, event.seq))
        previous = event
    return found


def examine(evidence: Evidence) -> Verdict:
    """Check everything the evidence holds; name every dossier, event, position and
    checkpoint that does not hold."""
    verdict = Verdict()
    findings = verdict.findings
    checkpoints = sorted(evidence.checkpoints, key=lambda c: c.tree_size)
    verdict.checkpoints = len(checkpoints)
    verdict.key_ids = sorted({c.key_id for c in checkpoints})

    # 1. Signatures: a checkpoint is worth something only when its key signed it.
    signed: list[Checkpoint] = []
    for checkpoint in checkpoints:
        wrong = signature_holds(checkpoint)
        if wrong is None and evidence.trusted_key_ids:
            if checkpoint.key_id not in evidence.trusted_key_ids:
                wrong = f"signed by key {checkpoint.key_id}, not a key the auditor trusts"
        if wrong is not None:
            findings.append(Finding(f"checkpoint of tree size {checkpoint.tree_size}: {wrong}"))
        else:
            signed.append(checkpoint)
    latest = signed[-1] if signed else None
    verdict.tree_size = latest.tree_size if latest else 0

    # 2. The log entries: contiguous positions, each within the signed tree.
    entries = sorted(evidence.entries, key=lambda e: e.position)
    by_position: dict[int, Entry] = {}
    for entry in entries:
        if entry.position in by_position:
            findings.append(Finding("two log entries at one position", position=entry.position))
        by_position[entry.position] = entry
    start = evidence.start
    log_end = max((e.position + 1 for e in entries), default=start)
    end = evidence.end if evidence.end is not None else max(log_end, verdict.tree_size)
    missing = [p for p in range(start, end) if p not in by_position]
    for run_start, run_end in _runs(missing):
        count = run_end - run_start
        span = f"{run_start}" if count == 1 else f"{run_start}..{run_end - 1}"
        if latest is not None and run_end == end and end == latest.tree_size:
            reason = (
                f"log positions {span} missing: the log was truncated below the checkpoint "
                f"of tree size {latest.tree_size} signed at {latest.signed_at}"
            )
        else:
            reason = f"log position {span} missing ({count} entries): the entries were deleted"
        findings.append(Finding(reason, position=run_start))
    beyond = [e for e in entries if e.position >= verdict.tree_size]
    if beyond:
        findings.append(
            Finding(
                f"{len(beyond)} log entries after the latest signed checkpoint (tree size "
                f"{verdict.tree_size}): the checkpoint that signed them is gone",
                position=beyond[0].position,
            )
        )

    # 3. The root: recomputed from the entries (and the proof) against every signed checkpoint.
    if latest is not None:
        _check_roots(evidence, signed, by_position, end, missing, findings)

    # 4. Every event against its log entry, every log entry against its event.
    events: dict[tuple[str, int], Event] = {}
    chains: dict[str, list[Event]] = defaultdict(list)
    for event in evidence.events:
        key = (event.dossier_code, event.seq)
        if key in events:
            findings.append(Finding("two events with one sequence number", *key))
        events[key] = event
        chains[event.dossier_code].append(event)
    entries_of: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        entries_of[entry.dossier_code].append(entry)
    codes = set(chains) | set(entries_of)
    if evidence.dossiers is not None:
        codes &= evidence.dossiers
    verdict.dossiers = len(codes)
    verdict.events = sum(len(chains.get(code, [])) for code in codes)

    for code in sorted(codes):
        chain = sorted(chains.get(code, []), key=lambda e: e.seq)
        findings.extend(chain_findings(chain))
        logged = entries_of.get(code, [])
        deleted: list[Entry] = []
        last_seq = 0
        for entry in logged:
            if entry.seq <= last_seq:
                findings.append(
                    Finding(
                        f"logged after event {last_seq}: the log's order was changed",
                        code,
                        entry.seq,
                        entry.position,
                    )
                )
            last_seq = max(last_seq, entry.seq)
            logged_event = events.get((code, entry.seq))
            if logged_event is None:
                deleted.append(entry)
                continue
            leaf = event_leaf_hash(logged_event)
            if leaf == entry.leaf_hash:
                verdict.logged += 1
                continue
            other = _logged_elsewhere(logged_event, logged)
            if other is not None:
                reason = (
                    f"reordered: this event was logged as event {other.seq} "
                    f"(position {other.position})"
                )
            elif not chain_findings([logged_event]):
                reason = (
                    "differs from the event signed into the log, though its own hash holds: "
                    "the chain was rewritten"
                )
            else:
                reason = "altered: differs from the event signed into the log"
            findings.append(Finding(reason, code, entry.seq, entry.position))
        if deleted:
            findings.extend(_deletions(code, chain, deleted))
        logged_seqs = {e.seq for e in logged}
        max_logged = max(logged_seqs, default=0)
        for event in chain:
            if event.seq in logged_seqs:
                continue
            if not evidence.unlogged_allowed:
                findings.append(Finding("not in the signed log", code, event.seq))
            elif event.seq < max_logged:
                findings.append(
                    Finding(
                        f"not in the log, although event {max_logged} of the dossier is",
                        code,
                        event.seq,
                    )
                )
            else:
                verdict.unlogged += 1
    findings.sort(key=lambda f: (f.dossier_code or "", f.seq or 0, f.position or -1, f.reason))
    return verdict


def _logged_elsewhere(event: Event, logged: Sequence[Entry]) -> Entry | None:
    """The entry of the dossier this event was logged as, under another sequence number:
    a moved event keeps everything but its number."""
    for entry in logged:
        if entry.seq != event.seq:
            moved = replace(event, seq=entry.seq)
            if event_leaf_hash(moved) == entry.leaf_hash:
                return entry
    return None


def _deletions(code: str, chain: Sequence[Event], deleted: Sequence[Entry]) -> list[Finding]:
    if not chain:
        return [
            Finding(
                f"dossier deleted: {len(deleted)} logged events, none left (events "
                f"{_seq_span(deleted)})",
                code,
            )
        ]
    found = [
        Finding("deleted: in the signed log but not among the events", code, e.seq, e.position)
        for e in deleted
    ]
    last = chain[-1].seq
    if all(e.seq > last for e in deleted):
        found.append(
            Finding(
                f"tail truncated: the chain ends at event {last} but the log holds events "
                f"up to {max(e.seq for e in deleted)}",
                code,
            )
        )
    return found


def _seq_span(entries: Sequence[Entry]) -> str:
    seqs = sorted(e.seq for e in entries)
    return f"{seqs[0]}..{seqs[-1]}" if len(seqs) > 1 else str(seqs[0])


def _runs(positions: Sequence[int]) -> Iterable[tuple[int, int]]:
    run_start: int | None = None
    previous = -2
    for p in positions:
        if p != previous + 1:
            if run_start is not None:
                yield run_start, previous + 1
            run_start = p
        previous = p
    if run_start is not None:
        yield run_start, previous + 1


def _check_roots(
    evidence: Evidence,
    signed: Sequence[Checkpoint],
    by_position: dict[int, Entry],
    end: int,
    missing: Sequence[int],
    findings: list[Finding],
) -> None:
    latest = signed[-1]
    start = evidence.start
    if missing:
        findings.append(
            Finding(
                f"the root of the checkpoint of tree size {latest.tree_size} cannot be "
                "recomputed: log entries are missing"
            )
        )
        return
    try:
        leaves = [
            bytes.fromhex(by_position[p].leaf_hash)
            for p in range(start, min(latest.tree_size, end))
        ]
    except ValueError:
        findings.append(Finding("a log entry's leaf hash is not hexadecimal"))
        return
    if start == 0 and end >= latest.tree_size:
        # The whole log: the root at every checkpoint's size, as the tree grew.
        accumulator = Accumulator()
        sizes = {c.tree_size: c for c in signed}
        if 0 in sizes and sizes[0].root_hash != EMPTY_ROOT:
            findings.append(_root_mismatch(sizes[0]))
        for leaf in leaves:
            accumulator.append(leaf)
            checkpoint = sizes.get(accumulator.size)
            if checkpoint is not None and accumulator.root().hex() != checkpoint.root_hash:
                findings.append(_root_mismatch(checkpoint))
        return
    try:
        proof = [bytes.fromhex(h) for h in evidence.range_proof]
        root = root_from_range(latest.tree_size, start, leaves, proof).hex()
    except (ProofError, ValueError) as wrong:
        findings.append(Finding(f"the range proof does not fit the log: {wrong}"))
        return
    if root != latest.root_hash:
        findings.append(_root_mismatch(latest))
    proven = {c.old_size: c for c in evidence.consistency}
    for checkpoint in signed[:-1]:
        consistency = proven.get(checkpoint.tree_size)
        if consistency is None:
            continue
        try:
            path = [bytes.fromhex(h) for h in consistency.proof]
            holds = consistency_holds(
                checkpoint.tree_size,
                latest.tree_size,
                bytes.fromhex(checkpoint.root_hash),
                bytes.fromhex(latest.root_hash),
                path,
            )
        except ValueError:
            holds = False
        if not holds:
            findings.append(
                Finding(
                    f"the checkpoint of tree size {checkpoint.tree_size} signed at "
                    f"{checkpoint.signed_at} is not a prefix of the latest one: the log "
                    "was rewritten"
                )
            )


def _root_mismatch(checkpoint: Checkpoint) -> Finding:
    return Finding(
        f"the log's entries do not hash to the root signed at {checkpoint.signed_at} for tree "
        f"size {checkpoint.tree_size}: log entries were altered, reordered or replaced"
    )


# --- the bundle file ----------------------------------------------------------------------------
def _get(document: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in document:
        raise BundleError(f"{where}.{name}: missing")
    value = document[name]
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise BundleError(f"{where}.{name}: expected a whole number")
    if not isinstance(value, kind):
        raise BundleError(f"{where}.{name}: expected {kind.__name__}")
    return value


def _objects(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i, item in enumerate(_get(document, name, list, "bundle")):
        if not isinstance(item, dict):
            raise BundleError(f"bundle.{name}[{i}]: expected an object")
        items.append(item)
    return items


def _str_or_none(document: dict[str, Any], name: str, where: str) -> str | None:
    value = document.get(name)
    if value is not None and not isinstance(value, str):
        raise BundleError(f"{where}.{name}: expected str")
    return value


def evidence_from_bundle(
    document: object, trusted_key_ids: Iterable[str] = ()
) -> tuple[Evidence, dict[str, Any]]:
    """The evidence a bundle carries, and its period; BundleError names a field that is
    not as it must be."""
    if not isinstance(document, dict):
        raise BundleError("bundle: expected a JSON object")
    fmt = _get(document, "format", str, "bundle")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(f"bundle.format: {fmt!r}, this verifier reads {BUNDLE_FORMAT!r}")
    checkpoints = [
        Checkpoint(
            tree_size=_get(c, "tree_size", int, f"bundle.checkpoints[{i}]"),
            root_hash=_get(c, "root_hash", str, f"bundle.checkpoints[{i}]"),
            signed_at=_get(c, "signed_at", str, f"bundle.checkpoints[{i}]"),
            key_id=_get(c, "key_id", str, f"bundle.checkpoints[{i}]"),
            public_key=_get(c, "public_key", str, f"bundle.checkpoints[{i}]"),
            signature=_get(c, "signature", str, f"bundle.checkpoints[{i}]"),
        )
        for i, c in enumerate(_objects(document, "checkpoints"))
    ]
    entries = [
        Entry(
            position=_get(e, "position", int, f"bundle.entries[{i}]"),
            dossier_code=_get(e, "dossier_code", str, f"bundle.entries[{i}]"),
            seq=_get(e, "seq", int, f"bundle.entries[{i}]"),
            leaf_hash=_get(e, "leaf_hash", str, f"bundle.entries[{i}]"),
        )
        for i, e in enumerate(_objects(document, "entries"))
    ]
    events = []
    for i, e in enumerate(_objects(document, "events")):
        where = f"bundle.events[{i}]"
        events.append(
            Event(
                dossier_code=_get(e, "dossier_code", str, where),
                seq=_get(e, "seq", int, where),
                event_key=_get(e, "event_key", str, where),
                event_type=_get(e, "event_type", str, where),
                actor=_get(e, "actor", str, where),
                at=_get(e, "at", str, where),
                payload_digest=_get(e, "payload_digest", str, where),
                prev_hash=_get(e, "prev_hash", str, where),
                hash=_get(e, "hash", str, where),
                payload=_str_or_none(e, "payload", where),
            )
        )
    log_range = _get(document, "range", dict, "bundle")
    proof = _get(document, "range_proof", list, "bundle")
    if not all(isinstance(h, str) for h in proof):
        raise BundleError("bundle.range_proof: expected a list of hexadecimal hashes")
    consistency = []
    for i, c in enumerate(_objects(document, "consistency")):
        path = _get(c, "proof", list, f"bundle.consistency[{i}]")
        if not all(isinstance(h, str) for h in path):
            raise BundleError(f"bundle.consistency[{i}].proof: expected hexadecimal hashes")
        consistency.append(
            ConsistencyProof(_get(c, "old_size", int, f"bundle.consistency[{i}]"), tuple(path))
        )
    evidence = Evidence(
        events=events,
        entries=entries,
        checkpoints=checkpoints,
        start=_get(log_range, "start", int, "bundle.range"),
        end=_get(log_range, "end", int, "bundle.range"),
        range_proof=tuple(proof),
        consistency=consistency,
        trusted_key_ids=frozenset(trusted_key_ids),
    )
    period = _get(document, "period", dict, "bundle")
    return evidence, period


def report_lines(verdict: Verdict) -> list[str]:
    lines = [
        f"checkpoints: {verdict.checkpoints} (latest tree size {verdict.tree_size}), "
        f"signed by key id {', '.join(verdict.key_ids) or '(none)'}",
        f"events: {verdict.events} of {verdict.dossiers} dossiers, {verdict.logged} "
        "found in the signed log"
        + (f", {verdict.unlogged} not yet checkpointed" if verdict.unlogged else ""),
    ]
    if verdict.holds:
        lines.append("audit log: everything holds")
        return lines
    broken = verdict.broken_dossiers()
    lines.append(
        f"audit log: BROKEN: {len(verdict.findings)} findings, {len(broken)} dossiers"
        + (f" ({', '.join(broken)})" if broken else "")
    )
    lines.extend(f"BROKEN {finding.line()}" for finding in verdict.findings)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verify.py", description="Verify an audit bundle of the Hanoi dossier engine."
    )
    parser.add_argument("bundle", help="the bundle file (`ops audit bundle --output`)")
    parser.add_argument(
        "--key-id",
        action="append",
        default=[],
        help="a key id the deployment published; checkpoints by any other key do not hold",
    )
    parser.add_argument("--json", action="store_true", help="the verdict as JSON")
    args = parser.parse_args(argv)
    try:
        with open(args.bundle, encoding="utf-8") as file:
            document = json.load(file)
        evidence, period = evidence_from_bundle(document, args.key_id)
    except (OSError, json.JSONDecodeError, BundleError) as wrong:
        print(f"verify: {args.bundle}: {wrong}", file=sys.stderr)
        return 2
    verdict = examine(evidence)
    if args.json:
        print(
            json.dumps(
                {
                    **{k: v for k, v in asdict(verdict).items() if k != "findings"},
                    "holds": verdict.holds,
                    "broken_dossiers": verdict.broken_dossiers(),
                    "findings": [asdict(f) for f in verdict.findings],
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(f"bundle: {args.bundle}, period {period.get('from')} to {period.get('to')}")
        print("\n".join(report_lines(verdict)))
    return 0 if verdict.holds else 1


if __name__ == "__main__":
    sys.exit(main())
