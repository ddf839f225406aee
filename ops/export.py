"""`python -m ops export`: a dossier for auditors.

    python -m ops export history CODE [--out DIR]             its workflow histories, replayable
    python -m ops export timeline CODE [--html FILE] [--json] who did what, when, on the clock

`history` writes every run of the dossier's workflow and its lane child's, as stored (encoded
payloads), one file per run named ``<workflow id>@<run id>.json`` in Temporal's own JSON
history format; ``python -m ops replay --dir DIR`` or a plain ``temporalio.worker.Replayer``
replays them. Temporal serves them while its retention keeps them, the archive after.

`timeline` reads the dossier's status and timeline (from the read model once it closed) and
puts the legal clock beside each step, in Hanoi time: working time elapsed since receipt,
working time the clock stood still waiting for a supplement (under either supplement rule),
working time remaining to the appointment (negative once it passed) and their sum, the total
working time to the appointment; the status and the national portal's code at each step.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bootstrap import connect
from config import settings
from domain.calendar import HANOI, WorkingCalendar, default_calendar
from domain.catalogue import CatalogueError, default_catalogue
from ops.cli import AsJson, console, errors, fail, print_json, spinner
from ops.temporal import RunHistory, dossier_runs
from schemas.dossier import DossierView, TimelineEntry
from schemas.lifecycle import PortalState, portal_sync_needed
from schemas.statuses import DossierStatus, Outcome, Stage, portal_code
from services import dossiers

export_app = typer.Typer(
    help="Export a dossier for auditors: its histories, its timeline.", no_args_is_help=True
)


class DossierNotFound(LookupError):
    pass


# --- histories ------------------------------------------------------------------------------
def history_file_name(run: RunHistory) -> str:
    """`<workflow id>@<run id>.json`: `ops replay --dir` takes the workflow id from it."""
    return f"{run.history.workflow_id}@{run.run_id}.json"


def write_histories(runs: list[RunHistory], folder: Path) -> list[Path]:
    """Each run in its own file, in Temporal's JSON history format (what `temporal workflow
    show --output json` writes and `WorkflowHistory.from_json` reads), payloads encoded as
    stored."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        path = folder / history_file_name(run)
        path.write_text(run.history.to_json() + "\n", encoding="utf-8")
        written.append(path)
    return written


# --- the timeline with the legal clock ------------------------------------------------------
class TimelineRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    at: datetime
    status: DossierStatus
    portal_code: int
    portal_sent: bool
    step: str
    actor: str
    note: str
    due_at: datetime | None
    paused: bool
    elapsed_working_seconds: int | None
    paused_working_seconds: int | None
    remaining_working_seconds: int | None
    total_working_seconds: int | None


class DossierTimeline(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    procedure_code: str
    procedure_name: str
    procedure_version: int
    receiving_unit: str
    receiving_unit_name: str
    competent_unit: str
    competent_unit_name: str
    tier: str
    lane: str
    stage: Stage
    status: DossierStatus
    portal_status_code: int
    outcome: Outcome | None
    reason: str | None
    received_at: datetime
    due_at: datetime | None
    result_ready_at: datetime | None
    closed_at: datetime | None
    on_time: bool | None
    apologized: bool
    rows: list[TimelineRow]


def _hanoi(value: datetime) -> datetime:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(HANOI)


def _second(value: datetime) -> datetime:
    """Whole seconds: working time is counted in whole seconds, so sums add up exactly."""
    return value.replace(microsecond=0)


def pauses(entries: list[TimelineEntry]) -> list[tuple[datetime, datetime | None]]:
    """When the clock stood still: from a supplement request to the next status that is not
    `supplement_requested` (the supplement received, or a withdrawal); open while waiting."""
    found: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    for entry in entries:
        if entry.status is DossierStatus.SUPPLEMENT_REQUESTED:
            if start is None:
                start = _second(entry.at)
        elif start is not None:
            found.append((start, _second(entry.at)))
            start = None
    if start is not None:
        found.append((start, None))
    return found


def timeline_rows(
    view: DossierView, entries: list[TimelineEntry], calendar: WorkingCalendar | None = None
) -> list[TimelineRow]:
    calendar = calendar or default_calendar()
    waits = pauses(entries)
    received = _second(view.received_at)
    synced: PortalState | None = None
    rows: list[TimelineRow] = []
    for index, entry in enumerate(entries):
        at = _second(entry.at)
        due = None if entry.due_at is None else _second(entry.due_at)
        sent = portal_sync_needed(entry.step, entry.status, entry.due_at, synced)
        if sent:
            synced = (entry.status, entry.due_at)
        paused_now = entry.status is DossierStatus.SUPPLEMENT_REQUESTED
        elapsed = paused = remaining = total = None
        if due is not None:
            paused = sum(
                calendar.working_seconds_between(s, at if e is None else min(e, at))
                for s, e in waits
                if s < at
            )
            elapsed = calendar.working_seconds_between(received, at) - paused
            remaining = (
                calendar.working_seconds_between(at, due)
                if due >= at
                else -calendar.working_seconds_between(due, at)
            )
            total = calendar.working_seconds_between(received, due) - paused
        rows.append(
            TimelineRow(
                index=index + 1,
                at=_hanoi(entry.at),
                status=entry.status,
                portal_code=portal_code(entry.status),
                portal_sent=sent,
                step=entry.step,
                actor=entry.actor,
                note=entry.note,
                due_at=None if entry.due_at is None else _hanoi(entry.due_at),
                paused=paused_now,
                elapsed_working_seconds=elapsed,
                paused_working_seconds=paused,
                remaining_working_seconds=remaining,
                total_working_seconds=total,
            )
        )
    return rows


def build_timeline(view: DossierView, entries: list[TimelineEntry]) -> DossierTimeline:
    catalogue = default_catalogue()

    def unit_name(code: str) -> str:
        try:
            return catalogue.unit(code).name
        except CatalogueError:
            return code

    try:
        procedure_name = catalogue.procedure(view.procedure_code).name
    except CatalogueError:
        procedure_name = ""
    clock = view.clock
    return DossierTimeline(
        code=view.code,
        procedure_code=view.procedure_code,
        procedure_name=procedure_name,
        procedure_version=view.procedure_version,
        receiving_unit=view.receiving_unit,
        receiving_unit_name=unit_name(view.receiving_unit),
        competent_unit=view.competent_unit,
        competent_unit_name=unit_name(view.competent_unit),
        tier=view.tier,
        lane=view.lane,
        stage=view.stage,
        status=view.status,
        portal_status_code=view.portal_status_code,
        outcome=view.outcome,
        reason=view.reason,
        received_at=_hanoi(view.received_at),
        due_at=None if clock is None else _hanoi(clock.due_at),
        result_ready_at=None if view.result_ready_at is None else _hanoi(view.result_ready_at),
        closed_at=None if view.closed_at is None else _hanoi(view.closed_at),
        on_time=view.on_time,
        apologized=bool(clock and clock.apologized),
        rows=timeline_rows(view, entries),
    )


async def dossier_timeline(client: Client, database_url: str, code: str) -> DossierTimeline:
    try:
        view = await dossiers.status(client, database_url, code)
        entries = await dossiers.timeline(client, database_url, code)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise DossierNotFound(f"no dossier {code} on the server") from err
        raise
    return build_timeline(view, entries)


# --- rendering ------------------------------------------------------------------------------
def hanoi_time(value: datetime | None) -> str:
    return "" if value is None else _hanoi(value).strftime("%d/%m/%Y %H:%M:%S")


def working_time(seconds: int | None) -> str:
    """Working time as h:mm (a working day is 8 h); negative once the appointment passed."""
    if seconds is None:
        return ""
    sign = "−" if seconds < 0 else ""
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60}:{minutes % 60:02d}"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("có / yes" if value else "không / no")


COLUMNS: tuple[tuple[str, str], ...] = (
    ("#", "#"),
    ("Thời điểm (giờ Hà Nội)", "Time (Hanoi)"),
    ("Bước", "Step"),
    ("Người thực hiện", "Actor"),
    ("Trạng thái", "Status"),
    ("Mã Cổng DVCQG", "Portal code"),
    ("Đã dùng", "Elapsed"),
    ("Tạm dừng", "Paused"),
    ("Còn lại", "Remaining"),
    ("Tổng đến hẹn", "Total to appointment"),
    ("Ngày hẹn trả", "Appointment"),
    ("Ghi chú", "Note"),
)

CSS = """
@page { size: A4 landscape; margin: 12mm 10mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans", "DejaVu Sans", Arial, sans-serif; font-size: 10pt;
       color: #111; margin: 16px; }
h1 { font-size: 15pt; margin: 0 0 4px; }
h1 .en, th .en, dt .en { font-weight: normal; color: #555; }
.en { font-size: 85%; }
dl { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 12px;
     margin: 8px 0 12px; }
dt { font-weight: bold; }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #999; padding: 3px 4px; vertical-align: top; text-align: left; }
th { background: #e8eef5; font-size: 8.5pt; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.time { white-space: nowrap; }
tr.paused td { background: #fff6d6; }
tr.late td.remaining { color: #a40000; font-weight: bold; }
.legend { font-size: 8.5pt; color: #444; margin-top: 8px; }
footer { font-size: 8pt; color: #555; margin-top: 10px; }
@media print {
  body { margin: 0; font-size: 8.5pt; }
  thead { display: table-header-group; }
  tr { page-break-inside: avoid; break-inside: avoid; }
  th { background: #e8eef5 !important; -webkit-print-color-adjust: exact;
       print-color-adjust: exact; }
  tr.paused td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _label(vi: str, en: str) -> str:
    return f'{escape(vi)}<br><span class="en">{escape(en)}</span>'


def render_html(timeline: DossierTimeline, generated_at: datetime | None = None) -> str:
    """A self-contained page (inline CSS, no script, no external asset) that prints on A4."""
    t = timeline
    generated = hanoi_time(generated_at or datetime.now(HANOI))
    facts: list[tuple[str, str, str]] = [
        ("Mã hồ sơ", "Dossier code", t.code),
        ("Thủ tục", "Procedure", f"{t.procedure_code} v{t.procedure_version} {t.procedure_name}"),
        ("Nơi tiếp nhận", "Receiving unit", f"{t.receiving_unit_name} ({t.receiving_unit})"),
        ("Nơi giải quyết", "Competent unit", f"{t.competent_unit_name} ({t.competent_unit})"),
        ("Cấp / luồng", "Tier / lane", f"{t.tier} / {t.lane}"),
        ("Trạng thái", "Status", f"{t.status.value} ({t.portal_status_code})"),
        ("Tiếp nhận", "Received", hanoi_time(t.received_at)),
        ("Hẹn trả", "Appointment", hanoi_time(t.due_at)),
        ("Có kết quả", "Result ready", hanoi_time(t.result_ready_at)),
        ("Kết thúc", "Closed", hanoi_time(t.closed_at)),
        ("Kết quả", "Outcome", "" if t.outcome is None else t.outcome.value),
        ("Đúng hạn", "On time", _yes_no(t.on_time)),
        ("Phiếu xin lỗi", "Apology slip", _yes_no(t.apologized)),
        ("Lý do", "Reason", t.reason or ""),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="vi">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{escape(f'Hồ sơ {t.code} - timeline')}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>Quá trình giải quyết hồ sơ {escape(t.code)}<br>"
        f'<span class="en">Processing timeline of dossier {escape(t.code)}</span></h1>',
        "<dl>",
    ]
    for vi, en, value in facts:
        parts.append(f"<dt>{_label(vi, en)}</dt><dd>{escape(value)}</dd>")
    parts += ["</dl>", "<table>", "<thead>", "<tr>"]
    parts += [f'<th scope="col">{_label(vi, en)}</th>' for vi, en in COLUMNS]
    parts += ["</tr>", "</thead>", "<tbody>"]
    for row in t.rows:
        classes = [c for c, on in (("paused", row.paused), ("late", _late(row))) if on]
        attr = f' class="{" ".join(classes)}"' if classes else ""
        portal = f"{row.portal_code}" + (" ✓" if row.portal_sent else "")
        cells = [
            ("num", str(row.index)),
            ("time", hanoi_time(row.at)),
            ("", row.step),
            ("", row.actor),
            ("", row.status.value),
            ("num", portal),
            ("num", working_time(row.elapsed_working_seconds)),
            ("num", working_time(row.paused_working_seconds)),
            ("num remaining", working_time(row.remaining_working_seconds)),
            ("num", working_time(row.total_working_seconds)),
            ("time", hanoi_time(row.due_at)),
            ("", row.note),
        ]
        parts.append(f"<tr{attr}>")
        parts += [
            f'<td class="{css}">{escape(text)}</td>' if css else f"<td>{escape(text)}</td>"
            for css, text in cells
        ]
        parts.append("</tr>")
    parts += [
        "</tbody>",
        "</table>",
        '<p class="legend">Thời gian tính theo giờ làm việc (h:mm; một ngày làm việc 8 giờ), '
        "kể từ khi tiếp nhận; &quot;Tạm dừng&quot;: thời gian chờ bổ sung hồ sơ; "
        "✓: trạng thái đã gửi Cổng Dịch vụ công quốc gia.<br>"
        '<span class="en">Working time (h:mm; a working day is 8 h) since receipt; '
        "&quot;Paused&quot;: time waiting for a supplement; ✓: status sent to the national "
        "portal.</span></p>",
        f"<footer>Xuất lúc / generated {escape(generated)} (giờ Hà Nội / Hanoi time) "
        "từ lịch sử Temporal của hồ sơ / from the dossier's Temporal history.</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _late(row: TimelineRow) -> bool:
    return row.remaining_working_seconds is not None and row.remaining_working_seconds < 0


def _table(timeline: DossierTimeline) -> Table:
    table = Table(title=f"{timeline.code}: {timeline.status.value} ({timeline.portal_status_code})")
    for _, en in COLUMNS:
        table.add_column(en)
    for row in timeline.rows:
        table.add_row(
            str(row.index),
            hanoi_time(row.at),
            row.step,
            row.actor,
            row.status.value + (" (paused)" if row.paused else ""),
            f"{row.portal_code}" + (" ✓" if row.portal_sent else ""),
            working_time(row.elapsed_working_seconds),
            working_time(row.paused_working_seconds),
            working_time(row.remaining_working_seconds),
            working_time(row.total_working_seconds),
            hanoi_time(row.due_at),
            row.note,
        )
    return table


# --- commands -------------------------------------------------------------------------------
@export_app.command("history")
def export_history(
    code: Annotated[str, typer.Argument(help="the dossier code")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="the folder to write to (default: ./<code>-histories)"),
    ] = None,
) -> None:
    """Every run of the dossier's workflows, one Temporal JSON history file each: replayable."""
    folder = out or Path(f"{code}-histories")

    async def run() -> list[RunHistory]:
        config = settings()
        client = await connect(config)
        with spinner() as progress:
            progress.add_task(f"fetching the histories of {code}", total=None)
            # From Temporal while its retention keeps them, from the archive after.
            return await dossier_runs(client, config.database_url, code)

    runs = asyncio.run(run())
    if not runs:
        raise fail(f"export: no dossier {code} in Temporal or the archive", 1)
    for path, history in zip(write_histories(runs, folder), runs, strict=True):
        errors.print(f"export: {path} ({len(history.history.events)} events, {history.source})")
    errors.print(f"export: {len(runs)} histories of {code} written to {folder}")


@export_app.command("timeline")
def export_timeline(
    code: Annotated[str, typer.Argument(help="the dossier code")],
    html: Annotated[
        Path | None, typer.Option("--html", help="write a printable HTML page to this file")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Who did what and when (Hanoi time), the legal clock and the portal code at each step."""

    async def run() -> DossierTimeline:
        config = settings()
        client = await connect(config)
        with spinner() as progress:
            progress.add_task(f"reading the timeline of {code}", total=None)
            return await dossier_timeline(client, config.database_url, code)

    try:
        timeline = asyncio.run(run())
    except DossierNotFound as err:
        raise fail(f"export: {err}", 1) from err
    if html is not None:
        html.write_text(render_html(timeline), encoding="utf-8")
        errors.print(f"export: timeline of {code}, {len(timeline.rows)} steps, written to {html}")
    if as_json:
        print_json(timeline)
    elif html is None:
        console.print(_table(timeline))
