"""`python -m ops plan --scenario FILE --staffing FILE [--compare FILE]`: what a staffing plan
(and another, side by side) does to each ward's backlog and overdue dossiers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from domain.calendar import WorkingCalendar, default_calendar
from domain.catalogue import Catalogue, CatalogueError, default_catalogue
from planner.measure import Measured, measure, past_arrivals, resolve
from planner.report import PlanReport, build_report, write_charts
from planner.scenario import ArrivalRow, PlanInputError, Scenario, load_scenario, load_staffing
from planner.simulation import simulate

SHOWN_WARDS = 12
LABELS = "ABC"


def prepare(
    scenario_file: Path,
    catalogue: Catalogue,
    calendar: WorkingCalendar,
    database_url: str | None = None,
) -> tuple[Scenario, list[ArrivalRow], Measured]:
    """The scenario, its arrivals (with those from the read model) and what was measured."""
    scenario, arrivals = load_scenario(scenario_file, catalogue)
    measured = Measured()
    if scenario.history is not None or scenario.measured is not None:
        if database_url is None:
            from config import settings

            database_url = settings().database_url
        if scenario.history is not None:
            arrivals = arrivals + asyncio.run(past_arrivals(database_url, scenario))
        if scenario.measured is not None:
            measured = asyncio.run(measure(database_url, scenario.measured, calendar))
    return scenario, arrivals, measured


def plan(
    scenario_file: Path,
    staffing_files: list[Path],
    *,
    seed: int | None = None,
    catalogue: Catalogue | None = None,
    calendar: WorkingCalendar | None = None,
) -> list[PlanReport]:
    """One report per staffing plan, on the same scenario and the same random draws."""
    catalogue = catalogue or default_catalogue()
    calendar = calendar or default_calendar()
    scenario, arrivals, measured = prepare(scenario_file, catalogue, calendar)
    parameters = resolve(scenario, measured, catalogue, {row.procedure for row in arrivals})
    reports = []
    for path in staffing_files:
        staffing = load_staffing(path, catalogue, calendar)
        began = time.perf_counter()
        outcome = simulate(scenario, staffing, arrivals, parameters, catalogue, calendar, seed)
        elapsed = time.perf_counter() - began
        used = scenario.seed if seed is None else seed
        reports.append(build_report(outcome, scenario, staffing, parameters, elapsed, used))
    return reports


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summary_table(reports: list[PlanReport]) -> Table:
    """Per ward (the highest peak backlogs first), each plan's figures side by side."""
    labels = ", ".join(f"{LABELS[i]}: {r.staffing}" for i, r in enumerate(reports))
    table = Table(
        title=f"{reports[0].scenario}: {reports[0].dossiers} dossiers\n({labels})",
        caption="on time: share of the decided; slips: apology slips; peak: largest backlog "
        "at a day's end; late from: first day with a slip or an overdue dossier",
    )
    table.add_column("ward")
    table.add_column("filed", justify="right")
    for i in range(len(reports)):
        for column in ("on time", "slips", "overdue", "peak", "late from"):
            table.add_column(f"{LABELS[i]} {column}", justify="right")
    by_ward = [{w.ward: w for w in r.wards} for r in reports]
    wards = sorted(by_ward[0], key=lambda w: (-max(b[w].peak_backlog for b in by_ward), w))
    for ward in wards[:SHOWN_WARDS]:
        cells = [ward, str(by_ward[0][ward].arrivals)]
        for figures in by_ward:
            w = figures[ward]
            late = [d for d in (w.first_apology_day, w.first_overdue_day) if d is not None]
            cells += [
                _pct(w.on_time_share),
                str(w.apology_slips),
                str(w.overdue),
                str(w.peak_backlog),
                f"{min(late):%d/%m}" if late else "-",
            ]
        table.add_row(*cells)
    if len(wards) > SHOWN_WARDS:
        table.add_row(f"... {len(wards) - SHOWN_WARDS} more wards", "")
    cells = ["all wards", str(reports[0].dossiers)]
    for report in reports:
        cells += [
            _pct(report.on_time_share),
            str(report.apology_slips),
            str(report.overdue),
            "-",
            "-",
        ]
    table.add_row(*cells, end_section=True)
    return table


def plan_command(
    scenario: Annotated[Path, typer.Option("--scenario", help="scenario file (JSON)")],
    staffing: Annotated[Path, typer.Option("--staffing", help="staffing plan file (JSON)")],
    compare: Annotated[
        Path | None, typer.Option("--compare", help="another staffing plan, side by side")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="folder for plan.json and the charts (default data/plans/…)"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="random seed (default: the scenario's)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON report")] = False,
) -> None:
    """Simulate a surge with a staffing plan: per ward and day the backlog, dossiers due,
    apology slips, overdue, on-time share and officers' utilisation; the wards that go late
    first. Writes plan.json and backlog.png, late.png, utilisation.png."""
    from ops.cli import console, fail

    files = [staffing] + ([compare] if compare else [])
    try:
        reports = plan(scenario, files, seed=seed)
    except (PlanInputError, CatalogueError) as err:
        raise fail(f"ops plan: {err}", 2) from err
    folder = out or Path("data") / "plans" / scenario.stem
    folder.mkdir(parents=True, exist_ok=True)
    document = [r.model_dump(mode="json") for r in reports]
    (folder / "plan.json").write_text(json.dumps(document, indent=1), encoding="utf-8")
    charts = write_charts(reports, folder)
    if as_json:
        console.print_json(json.dumps(document))
        return
    # Wide enough for two plans side by side when the output goes to a file or a pipe.
    wide = console if console.is_terminal else Console(width=40 + 60 * len(reports))
    wide.print(summary_table(reports))
    for report in reports:
        firsts = ", ".join(f"{w} {d:%d/%m}" for w, d in report.first_to_go_late[:5]) or "none"
        console.print(
            f"{report.staffing}: {report.decided} decided, {report.open_at_end} open at the end, "
            f"on time {_pct(report.on_time_share)}; first to go late: {firsts} "
            f"(simulated in {report.seconds:.1f} s)"
        )
    console.print(f"written: {folder / 'plan.json'}, " + ", ".join(str(p) for p in charts))
