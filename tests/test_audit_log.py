"""The global audit log: RFC 6962 hashing and proofs against the published vectors; signed
checkpoints; and every kind of tampering done in SQL behind the system's back (triggers
dropped), named by the engine's check (`ops audit verify`'s log part) and by the standalone
verifier, run from a folder that holds nothing but verify.py, on a bundle made afterwards.
On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from auditlog import verify
from config import ROOT
from ops.auditlog import log_lines
from store import audit, auditlog
from store.db import engine_for, writing
from store.migrate import migrate
from store.tables import audit_events
from tests.conftest import EngineStack
from tests.test_read_model import disable_append_only_guard, full_dossier
from tests.test_store_migrations import scratch_postgres

VERIFY_PY = ROOT / "auditlog" / "verify.py"

# --- RFC 6962 vectors (Certificate Transparency's reference tests) ------------------------------
LEAVES = [
    bytes.fromhex(h)
    for h in [
        *("", "00", "10", "2021", "3031", "40414243", "5051525354555657"),
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, audit path)
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, consistency proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
HASHES = [verify.leaf_hash(leaf) for leaf in LEAVES]


def test_roots_match_rfc_6962() -> None:
    assert verify.root_of([]).hex() == verify.EMPTY_ROOT
    for size in range(1, 9):
        assert verify.root_of(HASHES[:size]).hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_vectors(index: int, size: int, path: list[str]) -> None:
    proof = verify.inclusion_proof(HASHES[:size], index)
    assert [h.hex() for h in proof] == path
    root = verify.root_from_inclusion(index, size, HASHES[index], proof)
    assert root.hex() == ROOTS[size - 1]
    wrong = verify.root_from_inclusion(index, size, verify.leaf_hash(b"WrongLeaf"), proof)
    assert wrong.hex() != ROOTS[size - 1]
    with pytest.raises(verify.ProofError):
        verify.root_from_inclusion(index, size, HASHES[index], [*proof, proof[0]])


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_proofs_match_the_vectors(old: int, new: int, path: list[str]) -> None:
    proof = verify.consistency_proof(HASHES[:new], old)
    assert [h.hex() for h in proof] == path
    old_root, new_root = bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1])
    assert verify.consistency_holds(old, new, old_root, new_root, proof)
    if proof:
        assert not verify.consistency_holds(old, new, new_root, old_root, proof)
        assert not verify.consistency_holds(old, new, old_root, new_root, proof[:-1])
        flipped = [bytes([proof[0][0] ^ 16]) + proof[0][1:], *proof[1:]]
        assert not verify.consistency_holds(old, new, old_root, new_root, flipped)


def test_every_proof_of_every_shape_recomputes_the_root() -> None:
    for size in range(1, 34):
        leaves = [verify.leaf_hash(bytes([i, size])) for i in range(size)]
        root = verify.root_of(leaves)
        for index in range(size):
            proof = verify.inclusion_proof(leaves, index)
            assert verify.root_from_inclusion(index, size, leaves[index], proof) == root
        for old in range(1, size + 1):
            proof = verify.consistency_proof(leaves, old)
            assert verify.consistency_holds(old, size, verify.root_of(leaves[:old]), root, proof)
        for start in range(size):
            for end in range(start + 1, size + 1):
                proof = verify.range_proof(leaves, start, end)
                assert verify.root_from_range(size, start, leaves[start:end], proof) == root
                if start > 0:  # a leaf outside the range changed changes the proof's root
                    other = [*leaves[:0], verify.leaf_hash(b"x"), *leaves[1:]]
                    changed = verify.range_proof(other, start, end)
                    assert verify.root_from_range(size, start, leaves[start:end], changed) != root


# --- the log in a database ----------------------------------------------------------------------
AT = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # 08:00 in Hanoi, a Monday
DOSSIERS = [f"000.01.01.H26-261102-{n:04d}" for n in range(1, 9)]
EVENTS_EACH = 6
KINDS = ["received", "in_processing", "appraised", "approved", "result_ready", "closed"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/engine.db"
        await migrate(url)
        yield url
        await engine_for(url).dispose()
        await engine_for(url, writer=True).dispose()
    else:
        async with scratch_postgres("audit_log_test") as url:
            await migrate(url)
            yield url


@pytest.fixture
def key(tmp_path: Path) -> Ed25519PrivateKey:
    return auditlog.signing_key(tmp_path / "keys" / "checkpoint.key", lambda _: None)


async def file_events(url: str, codes: list[str], first: int, count: int) -> None:
    """Events `first`..`first + count - 1` of each dossier, a minute apart per step."""
    async with writing(url) as conn:
        for n, code in enumerate(codes):
            for seq in range(first, first + count):
                await audit.append(
                    conn,
                    dossier_code=code,
                    event_key=f"run-{n}:{seq}",
                    event_type=KINDS[(seq - 1) % len(KINDS)],
                    actor="hk.spec.7" if seq % 2 else "system",
                    at=AT + timedelta(hours=n, minutes=seq),
                    payload=json.dumps({"step": seq, "note": f"bước {seq}"}, ensure_ascii=False),
                )


async def sign(url: str, key: Ed25519PrivateKey, minutes: int) -> auditlog.CheckpointResult:
    async with writing(url) as conn:
        return await auditlog.checkpoint(conn, key, AT + timedelta(days=1, minutes=minutes))


async def check(url: str) -> verify.Verdict:
    async with engine_for(url).connect() as conn:
        return await auditlog.check(conn)


async def guards_off(conn: AsyncConnection) -> None:
    """What someone with the database's owner rights could do: take the triggers off."""
    tables = ("audit_events", "audit_log", "audit_checkpoints")
    if conn.dialect.name == "postgresql":
        for table in tables:
            await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        return
    names = await conn.execute(
        text(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
            "('audit_events', 'audit_log', 'audit_checkpoints')"
        )
    )
    for (name,) in names.all():
        await conn.execute(text(f"DROP TRIGGER {name}"))


async def ops(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ops ...` on this database, in a thread (the session's workers share the
    event loop)."""
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DATA_DIR": str(tmp_path / "data"),
        "AUDIT_CHECKPOINT_KEY": str(tmp_path / "keys" / "checkpoint.key"),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def standalone(bundle: Path, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """verify.py copied alone to an empty folder and run there, in isolated mode: nothing of
    the engine is importable, only the standard library and `cryptography`."""
    auditor = tmp_path / "auditor"
    auditor.mkdir(exist_ok=True)
    shutil.copy(VERIFY_PY, auditor / "verify.py")
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-I", "verify.py", str(bundle), *(flags or ("--json",))],
        cwd=auditor,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_an_untouched_log_verifies_in_the_database_and_in_a_bundle(
    database_url: str, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    await file_events(database_url, DOSSIERS, 1, 4)
    first = await sign(database_url, key, 0)
    assert (first.appended, first.tree_size) == (len(DOSSIERS) * 4, len(DOSSIERS) * 4)
    await file_events(database_url, DOSSIERS, 5, 2)
    second = await sign(database_url, key, 10)
    assert (second.appended, second.tree_size) == (len(DOSSIERS) * 2, len(DOSSIERS) * 6)
    again = await sign(database_url, key, 20)
    assert again.signed_at is None and again.root_hash == second.root_hash  # nothing new
    await file_events(database_url, DOSSIERS[:1], 7, 1)  # after the last checkpoint

    verdict = await check(database_url)
    assert verdict.findings == []
    assert (verdict.events, verdict.logged, verdict.unlogged) == (49, 48, 1)
    assert (verdict.checkpoints, verdict.tree_size) == (2, 48)

    # A bundle of one day: the positions of that day's events only, with their proofs.
    path = tmp_path / "bundle.json"
    made = await ops(
        database_url,
        tmp_path,
        "audit",
        "bundle",
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-03",
        "--output",
        str(path),
    )
    assert made.returncode == 0, made.stderr
    document = json.loads(path.read_text())
    assert document["range"] == {"start": 0, "end": 48}
    assert len(document["events"]) == 48
    ran = await standalone(path, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout)
    assert result["holds"] and result["logged"] == 48 and result["tree_size"] == 48

    # The last dossier's first hours only: a range inside the log, proven by hashes around it.
    narrow = tmp_path / "narrow.json"
    made = await ops(
        database_url,
        tmp_path,
        "audit",
        "bundle",
        "--from",
        "2026-11-02T08:00:00+00:00",
        "--to",
        "2026-11-02T08:03:30+00:00",
        "--output",
        str(narrow),
    )
    assert made.returncode == 0, made.stderr
    document = json.loads(narrow.read_text())
    # Dossier 8 (n = 7) has events at 08:01.. (seq 1..3 fall before 08:03:30), positions
    # 28..31 in the first batch (8 dossiers x 4, code order).
    assert document["range"] == {"start": 28, "end": 31}
    assert document["range_proof"]
    ran = await standalone(narrow, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    # A bundle whose proof was changed no longer verifies, and says why.
    document["range_proof"][0] = "00" * 32
    narrow.write_text(json.dumps(document))
    ran = await standalone(narrow, tmp_path)
    assert ran.returncode == 1
    assert "do not hash to the root signed" in ran.stdout


async def test_every_kind_of_tampering_is_named_by_the_engine_and_by_the_verifier(
    database_url: str, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    await file_events(database_url, DOSSIERS, 1, EVENTS_EACH)
    await sign(database_url, key, 0)
    assert (await check(database_url)).findings == []
    altered, deleted, gone, truncated, reordered, rewritten, intact, last = DOSSIERS
    size = len(DOSSIERS) * EVENTS_EACH

    engine = engine_for(database_url, writer=True)
    async with engine.begin() as conn:
        await guards_off(conn)

        async def run(sql: str, **values: object) -> None:
            await conn.execute(text(sql), values)

        # An altered event: another actor, nothing else changed.
        await run(
            "UPDATE audit_events SET actor = 'someone.else' WHERE dossier_code = :c AND seq = 3",
            c=altered,
        )
        # A deleted event in the middle of a chain.
        await run("DELETE FROM audit_events WHERE dossier_code = :c AND seq = 3", c=deleted)
        # A whole dossier deleted.
        await run("DELETE FROM audit_events WHERE dossier_code = :c", c=gone)
        # A dossier's tail cut off.
        await run("DELETE FROM audit_events WHERE dossier_code = :c AND seq >= 5", c=truncated)
        # Two events swapped.
        await run(
            "UPDATE audit_events SET seq = -1 WHERE dossier_code = :c AND seq = 2", c=reordered
        )
        await run(
            "UPDATE audit_events SET seq = 2 WHERE dossier_code = :c AND seq = 3", c=reordered
        )
        await run(
            "UPDATE audit_events SET seq = 3 WHERE dossier_code = :c AND seq = -1", c=reordered
        )
        # The log's tail cut off, with its events: the last dossier's two last entries.
        await run("DELETE FROM audit_log WHERE position >= :p", p=size - 2)
        await run("DELETE FROM audit_events WHERE dossier_code = :c AND seq >= 5", c=last)
    # A chain rewritten from event 4 on, every hash recomputed so the chain itself holds.
    async with engine.begin() as conn:
        chain = await audit.events(conn, rewritten)
        await conn.execute(
            text("DELETE FROM audit_events WHERE dossier_code = :c AND seq >= 4"), {"c": rewritten}
        )
        prev = chain[2].hash
        for event in chain[3:]:
            forged = audit.new_event(
                dossier_code=rewritten,
                seq=event.seq,
                prev_hash=prev,
                event_key=event.event_key,
                event_type="closed_refused" if event.seq == 4 else event.event_type,
                actor=event.actor,
                at=event.at,
                payload=event.payload,
            )
            await conn.execute(audit_events.insert().values(**forged.model_dump()))
            prev = forged.hash
    async with engine.connect() as conn:
        assert audit.first_break(await audit.events(conn, rewritten)) is None  # chain holds

    expected = {
        (altered, 3): "altered",
        (deleted, 3): "deleted",
        (deleted, 4): "sequence jumps from 2 to 4",
        (gone, None): "dossier deleted: 6 logged events",
        (truncated, 5): "deleted",
        (truncated, None): "tail truncated: the chain ends at event 4",
        (reordered, 2): "reordered: this event was logged as event 3",
        (reordered, 3): "reordered: this event was logged as event 2",
        (rewritten, 4): "the chain was rewritten",
        (rewritten, 6): "the chain was rewritten",
    }

    verdict = await check(database_url)
    lines = [f.line() for f in verdict.findings]
    for (code, seq), reason in expected.items():
        assert any(
            f.dossier_code == code and f.seq == seq and reason in f.reason for f in verdict.findings
        ), f"{code} {seq} {reason!r} not in {lines}"
    assert set(verdict.broken_dossiers()) == set(DOSSIERS) - {intact, last}
    assert any("the log was truncated" in line for line in lines), lines
    assert intact not in verdict.broken_dossiers()

    # `ops audit verify`'s log part says the same, every dossier and the log's truncation.
    held, broken = log_lines(verdict)
    assert held == [] and broken[0].startswith("audit log: BROKEN")
    for code in set(DOSSIERS) - {intact, last}:
        assert any(code in line for line in broken[1:])

    # The checkpointer refuses to extend a log that no longer matches its checkpoint.
    with pytest.raises(auditlog.AuditLogError, match="run `ops audit verify`"):
        await sign(database_url, key, 30)

    # A bundle made after the tampering: the standalone verifier names the same.
    path = tmp_path / "bundle.json"
    made = await ops(
        database_url,
        tmp_path,
        "audit",
        "bundle",
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-03",
        "--output",
        str(path),
    )
    assert made.returncode == 0, made.stderr
    ran = await standalone(path, tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    result = json.loads(ran.stdout)
    assert set(result["broken_dossiers"]) == set(DOSSIERS) - {intact, last}
    for (code, seq), reason in expected.items():
        assert any(
            f["dossier_code"] == code and f["seq"] == seq and reason in f["reason"]
            for f in result["findings"]
        ), f"{code} {seq} {reason!r} not named by verify.py"
    assert any("the log was truncated" in f["reason"] for f in result["findings"])
    text_run = await standalone(path, tmp_path, "--key-id", auditlog.public_key_id(key))
    assert text_run.returncode == 1
    assert f"BROKEN dossier {gone}: dossier deleted" in text_run.stdout


async def test_a_deleted_or_forged_checkpoint_is_named(
    database_url: str, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    await file_events(database_url, DOSSIERS[:3], 1, 3)
    await sign(database_url, key, 0)
    await file_events(database_url, DOSSIERS[:3], 4, 2)
    await sign(database_url, key, 10)
    engine = engine_for(database_url, writer=True)
    async with engine.begin() as conn:
        await guards_off(conn)
        # The latest checkpoint deleted: its entries are left without a signature.
        await conn.execute(text("DELETE FROM audit_checkpoints WHERE tree_size = 15"))
        # The first one's root replaced: its signature no longer holds.
        await conn.execute(
            text("UPDATE audit_checkpoints SET root_hash = :r WHERE tree_size = 9"),
            {"r": "ab" * 32},
        )
    verdict = await check(database_url)
    reasons = [f.reason for f in verdict.findings]
    assert any("checkpoint of tree size 9: its signature does not hold" in r for r in reasons)
    assert any("15 log entries after the latest signed checkpoint" in r for r in reasons)


async def test_a_file_that_is_not_a_bundle_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"format": verify.BUNDLE_FORMAT, "checkpoints": "none"}))
    ran = await standalone(path, tmp_path, "--json")
    assert ran.returncode == 2
    assert "bundle.checkpoints: expected list" in ran.stderr
    path.write_text(json.dumps({"format": "something/2"}))
    ran = await standalone(path, tmp_path, "--json")
    assert ran.returncode == 2 and "bundle.format: 'something/2'" in ran.stderr


def test_the_key_is_made_once_private_and_announced(tmp_path: Path) -> None:
    said: list[str] = []
    path = tmp_path / "keys" / "checkpoint.key"
    made = auditlog.signing_key(path, said.append)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(said) == 1 and auditlog.public_key_id(made) in said[0]
    again = auditlog.signing_key(path, said.append)
    assert auditlog.public_key_raw(again) == auditlog.public_key_raw(made) and len(said) == 1
    path.chmod(0o644)
    with pytest.raises(auditlog.SigningKeyError, match="chmod 600"):
        auditlog.signing_key(path, said.append)


async def test_the_checkpoint_command_signs_and_two_checkpointers_never_interleave(
    database_url: str, tmp_path: Path
) -> None:
    await file_events(database_url, DOSSIERS, 1, 3)
    done = await ops(database_url, tmp_path, "audit", "checkpoint")
    assert done.returncode == 0, done.stderr
    assert "created the checkpoint signing key" in done.stderr
    assert f"{len(DOSSIERS) * 3} events appended; tree size {len(DOSSIERS) * 3}" in done.stdout
    key = auditlog.signing_key(tmp_path / "keys" / "checkpoint.key", lambda _: None)

    # Two checkpointers at once while events keep coming (each on its own dossiers): each
    # takes the lock in turn, and the log never forks.
    async def events_then_sign(codes: list[str], minutes: int) -> auditlog.CheckpointResult:
        await file_events(database_url, codes, 4, 2)
        return await sign(database_url, key, minutes)

    results = await asyncio.gather(
        events_then_sign(DOSSIERS[:4], 1), events_then_sign(DOSSIERS[4:], 2)
    )
    assert sum(r.appended for r in results) == len(DOSSIERS) * 2
    assert sorted(r.tree_size for r in results)[-1] == len(DOSSIERS) * 5
    verdict = await check(database_url)
    assert verdict.findings == [] and verdict.logged == len(DOSSIERS) * 5
    # Three checkpoints, or two when the first one found both batches filed already.
    assert verdict.tree_size == len(DOSSIERS) * 5 and verdict.checkpoints in (2, 3)


# --- real dossiers through the stack ------------------------------------------------------------
async def test_a_real_dossier_is_checkpointed_and_its_tampering_named_by_ops_and_verify_py(
    stack: EngineStack, tmp_path: Path
) -> None:
    code = await full_dossier(stack, 58, "bo-de")
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": stack.settings.database_url,
        "AUDIT_CHECKPOINT_KEY": str(tmp_path / "keys" / "checkpoint.key"),
    }

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ops", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    signed = await cli("audit", "checkpoint")
    assert signed.returncode == 0, signed.stderr
    held = await cli("audit", "verify", code)
    assert held.returncode == 0, held.stderr
    engine = engine_for(stack.settings.database_url, writer=True)
    async with engine.connect() as conn:
        chain = await audit.events(conn, code)
    assert f"audit log: {len(chain)} events in the signed log" in held.stdout

    async with engine.begin() as conn:
        restore = await disable_append_only_guard(conn)
        await conn.execute(
            audit_events.update()
            .where(audit_events.c.dossier_code == code, audit_events.c.seq == 2)
            .values(actor="someone.else")
        )
    try:
        broken = await cli("audit", "verify", code)
        assert broken.returncode == 1
        assert f"audit: BROKEN at dossier {code}, event 2" in broken.stderr
        assert f"audit log: BROKEN dossier {code}, event 2, log position" in broken.stderr
        assert "altered: differs from the event signed into the log" in broken.stderr

        path = tmp_path / "bundle.json"
        made = await cli(
            "audit", "bundle", "--from", "2000-01-01", "--to", "2100-01-01", "--output", str(path)
        )
        assert made.returncode == 0, made.stderr
        ran = await standalone(path, tmp_path)
        assert ran.returncode == 1, ran.stdout + ran.stderr
        result = json.loads(ran.stdout)
        assert result["broken_dossiers"] == [code]
        assert {(f["dossier_code"], f["seq"]) for f in result["findings"]} == {(code, 2)}
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                audit_events.update()
                .where(audit_events.c.dossier_code == code, audit_events.c.seq == 2)
                .values(actor=chain[1].actor)
            )
            for statement in restore:
                await conn.execute(text(statement))
