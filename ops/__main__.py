"""`python -m ops`: the operators' and auditors' tool.

python -m ops audit verify [CODE]    verify audit chains against the workflow histories
python -m ops rebuild                rebuild `dossiers` and `tasks` from Temporal
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from config import Settings, settings
from ops import audit as audit_ops
from ops import rebuild as rebuild_ops
from store.db import engine_for
from store.migrate import migrate

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
console = Console()
errors = Console(stderr=True)

DEFAULT_ADDRESS = "127.0.0.1:7233"  # the server `make run` starts


async def _client(config: Settings) -> Client:
    return await Client.connect(
        config.temporal_address or DEFAULT_ADDRESS,
        namespace=config.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), console=errors, transient=True
    )


@audit_app.command("verify")
def audit_verify(
    code: Annotated[str | None, typer.Argument(help="one dossier code; all when absent")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Verify every dossier's hash chain and each event against the workflow's history."""

    async def run() -> audit_ops.VerifyReport:
        config = settings()
        await migrate(config.database_url)
        client = await _client(config)
        with _progress() as progress:
            task = progress.add_task("verifying", total=None)
            async with engine_for(config.database_url).connect() as conn:
                return await audit_ops.verify(
                    conn,
                    client,
                    code,
                    progress=lambda c: progress.update(task, description=f"verified {c}"),
                )

    report = asyncio.run(run())
    if as_json:
        console.print_json(report.model_dump_json())
    elif report.broken is None:
        console.print(f"audit: {report.dossiers} dossiers and {report.events} events verified")
    else:
        broken = report.broken
        errors.print(
            f"audit: BROKEN at dossier {broken.dossier_code}, event {broken.seq}: {broken.reason}"
        )
    if report.broken is not None:
        raise typer.Exit(1)


@app.command("rebuild")
def rebuild(
    as_json: Annotated[bool, typer.Option("--json", help="print the count as JSON")] = False,
) -> None:
    """Rebuild the `dossiers` and `tasks` tables from the Temporal histories."""

    async def run() -> int:
        config = settings()
        await migrate(config.database_url)
        client = await _client(config)
        with _progress() as progress:
            task = progress.add_task("rebuilding", total=None)
            async with engine_for(config.database_url, writer=True).begin() as conn:
                return await rebuild_ops.rebuild(
                    conn, client, lambda c: progress.update(task, description=f"rebuilt {c}")
                )

    count = asyncio.run(run())
    if as_json:
        console.print(json.dumps({"rebuilt": count}))
    else:
        console.print(f"rebuild: {count} dossiers")


if __name__ == "__main__":
    app()
