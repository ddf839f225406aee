"""What a drill must show afterwards: nothing lost, nothing done twice, every audit chain
verifying, and the read model equal to a rebuild from the histories."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus

from config import SIMULATOR_PORTS
from ops import audit as audit_ops
from ops import rebuild as rebuild_ops
from store.db import engine_for
from store.tables import dossiers, tasks

# Columns a rebuild writes afresh by design: when the row was written, and the task ids.
_VOLATILE = {"updated_at", "id"}


class Findings(BaseModel):
    model_config = ConfigDict(frozen=True)

    submitted: int
    closed: int
    lost: list[str]
    second_workflows: list[str]  # a second workflow run for one submission
    second_codes: list[str]  # one Idempotency-Key answered with two codes
    effects_twice: dict[str, int]  # side effects done more than once, per kind
    audit_dossiers: int
    audit_broken: str | None
    read_model_differences: int

    @property
    def duplicated(self) -> int:
        return (
            len(self.second_workflows) + len(self.second_codes) + sum(self.effects_twice.values())
        )

    @property
    def passed(self) -> bool:
        return (
            not self.lost
            and self.duplicated == 0
            and self.audit_broken is None
            and self.read_model_differences == 0
            and self.closed == self.submitted
        )


async def closed_codes(client: Client, codes: set[str]) -> tuple[set[str], list[str]]:
    """The dossiers whose workflow completed, and those with more than one run."""
    runs: Counter[str] = Counter()
    completed: set[str] = set()
    async for execution in client.list_workflows("WorkflowType = 'Dossier'"):
        if execution.id not in codes:
            continue
        runs[execution.id] += 1
        if execution.status is WorkflowExecutionStatus.COMPLETED:
            completed.add(execution.id)
    return completed, sorted(code for code, n in runs.items() if n > 1)


async def effects_done_twice(registry_urls: dict[str, str]) -> dict[str, int]:
    """Per kind of side effect, the business keys the registries carried out more than once
    (each registry counts its effects per business key on `/_sim/effects`)."""
    twice: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=10) as http:
        for name in SIMULATOR_PORTS:
            response = await http.get(f"{registry_urls[name]}/_sim/effects")
            response.raise_for_status()
            for effect in response.json():
                if effect["count"] > 1:
                    twice[f"{name}.{effect['kind']}"] += 1
    return {kind: n for kind, n in twice.items() if n}


def _rows(result: Any) -> list[tuple[Any, ...]]:
    keys = [k for k in result.keys() if k not in _VOLATILE]
    return sorted(tuple(str(row[k]) for k in keys) for row in result.mappings())


async def read_model_against_rebuild(client: Client, database_url: str) -> int:
    """Rows of `dossiers` and `tasks` that differ once the tables are rebuilt from Temporal."""
    engine = engine_for(database_url, writer=True)

    async def snapshot() -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            return [
                *_rows(await conn.execute(select(dossiers))),
                *_rows(await conn.execute(select(tasks))),
            ]

    before = await snapshot()
    async with engine.begin() as conn:
        await rebuild_ops.rebuild(conn, client)
    after = await snapshot()
    return len(set(before) ^ set(after))


async def audit(client: Client, database_url: str) -> tuple[int, str | None]:
    async with engine_for(database_url).connect() as conn:
        report = await audit_ops.verify(conn, client, database_url)
    broken = None if report.broken is None else report.broken.model_dump_json()
    return report.dossiers, broken
