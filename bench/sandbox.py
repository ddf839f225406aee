"""What the workflow sandbox costs per cached dossier, and per replay of the recorded histories.

    python -m bench.sandbox --instances 200 --rounds 5
    python -m bench.sandbox --passthrough pydantic,pydantic_core,schemas,domain

Each workflow instance a worker caches runs in its own sandbox, which imports afresh every
module not passed through: `--instances` sandboxes of the dossier workflow are created and
kept, and tracemalloc gives the memory they hold each. Then tests/histories are replayed
`--rounds` times with the same sandbox and the process's CPU time is reported. Without
`--passthrough` the sandbox is the workers' own (bootstrap.sandbox_runner); with it, the
SDK's default restrictions plus the modules named.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace

from pydantic import BaseModel
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import _Definition

import bootstrap
from codec import KeyRing, data_converter
from config import ROOT
from ops.replay import WORKFLOWS, load_histories
from workflows.dossier import DossierWorkflow

HISTORIES = ROOT / "tests" / "histories"


class SandboxFigures(BaseModel):
    instances: int
    kib_per_instance: float
    ms_per_instance: float
    histories: int
    replay_cpu_ms_per_history: float


def runner_of(passthrough: str | None) -> SandboxedWorkflowRunner:
    if passthrough is None:
        return bootstrap.sandbox_runner()
    modules = [m for m in passthrough.split(",") if m]
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*modules)
    )


def details(runner: SandboxedWorkflowRunner, workflow_id: str) -> WorkflowInstanceDetails:
    from temporalio.worker.workflow_sandbox._runner import _fake_info

    converter = DataConverter.default
    return WorkflowInstanceDetails(
        payload_converter_factory=converter._new_payload_converter,
        failure_converter_class=converter.failure_converter_class,
        interceptor_classes=[],
        defn=_Definition.must_from_class(DossierWorkflow),
        info=replace(_fake_info, workflow_id=workflow_id),
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


def instance_memory(runner: SandboxedWorkflowRunner, instances: int) -> tuple[float, float]:
    """KiB held and ms taken per sandboxed dossier workflow, kept alive as a cache keeps it."""
    runner.create_instance(details(runner, "warm-up"))  # the passed-through modules, once
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.process_time()
    kept = [runner.create_instance(details(runner, f"bench-{n}")) for n in range(instances)]
    took = time.process_time() - started
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del kept
    return held / 1024 / instances, took * 1000 / instances


async def replay_cpu(runner: SandboxedWorkflowRunner, rounds: int) -> tuple[int, float]:
    """CPU time per recorded history replayed, as a worker replays an evicted dossier."""
    histories = [h.history for h in load_histories(HISTORIES)]
    keys = (HISTORIES / "payload.keys").read_text(encoding="utf-8")
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        data_converter=data_converter(KeyRing.parse(keys, source=str(HISTORIES))),
        workflow_runner=runner,
    )

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    await replayer.replay_workflows(each())  # warm-up
    started = time.process_time()
    for _ in range(rounds):
        await replayer.replay_workflows(each())
    took = time.process_time() - started
    return len(histories), took * 1000 / (rounds * len(histories))


async def measure(
    runner: SandboxedWorkflowRunner, instances: int, rounds: int
) -> tuple[float, float, int, float]:
    # A workflow instance is made on the worker's event loop.
    kib, ms = instance_memory(runner, instances)
    histories, replay_ms = await replay_cpu(runner, rounds)
    return kib, ms, histories, replay_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--passthrough", help="comma-separated modules passed through instead of the workers'"
    )
    args = parser.parse_args()
    runner = runner_of(args.passthrough)
    kib, ms, histories, replay_ms = asyncio.run(measure(runner, args.instances, args.rounds))
    figures = SandboxFigures(
        instances=args.instances,
        kib_per_instance=round(kib, 1),
        ms_per_instance=round(ms, 2),
        histories=histories,
        replay_cpu_ms_per_history=round(replay_ms, 1),
    )
    print(figures.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
