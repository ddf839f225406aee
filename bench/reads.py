"""What reading a dossier costs: `GET /v1/dossiers/{code}` and `/timeline` of closed dossiers
against open ones, both answered from the read model; the worker's CPU per read shows that
no workflow is asked.

    python -m bench.reads --closed 200 --open 50 --reads 1000

The production shape on one machine: an in-memory dev server, the API and one worker in their
own processes, the simulators. Certification dossiers are filed and certified through the API
until closed, ward dossiers filed and left waiting; then each kind is read `--reads` times,
one request at a time, round-robin over its dossiers. Prints p50/p95/p99 per kind and the
worker's CPU time per read (from /proc), and writes `reads.json` under `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pydantic import BaseModel
from sqlalchemy import select

from bench.drivers import EngineDriver, desks_of, run_engine, submission
from bench.processes import running_stack, worker_processes
from domain.catalogue import default_catalogue
from schemas.statuses import Role
from store import api_keys
from store.db import engine_for
from store.tables import dossier_snapshots

WARDS = ["hoan-kiem", "ba-dinh"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ReadFigures(BaseModel):
    kind: str
    dossiers: int
    reads: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    worker_cpu_ms_per_read: float


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


async def quiet(pid: int, idle_share: float = 0.02, timeout: float = 120) -> None:
    """Until the process uses less than `idle_share` of a core over a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(1)
        if cpu_seconds(pid) - before < idle_share:
            return
    raise SystemExit(f"the worker (pid {pid}) never went quiet")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def read(
    api: httpx.AsyncClient, kind: str, codes: list[str], reads: int, worker_pid: int
) -> ReadFigures:
    took: list[float] = []
    cpu_before = cpu_seconds(worker_pid)
    for n in range(reads):
        code = codes[n % len(codes)]
        path = f"/v1/dossiers/{code}" if n % 2 == 0 else f"/v1/dossiers/{code}/timeline"
        started = time.perf_counter()
        response = await api.get(path)
        took.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"GET {path}: HTTP {response.status_code} {response.text[:200]}")
    cpu = cpu_seconds(worker_pid) - cpu_before
    return ReadFigures(
        kind=kind,
        dossiers=len(codes),
        reads=reads,
        p50_ms=round(statistics.median(took), 2),
        p95_ms=round(percentile(took, 0.95), 2),
        p99_ms=round(percentile(took, 0.99), 2),
        worker_cpu_ms_per_read=round(cpu * 1000 / reads, 2),
    )


async def closed_codes(database_url: str) -> list[str]:
    async with engine_for(database_url).connect() as conn:
        rows = await conn.execute(
            select(dossier_snapshots.c.code).where(dossier_snapshots.c.closed)
        )
        return sorted(str(r.code) for r in rows)


async def measure(args: argparse.Namespace) -> list[ReadFigures]:
    out = Path(args.out) / datetime.now(UTC).strftime("reads-%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    catalogue = default_catalogue()
    async with running_stack(out, sim_latency_ms=5) as stack:
        await stack.start_api()
        [worker] = await stack.start_engine_workers(worker_processes("rest=1"), cached=1000)
        worker_pid = stack.processes.running[worker].pid
        to_close = [
            submission("certification", i, WARDS[i % 2], catalogue) for i in range(args.closed)
        ]
        to_leave = [submission("ward", i, WARDS[i % 2], catalogue) for i in range(args.open)]
        desks, units = desks_of(to_close + to_leave, WARDS, catalogue)
        key = await api_keys.issue(
            stack.database_url, "bench-reads", sorted(units), [r.value for r in Role]
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{stack.api_port}",
            headers={"Authorization": f"Bearer {key.key}"},
            timeout=60,
        ) as api:
            driver = EngineDriver(api=api, catalogue=catalogue)
            await run_engine(stack.client, driver, to_close, desks, in_flight=50, concurrency=4)
            open_codes = [
                code
                for i, body in enumerate(to_leave)
                if (code := await driver.submit("open", i, body)) is not None
            ]
            for _ in range(100):  # the last steps' writes trail the close by a moment
                closed = await closed_codes(stack.database_url)
                if len(closed) >= len(to_close):
                    break
                await asyncio.sleep(0.2)
            figures = []
            for kind, codes in (("closed", closed), ("open", open_codes)):
                # The open dossiers' first steps done: the worker's CPU is the reads' alone.
                await quiet(worker_pid)
                figures.append(await read(api, kind, codes, args.reads, worker_pid))
    (out / "reads.json").write_text(
        json.dumps([f.model_dump() for f in figures], indent=2) + "\n", encoding="utf-8"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--closed", type=int, default=200)
    parser.add_argument("--open", type=int, default=50)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--out", default="data/results")
    args = parser.parse_args()
    figures = asyncio.run(measure(args))
    print(
        f"{'dossiers':<10}{'count':>7}{'reads':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'worker CPU ms/read':>20}"
    )
    for f in figures:
        print(
            f"{f.kind:<10}{f.dossiers:>7}{f.reads:>7}{f.p50_ms:>9}{f.p95_ms:>9}{f.p99_ms:>9}"
            f"{f.worker_cpu_ms_per_read:>20}"
        )


if __name__ == "__main__":
    main()
