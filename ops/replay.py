"""`python -m ops replay`: replay workflow histories against the current workflow code and
report each one that would break (a non-determinism error on a running dossier).

Sources:

    python -m ops replay --dir tests/histories                 exported histories (*.json)
    python -m ops replay --query "WorkflowType = 'Dossier'"    the server's, by visibility query

    python -m ops replay --dossier CODE                        a dossier's runs, wherever kept

History files (UTF-8 JSON), one of:

- Temporal's own JSON history (``{"events": [...]}``), as ``python -m ops export history``,
  the Web UI or ``temporal workflow show --output json`` write it; the workflow id is the
  file name up to ``@`` (``<workflow id>@<run id>.json``) or without ``.json``;
- one history: ``{"workflow_id": "<id>", "history": <Temporal JSON history>}`` (the files in
  tests/histories);
- several: ``{"histories": [{"workflow_id": ..., "history": ...}, ...]}``.

Payloads must be encoded as stored (export before decoding): replay decodes them with the
same data converter the workers use, so it needs the payload keys they were encrypted with
(PAYLOAD_KEYS, else the development key under DATA_DIR).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

import bootstrap
from codec import project_converter
from config import settings
from ops.cli import AsJson, bar, console, fail, print_json
from ops.temporal import dossier_runs

# Every workflow type a worker runs, whatever its queue.
WORKFLOWS: tuple[type, ...] = tuple(
    dict.fromkeys(workflow for queue in bootstrap.WORKFLOWS.values() for workflow in queue)
)


# --- loading histories ----------------------------------------------------------------------
class HistoryFileError(ValueError):
    """A file that holds no history in one of the accepted formats."""


@dataclass(frozen=True)
class SourcedHistory:
    """A history and where it came from (a file name, or `server`)."""

    source: str
    history: WorkflowHistory

    @property
    def workflow_type(self) -> str:
        return workflow_type_of(self.history)


def workflow_type_of(history: WorkflowHistory) -> str:
    if not history.events:
        return ""
    first = history.events[0]
    if not first.HasField("workflow_execution_started_event_attributes"):
        return ""
    return str(first.workflow_execution_started_event_attributes.workflow_type.name)


def history_document(history: WorkflowHistory) -> dict[str, Any]:
    """One history in the file format of tests/histories."""
    return {"workflow_id": history.workflow_id, "history": history.to_json_dict()}


def dump_json(document: object) -> str:
    """Pretty, stable JSON for files meant to be reviewed in a diff."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def parse_histories(document: object, source: str, default_id: str) -> list[SourcedHistory]:
    """The histories in one parsed JSON document (see the module doc for the formats)."""
    if not isinstance(document, dict):
        raise HistoryFileError(f"{source}: not a JSON object")
    if "histories" in document:
        items = document["histories"]
        if not isinstance(items, list):
            raise HistoryFileError(f"{source}: `histories` is not a list")
        return [h for item in items for h in parse_histories(item, source, default_id)]
    if "history" in document:
        workflow_id = document.get("workflow_id")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise HistoryFileError(f"{source}: `workflow_id` missing next to `history`")
        return [_from_json(source, workflow_id, document["history"])]
    if "events" in document:
        return [_from_json(source, default_id, document)]
    raise HistoryFileError(f"{source}: no `history`, `histories` or `events`")


def _from_json(source: str, workflow_id: str, history: object) -> SourcedHistory:
    if not isinstance(history, dict):
        raise HistoryFileError(f"{source}: the history of {workflow_id} is not a JSON object")
    try:
        parsed = WorkflowHistory.from_json(workflow_id, history)
    except Exception as err:  # protobuf's ParseError and friends
        raise HistoryFileError(f"{source}: history of {workflow_id} unreadable: {err}") from err
    if not parsed.events:
        raise HistoryFileError(f"{source}: the history of {workflow_id} has no events")
    return SourcedHistory(source=source, history=parsed)


def load_file(path: Path) -> list[SourcedHistory]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise HistoryFileError(f"{path.name}: {err}") from err
    return parse_histories(document, path.name, path.stem.split("@", 1)[0])


def load_histories(path: Path) -> list[SourcedHistory]:
    """Every history in a folder's `*.json` files (sorted by name), or in one file."""
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if not files:
        raise HistoryFileError(f"no *.json histories in {path}")
    return [h for file in files for h in load_file(file)]


# --- replaying ------------------------------------------------------------------------------
class ReplayOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    source: str
    workflow_id: str
    run_id: str
    workflow_type: str
    ok: bool
    # False for a run with no completed workflow task yet: there is nothing to check.
    replayed: bool = True
    error_type: str | None = None
    error: str | None = None

    @property
    def nondeterministic(self) -> bool:
        return self.error_type == NondeterminismError.__name__


class ReplayReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    histories: int
    broken: int
    results: list[ReplayOutcome]

    @property
    def summary(self) -> str:
        return f"replay: {self.histories} histories, {self.broken} broken"


async def replay(
    histories: AsyncIterator[SourcedHistory] | Sequence[SourcedHistory],
    *,
    workflows: Sequence[type] = WORKFLOWS,
    data_converter: DataConverter | None = None,
    progress: Callable[[SourcedHistory], None] | None = None,
) -> ReplayReport:
    """Replay each history against `workflows` (the current code by default) and report per
    history: ok, or the failure a worker would hit on it."""
    # The workers' converter by default (payloads encrypted with PAYLOAD_KEYS, else the
    # development key under DATA_DIR), so payloads decode as the workers encoded them.
    converter = data_converter or project_converter(settings().data_dir)
    replayer = Replayer(
        workflows=list(workflows),
        data_converter=converter,
        workflow_runner=bootstrap.sandbox_runner(),
    )
    seen: list[tuple[SourcedHistory, Exception | None]] = []
    empty: set[str] = set()

    async def feed() -> AsyncIterator[WorkflowHistory]:
        async for item in _aiter(histories):
            if not has_completed_task(item.history):
                empty.add(item.history.run_id)
                seen.append((item, None))
            else:
                unreadable = await _undecodable(item.history, converter)
                seen.append((item, unreadable))
                if unreadable is None:
                    yield item.history
            # The replayer asks for the next history once it has replayed this one.
            if progress is not None:
                progress(item)

    results = await replayer.replay_workflows(feed(), raise_on_replay_failure=False)
    failures = results.replay_failures
    outcomes = [
        _outcome(item, unreadable or failures.get(item.history.run_id)).model_copy(
            update={"replayed": item.history.run_id not in empty}
        )
        for item, unreadable in seen
    ]
    return ReplayReport(
        histories=len(outcomes),
        broken=sum(1 for o in outcomes if not o.ok),
        results=outcomes,
    )


def has_completed_task(history: WorkflowHistory) -> bool:
    """Replay checks the commands of completed workflow tasks. A run that has none (just
    started, or its start still delayed) has nothing to check, and the SDK's replayer would
    wait for one forever."""
    return any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in history.events)


async def _undecodable(history: WorkflowHistory, data_converter: DataConverter) -> Exception | None:
    """Whether the workflow's input decodes: a missing payload key would otherwise surface as
    an opaque activation failure instead of saying which key is missing."""
    codec = data_converter.payload_codec
    if codec is None or not history.events:
        return None
    started = history.events[0].workflow_execution_started_event_attributes
    try:
        await codec.decode(list(started.input.payloads))
    except Exception as err:  # the codec's own errors name the key and the reason
        return err
    return None


async def _aiter(
    items: AsyncIterator[SourcedHistory] | Sequence[SourcedHistory],
) -> AsyncIterator[SourcedHistory]:
    if isinstance(items, Sequence):
        for item in items:
            yield item
    else:
        async for item in items:
            yield item


def _outcome(item: SourcedHistory, failure: Exception | None) -> ReplayOutcome:
    history = item.history
    return ReplayOutcome(
        source=item.source,
        workflow_id=history.workflow_id,
        run_id=history.run_id,
        workflow_type=item.workflow_type,
        ok=failure is None,
        error_type=None if failure is None else type(failure).__name__,
        error=None if failure is None else str(failure),
    )


async def server_histories(
    client: Client, query: str, found: Callable[[int], None] | None = None
) -> AsyncIterator[SourcedHistory]:
    """The histories of the runs a visibility query lists, fetched one at a time."""
    runs = [(execution.id, execution.run_id) async for execution in client.list_workflows(query)]
    if found is not None:
        found(len(runs))
    for workflow_id, run_id in runs:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        yield SourcedHistory(source="server", history=history)


# --- the command ----------------------------------------------------------------------------
def replay_cli(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="a folder of exported histories (*.json), or one history file"),
    ] = None,
    query: Annotated[
        str | None,
        typer.Option("--query", help="a visibility query, e.g. \"WorkflowType = 'Dossier'\""),
    ] = None,
    dossier: Annotated[
        str | None,
        typer.Option(
            "--dossier", help="a dossier's runs, from Temporal or, after retention, the archive"
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Replay histories against the current workflow code; exit 1 when any would break."""
    if sum(source is not None for source in (directory, query, dossier)) != 1:
        raise fail("replay: give exactly one of --dir, --query or --dossier", 2)

    async def run() -> ReplayReport:
        with bar() as progress:
            task = progress.add_task("replaying", total=None)

            def step(item: SourcedHistory) -> None:
                progress.update(task, advance=1, description=f"replayed {item.history.workflow_id}")

            if directory is not None:
                loaded = load_histories(directory)
                progress.update(task, total=len(loaded))
                return await replay(loaded, progress=step)
            config = settings()
            client = await bootstrap.connect(config)
            if dossier is not None:
                runs = await dossier_runs(client, config.database_url, dossier)
                if not runs:
                    raise HistoryFileError(f"no dossier {dossier} in Temporal or the archive")
                progress.update(task, total=len(runs))
                kept = [SourcedHistory(source=r.source.value, history=r.history) for r in runs]
                return await replay(kept, progress=step)
            assert query is not None
            progress.update(task, description="listing")
            source = server_histories(
                client,
                query,
                found=lambda n: progress.update(task, total=n, description="replaying"),
            )
            return await replay(source, progress=step)

    try:
        report = asyncio.run(run())
    except HistoryFileError as err:
        raise fail(f"replay: {err}", 2) from err
    if as_json:
        print_json(report)
    else:
        for outcome in report.results:
            mark = "BROKEN" if not outcome.ok else "ok" if outcome.replayed else "empty"
            line = f"{mark:<7}{outcome.workflow_type:<14}{outcome.workflow_id}  ({outcome.source})"
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            if not outcome.ok:
                console.print(
                    f"       {outcome.error_type}: {outcome.error}",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
        console.print(report.summary, markup=False, highlight=False)
    if report.broken:
        raise typer.Exit(1)
