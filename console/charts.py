"""The console's charts: plotly figures built here from the read side's rows, drawn in the
browser by the plotly.js the plotly package ships (served by the console, no CDN)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta

import plotly.graph_objects as go
import plotly.io as pio

from console.story import ClockMarks
from domain.calendar import HANOI, WorkingCalendar
from store.kpis import BacklogRow, OnTimeBreakdownRow, OpenTasksRow, QualityRow, ReceivedRow

Words = Callable[[str], str]
Name = Callable[[str], str]

COLOURS = ("#1f5fa8", "#e07b00", "#2e8b57", "#b22222", "#6a5acd", "#708090")
MOST_BARS = 25  # a chart of every unit of the city is unreadable: the largest ones


def html(figure: go.Figure, div_id: str, *, height: int = 320) -> str:
    figure.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 40, "b": 60},
        font={"family": "Noto Sans, DejaVu Sans, Arial, sans-serif", "size": 12},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
    )
    return str(
        pio.to_html(
            figure,
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"displayModeBar": False, "responsive": True},
        )
    )


def _days(figure: go.Figure) -> None:
    """One tick per day, as Hanoi reads a date."""
    figure.update_xaxes(type="date", tickformat="%d/%m", dtick=86_400_000)


def received(rows: Sequence[ReceivedRow], t: Words) -> str | None:
    if not rows:
        return None
    per_channel: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        per_channel[row.channel][row.day] += row.received
    total = sum(r.received for r in rows)
    online = sum(r.received for r in rows if r.channel == "online")
    figure = go.Figure(
        [
            go.Bar(name=channel, x=list(days), y=list(days.values()), marker_color=COLOURS[i])
            for i, (channel, days) in enumerate(sorted(per_channel.items()))
        ]
    )
    figure.update_layout(
        barmode="stack",
        title=f"{t('chart.received')} · {t('online_share')} {100 * online / total:.0f} %",
    )
    _days(figure)
    return html(figure, "chart-received")


def lanes(rows: Sequence[ReceivedRow], t: Words) -> str | None:
    if not rows:
        return None
    per_lane: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        per_lane[row.lane][row.day] += row.received
    figure = go.Figure(
        [
            go.Bar(name=lane, x=list(days), y=list(days.values()), marker_color=COLOURS[i])
            for i, (lane, days) in enumerate(sorted(per_lane.items()))
        ]
    )
    figure.update_layout(barmode="stack", title=t("chart.lanes"))
    _days(figure)
    return html(figure, "chart-lanes")


def backlog(rows: Sequence[BacklogRow], tier: str, t: Words, name: Name) -> str | None:
    mine = sorted((r for r in rows if r.tier == tier), key=lambda r: -r.open)[:MOST_BARS]
    if not mine:
        return None
    units = [name(r.unit) for r in mine]
    figure = go.Figure(
        [
            go.Bar(name=t("open"), x=units, y=[r.open for r in mine], marker_color=COLOURS[0]),
            go.Bar(
                name=t("overdue"), x=units, y=[r.overdue for r in mine], marker_color=COLOURS[3]
            ),
        ]
    )
    figure.update_layout(barmode="group", title=t(f"chart.backlog_{tier}"))
    return html(figure, f"chart-backlog-{tier}")


def on_time_trend(rows: Sequence[OnTimeBreakdownRow], t: Words) -> str | None:
    points = [r for r in rows if r.period is not None and r.ratio is not None]
    if not points:
        return None
    figure = go.Figure(
        go.Scatter(
            x=[r.period for r in points],
            y=[100 * (r.ratio or 0) for r in points],
            mode="lines+markers",
            name=t("on_time_share"),
            text=[f"{r.on_time}/{r.closed}" for r in points],
            marker_color=COLOURS[2],
        )
    )
    figure.update_layout(title=t("chart.on_time_trend"), yaxis={"range": [0, 105]})
    figure.update_xaxes(type="date", tickformat="%d/%m/%Y")
    return html(figure, "chart-on-time-trend")


def on_time_by(
    rows: Sequence[OnTimeBreakdownRow], div_id: str, title: str, t: Words, name: Name
) -> str | None:
    bars = sorted((r for r in rows if r.ratio is not None), key=lambda r: -r.closed)[:MOST_BARS]
    if not bars:
        return None
    figure = go.Figure(
        go.Bar(
            x=[name(r.key or "") for r in bars],
            y=[100 * (r.ratio or 0) for r in bars],
            text=[f"{r.on_time}/{r.closed}" for r in bars],
            name=t("on_time_share"),
            marker_color=COLOURS[2],
        )
    )
    figure.update_layout(title=title, yaxis={"range": [0, 105]})
    return html(figure, div_id)


def apologies(rows: Sequence[QualityRow], t: Words, name: Name) -> str | None:
    bars = sorted((r for r in rows if r.apologized), key=lambda r: -r.apologized)[:MOST_BARS]
    if not bars:
        return None
    figure = go.Figure(
        go.Bar(
            x=[name(r.key) for r in bars],
            y=[r.apologized for r in bars],
            name=t("apologized"),
            marker_color=COLOURS[1],
        )
    )
    figure.update_layout(title=t("chart.apologies"))
    return html(figure, "chart-apologies")


def supplements(rows: Sequence[QualityRow], t: Words, name: Name) -> str | None:
    bars = sorted((r for r in rows if r.received), key=lambda r: -r.received)[:MOST_BARS]
    if not bars:
        return None
    figure = go.Figure(
        go.Bar(
            x=[name(r.key) for r in bars],
            y=[100 * r.supplemented / r.received for r in bars],
            text=[f"{r.supplemented}/{r.received}" for r in bars],
            name=t("supplement_rate"),
            marker_color=COLOURS[4],
        )
    )
    figure.update_layout(title=t("chart.supplements"), yaxis={"range": [0, 105]})
    return html(figure, "chart-supplements")


def processing(rows: Sequence[QualityRow], t: Words, name: Name) -> str | None:
    bars = [r for r in rows if r.avg_processing_seconds is not None][:MOST_BARS]
    if not bars:
        return None
    keys = [name(r.key) for r in bars]
    figure = go.Figure(
        [
            go.Bar(
                name=t("processing_hours"),
                x=keys,
                y=[(r.avg_processing_seconds or 0) / 3600 for r in bars],
                marker_color=COLOURS[0],
            ),
            go.Bar(
                name=t("allowed_hours"),
                x=keys,
                y=[(r.avg_allowed_seconds or 0) / 3600 for r in bars],
                marker_color=COLOURS[5],
            ),
        ]
    )
    figure.update_layout(barmode="group", title=t("chart.processing"))
    return html(figure, "chart-processing")


def open_tasks(rows: Sequence[OpenTasksRow], t: Words) -> str | None:
    if not rows:
        return None
    figure = go.Figure(
        go.Bar(x=[r.role for r in rows], y=[r.open for r in rows], marker_color=COLOURS[0])
    )
    figure.update_layout(title=t("chart.tasks"))
    return html(figure, "chart-tasks", height=280)


def _wall(at: datetime) -> datetime:
    """Hanoi wall-clock time without an offset: plotly.js draws dates as given."""
    return at.astimezone(HANOI).replace(tzinfo=None)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def legal_clock(marks: ClockMarks, calendar: WorkingCalendar, t: Words) -> str:
    """The dossier's clock against the working-day calendar: days off shaded, the time waiting
    for a supplement shaded, a marker for each event, a line at each appointment."""
    start = marks.received.astimezone(HANOI).date() - timedelta(days=1)
    ends = [marks.received, *marks.appointments, *(e for e in (marks.closed, marks.now) if e)]
    end = max(e.astimezone(HANOI) for e in ends).date() + timedelta(days=2)
    figure = go.Figure()
    day = start
    while day < end:
        if not calendar.is_working_day(day):
            figure.add_vrect(
                x0=_midnight(day),
                x1=_midnight(day + timedelta(days=1)),
                fillcolor="#d9d9d9",
                opacity=0.6,
                line_width=0,
            )
        day += timedelta(days=1)
    for paused_from, paused_to in marks.pauses:
        figure.add_vrect(
            x0=_wall(paused_from),
            x1=_wall(paused_to or marks.now or paused_from),
            fillcolor="#ffd966",
            opacity=0.6,
            line_width=0,
        )
    for appointment in marks.appointments:
        figure.add_vline(
            x=_wall(appointment),
            line_dash="dash",
            line_color=COLOURS[3],
        )
    events: list[tuple[str, datetime, str]] = [(t("received"), marks.received, COLOURS[0])]
    events += [(t("apology"), at, COLOURS[1]) for at in marks.apologies]
    if marks.result_ready is not None:
        events.append((t("result_ready"), marks.result_ready, COLOURS[2]))
    if marks.closed is not None:
        events.append((t("returned"), marks.closed, COLOURS[4]))
    events += [(t("appointment"), at, COLOURS[3]) for at in marks.appointments]
    for label, at, colour in events:
        figure.add_trace(
            go.Scatter(
                x=[_wall(at)],
                y=[label],
                mode="markers",
                marker={"size": 12, "color": colour},
                name=label,
                showlegend=False,
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={"size": 12, "color": "#d9d9d9", "symbol": "square"},
            name=t("day_off"),
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            marker={"size": 12, "color": "#ffd966", "symbol": "square"},
            name=t("paused"),
        )
    )
    figure.update_layout(
        title=t("chart.clock"),
        xaxis={
            "range": [_midnight(start), _midnight(end)],
        },
    )
    return html(figure, "chart-clock", height=300)
