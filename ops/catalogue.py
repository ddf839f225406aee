"""`python -m ops catalogue import FILE`: the city's own catalogue, from its decision
(`python -m ops catalogue export` prints the catalogue in effect in the same CSV format).

The file (CSV in the flat format of the README's "Catalogue" section, or JSON holding Procedure
objects) is validated whole: every row against the contract and the units, every error listed
with its row, field and rule, and nothing is recorded if any row is bad. A procedure that
changed gets the next version, an unchanged one nothing, a new code version 1; `--dry-run`
prints that diff and records nothing.

Dossiers in flight are safe by construction: a filing carries the whole procedure as it was
when the dossier was filed (DossierFiling.procedure), and the workflow reads nothing else, so
a dossier keeps its version whatever is imported after it. New versions apply to dossiers
filed after the processes that file them (API, `filing.py`) start again: they install the
recorded catalogue at start-up (store.startup). Workers need no restart.

The import is one `catalogue_import` operator event in the audit chain `catalogue`, in the
same transaction as the versions it records: who, why, the file's SHA-256 and every change.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict

from config import settings
from domain.catalogue import (
    CatalogueError,
    catalogue_csv,
    plan_import,
    read_import_file,
    shipped_catalogue,
    versioned,
)
from ops.cli import AsJson, DryRun, Operator, Reason, console, errors, fail, print_json
from ops.errors import OperatorError, check_action
from ops.portal_catalogue import build_from_portal, import_file, read_portal_records
from schemas.catalogue import ChangeKind, ImportPlan, Procedure, ProcedureChange
from store.audit import append_operator_event
from store.db import engine_for, writing
from store.migrate import migrate
from store.procedures import (
    CatalogueVersionError,
    open_dossiers_by_version,
    record_catalogue,
    record_versions,
    recorded_procedures,
)

# The audit chain of catalogue changes (not a dossier: its events are all operator events).
CATALOGUE_CHAIN = "catalogue"

catalogue_app = typer.Typer(help="The procedure catalogue in effect.", no_args_is_help=True)


class CatalogueImported(BaseModel):
    """The audit payload of an import."""

    model_config = ConfigDict(frozen=True)

    operator: str
    reason: str
    file: str
    file_sha256: str
    changes: tuple[ProcedureChange, ...]


async def import_catalogue(
    database_url: str, path: Path, *, operator: str, reason: str, dry_run: bool
) -> ImportPlan:
    """Validate `path`, plan its versions and, unless `dry_run`, record them with their audit
    event in one transaction. CatalogueImportError (every bad row) before anything changes."""
    procedures, digest = await asyncio.to_thread(_read, path)
    shipped = shipped_catalogue()
    await migrate(database_url)
    # The shipped versions first, so a code's first import is planned against them.
    await record_catalogue(database_url, shipped)
    async with writing(database_url) as conn:
        current = await recorded_procedures(conn)
        plan = plan_import(path.name, procedures, current, await open_dossiers_by_version(conn))
        if dry_run or not plan.to_record:
            return plan
        await record_versions(
            conn,
            versioned(plan, procedures),
            {c.code: c.version_before for c in plan.to_record},
        )
        await append_operator_event(
            conn,
            code=CATALOGUE_CHAIN,
            event_type="catalogue_import",
            operator=operator,
            payload=CatalogueImported(
                operator=operator,
                reason=reason,
                file=path.name,
                file_sha256=digest,
                changes=plan.to_record,
            ),
        )
    return plan


def _read(path: Path) -> tuple[list[Procedure], str]:
    """The file's procedures, validated, and its SHA-256 for the audit event."""
    shipped = shipped_catalogue()
    procedures = read_import_file(path, shipped.units, shipped.retired)
    return procedures, hashlib.sha256(path.read_bytes()).hexdigest()


@catalogue_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="the catalogue file, .csv or .json")],
    operator: Operator = "",
    reason: Reason = "",
    dry_run: DryRun = False,
    as_json: AsJson = False,
) -> None:
    """Import procedures from the city's file: all rows valid or nothing recorded; changed
    procedures get a new version, dossiers in flight keep theirs."""
    try:
        if not dry_run:
            check_action(operator, reason)
        plan = asyncio.run(
            import_catalogue(
                settings().database_url,
                file,
                operator=operator.strip(),
                reason=reason.strip(),
                dry_run=dry_run,
            )
        )
    except (CatalogueError, OperatorError) as err:  # every bad row listed, nothing recorded
        raise fail(f"ops catalogue import: {err}", 2) from err
    except CatalogueVersionError as err:
        raise fail(f"ops catalogue import: {err}", 1) from err
    if as_json:
        print_json(plan)
        return
    show_plan(plan, dry_run=dry_run)


def show_plan(plan: ImportPlan, *, dry_run: bool) -> None:
    """One line per new or changed procedure, its changed fields under it, then the count."""
    verb = "would record" if dry_run else "recorded"
    for change in plan.to_record:
        if change.kind is ChangeKind.NEW:
            console.print(
                f"{change.code} new, version 1: {change.name}", markup=False, soft_wrap=True
            )
            continue
        kept = (
            f"; {change.dossiers_in_flight} open dossier(s) keep version {change.version_before}"
            if change.dossiers_in_flight
            else ""
        )
        console.print(
            f"{change.code} changed, version {change.version_before} -> "
            f"{change.version_after}{kept}",
            markup=False,
            soft_wrap=True,
        )
        for field in change.fields:
            console.print(
                f"  {field.field}: {field.before} -> {field.after}", markup=False, soft_wrap=True
            )
    unchanged = len(plan.changes) - len(plan.to_record)
    summary = f"{plan.file}: {verb} {len(plan.to_record)} version(s), {unchanged} unchanged"
    console.print(summary, markup=False, highlight=False)


async def recorded_catalogue_csv(database_url: str) -> str:
    """The catalogue in effect (latest recorded version of each code, retired ones left out)
    as a CSV import file."""
    shipped = shipped_catalogue()
    await migrate(database_url)
    await record_catalogue(database_url, shipped)
    async with engine_for(database_url).connect() as conn:
        latest = await recorded_procedures(conn)
    return catalogue_csv(p for p in latest.values() if p.code not in shipped.retired)


@catalogue_app.command("export")
def export_command() -> None:
    """Print the catalogue in effect as a CSV import file (a starting point for the city's)."""
    text = asyncio.run(recorded_catalogue_csv(settings().database_url))
    sys.stdout.write(text)


@catalogue_app.command("from-portal")
def from_portal_command(
    source: Annotated[Path, typer.Argument(help="national portal records, .jsonl")],
) -> None:
    """Print catalogue entries built from the national portal's procedure records as a JSON
    file `ops catalogue import` accepts; codes already in the catalogue and records the rules
    cannot map are left out, counted by reason on stderr (rules: ops/portal_catalogue.py)."""
    shipped = shipped_catalogue()
    try:
        records = read_portal_records(source)
    except (CatalogueError, OSError) as err:
        raise fail(f"ops catalogue from-portal: {err}", 2) from err
    held = frozenset(shipped.procedures) | frozenset(shipped.retired)
    build = build_from_portal(records, shipped.units, held)
    sys.stdout.write(import_file(build, source))
    errors.print(
        f"{source.name}: {len(records)} record(s), {len(build.procedures)} procedure(s)",
        markup=False,
        highlight=False,
    )
    for reason, count in build.skipped_by_reason().items():
        errors.print(f"  skipped, {reason}: {count}", markup=False, highlight=False, soft_wrap=True)
