"""How every ops command talks to the operator: the consoles (results on stdout, progress and
refusals on stderr), the options they share, tables, JSON and exits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from temporalio.service import RPCError

from ops.errors import OperatorError, check_action

console = Console()
errors = Console(stderr=True)

AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def spinner() -> Progress:
    """Progress of one piece of work of unknown length, on stderr, gone once done."""
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=errors, transient=True
    )


def bar() -> Progress:
    """Progress of a batch (done of total), on stderr, gone once done."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )


def print_json(document: BaseModel | Sequence[BaseModel]) -> None:
    """A result as indented JSON (a model, or a list of rows)."""
    if isinstance(document, BaseModel):
        console.print_json(document.model_dump_json())
    else:
        console.print_json(json.dumps([row.model_dump(mode="json") for row in document]))


def show_rows(rows: Sequence[BaseModel], as_json: bool, title: str, *, empty: str) -> None:
    """Rows as a table titled `title` (one column per field, long values folded, never cut),
    `<title>: <empty>` when there are none; as a JSON list with --json."""
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"{title}: {empty}")
        return
    table = Table(title=title)
    for column in type(rows[0]).model_fields:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.model_dump().values()))
    console.print(table)


def fail(message: str, code: int) -> typer.Exit:
    """Say on stderr why the command stops; the caller raises what this returns."""
    errors.print(message, markup=False, highlight=False)
    return typer.Exit(code)


# --- operator actions (retry, reset) ------------------------------------------------------------
DEFAULT_RATE = 5.0

Operator = Annotated[
    str, typer.Option("--operator", help="who acts; recorded as the audit event's actor")
]
Reason = Annotated[str, typer.Option("--reason", help="why; recorded in the audit event")]
Query = Annotated[
    str | None,
    typer.Option(
        "--query",
        help="visibility query selecting dossiers, e.g. \"DossierProcedure = '1.001193'\" "
        "(running Dossier workflows only)",
    ),
]
Rate = Annotated[float, typer.Option("--rate", help="batch: operations per second")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="list what would change, and change nothing")
]


# A row an operator action reports per dossier; its `outcome` starts with "failed" when the
# action failed on that dossier.
Row = TypeVar("Row", bound=BaseModel)


def run_action(
    name: str,
    code: str | None,
    query: str | None,
    operator: str,
    reason: str,
    run: Callable[[], Coroutine[Any, Any, list[Row]]],
    *,
    as_json: bool,
    dry_run: bool,
) -> None:
    """Check the arguments, run, show the rows; exit 2 on bad input, 1 when the server
    refused or any dossier failed."""
    try:
        if (code is None) == (query is None):
            raise OperatorError("give either a dossier CODE or --query, not both")
        check_action(operator, reason)
        rows = asyncio.run(run())
    except OperatorError as err:
        raise fail(f"ops {name}: {err}", 2) from err
    except RPCError as err:  # the server refused: nothing of that call was done
        raise fail(f"ops {name}: Temporal refused: {err.message}", 1) from err
    show_rows(rows, as_json, f"{name} (dry run)" if dry_run else name, empty="nothing to do")
    if any(str(getattr(row, "outcome", "")).startswith("failed") for row in rows):
        raise typer.Exit(1)
