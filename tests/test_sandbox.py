"""The workflow sandbox: what it passes through stays deterministic, and workflow code that
reads the clock, draws at random or opens a file still fails its workflow task on the real
server, as a dossier workflow doing so would."""

from __future__ import annotations

import ast
import asyncio
import datetime
import importlib
import random
import uuid
from pathlib import Path

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import pytest

    import bootstrap
    from domain import lanes
    from tests.conftest import EngineStack

# What a workflow must never do itself: the clock, chance, files, the network, processes.
NON_DETERMINISTIC_MODULES = {"random", "secrets", "time", "uuid", "os", "socket", "subprocess"}
NON_DETERMINISTIC_CALLS = {"now", "utcnow", "today", "open"}


@workflow.defn(name="SandboxGuard")
class SandboxGuardWorkflow:
    """Does, inside a workflow, the one thing it is asked to."""

    @workflow.run
    async def run(self, misstep: str) -> str:
        if misstep == "clock":
            return datetime.datetime.now().isoformat()
        if misstep == "chance":
            return str(random.random())
        if misstep == "file":
            with open(__file__, encoding="utf-8") as source:
                return source.readline()
        return "deterministic"


def module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin)


def non_deterministic_uses(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if a.name.split(".")[0] in NON_DETERMINISTIC_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in NON_DETERMINISTIC_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            called = node.func
            name = called.attr if isinstance(called, ast.Attribute) else getattr(called, "id", "")
            # workflow.now() is the workflow's own clock, the same on every replay.
            of_workflow = (
                isinstance(called, ast.Attribute) and ast.unparse(called.value) == "workflow"
            )
            if name in NON_DETERMINISTIC_CALLS and not of_workflow:
                found.append(f"{name}() on line {node.lineno}")
    return found


@pytest.mark.parametrize("helper", bootstrap.WORKFLOW_HELPERS)
def test_a_passed_through_workflow_helper_reads_no_clock_chance_or_file(helper: str) -> None:
    """A passed-through module escapes the sandbox's checks: its source is checked here."""
    assert non_deterministic_uses(module_file(helper).read_text(encoding="utf-8")) == []


def test_the_source_check_sees_a_clock_read() -> None:
    source = "import random\nfrom datetime import datetime\nx = datetime.now()\nopen('f')\n"
    source += "y = workflow.now()\n"
    assert non_deterministic_uses(source) == ["random", "now() on line 3", "open() on line 4"]


def test_workflow_code_stays_sandboxed() -> None:
    """The modules that define workflows, or the classes they derive from, are imported
    afresh for each run and have their calls checked: none of them is passed through."""
    passed = bootstrap.PASSTHROUGH
    for workflows in bootstrap.WORKFLOWS.values():
        for definition in workflows:
            for cls in definition.__mro__:
                if cls.__module__.startswith("workflows"):
                    assert not any(
                        cls.__module__ == p or cls.__module__.startswith(p + ".") for p in passed
                    ), f"{cls.__module__} holds workflow code ({cls.__name__}): passed through"


async def task_failure(client: Client, workflow_id: str) -> ApplicationError:
    """The workflow's first failed workflow task, decoded (failures are encrypted)."""
    for _ in range(100):
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                failure = event.workflow_task_failed_event_attributes.failure
                error = await client.data_converter.decode_failure(failure)
                assert isinstance(error, ApplicationError), error
                return error
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id}: no workflow task failed")


@pytest.mark.parametrize(
    ("misstep", "refused"),
    [
        ("clock", "datetime.datetime.now"),
        ("chance", "random.random"),
        ("file", "__builtins__.open"),
    ],
)
async def test_workflow_code_reading_the_clock_chance_or_a_file_fails_its_task(
    stack: EngineStack, misstep: str, refused: str
) -> None:
    queue = f"sandbox-guard-{uuid.uuid4().hex[:8]}"
    async with Worker(
        stack.client,
        task_queue=queue,
        workflows=[SandboxGuardWorkflow],
        workflow_runner=bootstrap.sandbox_runner(),
    ):
        handle = await stack.client.start_workflow(
            SandboxGuardWorkflow.run, misstep, id=queue, task_queue=queue
        )
        try:
            error = await task_failure(stack.client, handle.id)
        finally:
            await handle.terminate("sandbox guard checked")
    assert error.type == "RestrictedWorkflowAccessError"
    assert f"Cannot access {refused}" in error.message, error.message


async def test_deterministic_workflow_code_completes(stack: EngineStack) -> None:
    """The same workflow without its misstep runs to the end: the failures above are the
    sandbox's refusals, not a worker that cannot run it."""
    queue = f"sandbox-guard-{uuid.uuid4().hex[:8]}"
    async with Worker(
        stack.client,
        task_queue=queue,
        workflows=[SandboxGuardWorkflow],
        workflow_runner=bootstrap.sandbox_runner(),
    ):
        result = await stack.client.execute_workflow(
            SandboxGuardWorkflow.run, "none", id=queue, task_queue=queue
        )
    assert result == "deterministic"


def test_a_process_shares_its_cache_between_its_workflow_queues() -> None:
    limits = bootstrap.WorkerLimits(max_cached_workflows=1000)
    assert limits.cache_share(lanes.ALL_QUEUES) == 1000 // len(bootstrap.WORKFLOWS)
    assert limits.cache_share([lanes.INTAKE, lanes.CERTIFICATION, lanes.NOTIFY]) == 500
    assert limits.cache_share([lanes.CERTIFICATION]) == 1000
    assert limits.cache_share([lanes.NOTIFY]) == 1000  # no workflows: nothing to share
    assert bootstrap.WorkerLimits(max_cached_workflows=3).cache_share(lanes.ALL_QUEUES) == 1
