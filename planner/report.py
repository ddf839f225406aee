"""What a plan does, per ward and per day: backlog, dossiers due, apology slips, overdue,
on-time share and officers' utilisation; the wards that go overdue first; two plans side by
side; as tables, JSON and PNG charts."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from planner.measure import ProcedureParameters
from planner.scenario import Scenario, Staffing
from planner.simulation import DAY, Outcome


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class WardDay(_Row):
    ward: str
    day: date
    arrivals: int
    decided: int
    backlog: int  # open at the end of the day
    due: int  # dossiers whose (last) appointment falls on the day
    apology_slips: int
    overdue: int  # appointments that passed that day with the dossier open
    on_time: int
    late: int
    on_time_share: float | None  # of the dossiers decided that day


class DeskDay(_Row):
    desk: str  # a unit, or wards sharing certification joined by "+"
    role: str
    day: date
    officer_minutes: float
    busy_minutes: float
    utilisation: float | None


class WardSummary(_Row):
    ward: str
    arrivals: int
    decided: int
    open_at_end: int
    on_time_share: float | None
    apology_slips: int
    overdue: int
    peak_backlog: int
    first_apology_day: date | None
    first_overdue_day: date | None


class PlanReport(_Row):
    scenario: str
    staffing: str
    start: date
    days: int
    seed: int
    dossiers: int
    decided: int
    open_at_end: int
    on_time_share: float | None
    apology_slips: int
    overdue: int
    # The wards that go overdue first: (ward, first day with an overdue or apology slip).
    first_to_go_late: list[tuple[str, date]]
    wards: list[WardSummary]
    ward_days: list[WardDay]
    desk_days: list[DeskDay]
    parameters: list[ProcedureParameters]
    seconds: float


def _share(on_time: int, late: int) -> float | None:
    return round(on_time / (on_time + late), 4) if on_time + late else None


def build_report(
    outcome: Outcome,
    scenario: Scenario,
    staffing: Staffing,
    parameters: dict[str, ProcedureParameters],
    seconds: float,
    seed: int,
) -> PlanReport:
    days = scenario.days
    counts: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {k: [0] * days for k in ("arr", "dec", "due", "apo", "ovd", "ok", "late")}
    )

    def put(ward: str, key: str, minute: float | None) -> None:
        if minute is None:
            return
        index = int(minute // DAY)
        if 0 <= index < days:
            counts[ward][key][index] += 1

    for d in outcome.dossiers:
        put(d.ward, "arr", d.received_minute)
        put(d.ward, "dec", d.decided_minute)
        put(d.ward, "due", d.due_minute)
        put(d.ward, "apo", d.apology_minute)
        put(d.ward, "ovd", d.overdue_minute)
        if d.decided_minute is not None:
            put(d.ward, "ok" if d.on_time else "late", d.decided_minute)
    ward_days: list[WardDay] = []
    summaries: list[WardSummary] = []
    firsts: list[tuple[str, date]] = []
    for ward in sorted(counts):
        c = counts[ward]
        backlog = 0
        peak = 0
        first_apology: date | None = None
        first_overdue: date | None = None
        for i, day in enumerate(scenario.days_list):
            backlog += c["arr"][i] - c["dec"][i]
            peak = max(peak, backlog)
            if c["apo"][i] and first_apology is None:
                first_apology = day
            if c["ovd"][i] and first_overdue is None:
                first_overdue = day
            ward_days.append(
                WardDay(
                    ward=ward,
                    day=day,
                    arrivals=c["arr"][i],
                    decided=c["dec"][i],
                    backlog=backlog,
                    due=c["due"][i],
                    apology_slips=c["apo"][i],
                    overdue=c["ovd"][i],
                    on_time=c["ok"][i],
                    late=c["late"][i],
                    on_time_share=_share(c["ok"][i], c["late"][i]),
                )
            )
        late_days = [d for d in (first_apology, first_overdue) if d is not None]
        if late_days:
            firsts.append((ward, min(late_days)))
        summaries.append(
            WardSummary(
                ward=ward,
                arrivals=sum(c["arr"]),
                decided=sum(c["dec"]),
                open_at_end=backlog,
                on_time_share=_share(sum(c["ok"]), sum(c["late"])),
                apology_slips=sum(c["apo"]),
                overdue=sum(c["ovd"]),
                peak_backlog=peak,
                first_apology_day=first_apology,
                first_overdue_day=first_overdue,
            )
        )
    desk_days: list[DeskDay] = []
    for (name, role), desk in sorted(outcome.desks.items()):
        available = desk.available()
        for i, day in enumerate(scenario.days_list):
            offered = available.get(i, 0.0)
            busy = desk.busy.get(i, 0.0)
            desk_days.append(
                DeskDay(
                    desk=name,
                    role=role.value,
                    day=day,
                    officer_minutes=round(offered, 1),
                    busy_minutes=round(busy, 1),
                    utilisation=round(busy / offered, 4) if offered else None,
                )
            )
    decided = [d for d in outcome.dossiers if d.decided_minute is not None]
    on_time = sum(1 for d in decided if d.on_time)
    firsts.sort(key=lambda pair: (pair[1], pair[0]))
    return PlanReport(
        scenario=scenario.name,
        staffing=staffing.name,
        start=scenario.start,
        days=days,
        seed=seed,
        dossiers=len(outcome.dossiers),
        decided=len(decided),
        open_at_end=len(outcome.dossiers) - len(decided),
        on_time_share=_share(on_time, len(decided) - on_time),
        apology_slips=sum(1 for d in outcome.dossiers if d.apologized),
        overdue=sum(1 for d in outcome.dossiers if d.overdue),
        first_to_go_late=firsts,
        wards=summaries,
        ward_days=ward_days,
        desk_days=desk_days,
        parameters=list(parameters.values()),
        seconds=round(seconds, 2),
    )


# --- charts ---------------------------------------------------------------------------------
def _day(day: date) -> float:
    """matplotlib's date axis, for a day of the plan."""
    from matplotlib.dates import date2num

    return float(date2num(datetime.combine(day, time(12))))  # type: ignore[no-untyped-call]


def _top_wards(reports: list[PlanReport], limit: int) -> list[str]:
    """The wards with the highest peak backlog in any of the plans."""
    peak: dict[str, int] = defaultdict(int)
    for report in reports:
        for ward in report.wards:
            peak[ward.ward] = max(peak[ward.ward], ward.peak_backlog)
    return sorted(peak, key=lambda w: (-peak[w], w))[:limit]


def write_charts(reports: list[PlanReport], folder: Path, *, wards: int = 6) -> list[Path]:
    """backlog.png (open dossiers at the end of each day), late.png (apology slips and
    overdue per day), utilisation.png (officers' busy share per role and day), each with the
    plans side by side: the first plan in solid lines, the second dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    shown = _top_wards(reports, wards)
    styles = ["-", "--", ":"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    written: list[Path] = []

    def per_ward(metric: str, title: str, name: str) -> None:
        figure, axes = plt.subplots(figsize=(9, 4.5), dpi=80)
        for p, report in enumerate(reports):
            for w, ward in enumerate(shown):
                rows = [r for r in report.ward_days if r.ward == ward]
                values = [
                    r.apology_slips + r.overdue if metric == "late" else getattr(r, metric)
                    for r in rows
                ]
                axes.plot(
                    [_day(r.day) for r in rows],
                    values,
                    styles[p % len(styles)],
                    color=colours[w % len(colours)],
                    label=f"{ward} ({report.staffing})",
                )
        axes.xaxis_date()
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, ncol=2)
        figure.autofmt_xdate()
        figure.tight_layout()
        path = folder / name
        figure.savefig(path)
        plt.close(figure)
        written.append(path)

    per_ward("backlog", "Open dossiers at the end of each day", "backlog.png")
    per_ward("late", "Apology slips and overdue dossiers per day", "late.png")

    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=80)
    for p, report in enumerate(reports):
        by_role: dict[str, dict[date, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0])
        )
        for row in report.desk_days:
            if row.desk.split("+")[0] in shown or any(u in shown for u in row.desk.split("+")):
                cell = by_role[row.role][row.day]
                cell[0] += row.busy_minutes
                cell[1] += row.officer_minutes
        for r, (role, days) in enumerate(sorted(by_role.items())):
            points = [(day, b / o) for day, (b, o) in sorted(days.items()) if o]
            axes.plot(
                [_day(d) for d, _ in points],
                [u for _, u in points],
                styles[p % len(styles)],
                marker="o",
                color=colours[r % len(colours)],
                label=f"{role} ({report.staffing})",
            )
    axes.xaxis_date()
    axes.set_title("Officers' utilisation on working days, wards shown above")
    axes.set_ylim(0, 1.05)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.autofmt_xdate()
    figure.tight_layout()
    path = folder / "utilisation.png"
    figure.savefig(path)
    plt.close(figure)
    written.append(path)
    return written
