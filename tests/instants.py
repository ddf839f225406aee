"""The instant at which the tests' dossiers are received, never the real present.

Every dossier a test files through `tests.driver.submit` is received at the scenario's instant:
its workflow's start is delayed by the gap from the present and the dev server's per-workflow
time skipping fast-forwards it over that gap at once, so the dossier's own clock (and its
lane's, which inherits it) reads the stated instant. Expectations are computed from that
instant with the working-day calendar.

ENGINE_TEST_START_AT names the instant: an ISO datetime in the future, or one of the named
scenarios below, each resolved to its next occurrence in Hanoi time. The default is a working
Monday at 09:00; `make test-instants` runs the clock and lifecycle tests at every scenario.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio.client import (
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)

from domain.calendar import HANOI, OfficialDay, WorkingCalendar, default_calendar

START_AT = "ENGINE_TEST_START_AT"
DEFAULT_SCENARIO = "working-monday-9h"
# Far enough ahead that a scenario never starts before the dossier's real start.
MIN_LEAD = timedelta(hours=2)
LOOKAHEAD = 800  # days: the next Tết is always within this


def _next_day(today: date, matches: Callable[[date], bool]) -> date:
    for offset in range(1, LOOKAHEAD):
        day = today + timedelta(days=offset)
        if matches(day):
            return day
    raise LookupError("no such day within the look-ahead")


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), HANOI)


def _working_monday_9h(today: date, calendar: WorkingCalendar) -> datetime:
    day = _next_day(today, lambda d: d.weekday() == 0 and calendar.is_working_day(d))
    return _at(day, 9)


def _friday_21h(today: date, calendar: WorkingCalendar) -> datetime:
    return _at(_next_day(today, lambda d: d.weekday() == 4), 21)


def _sunday_10h(today: date, calendar: WorkingCalendar) -> datetime:
    return _at(_next_day(today, lambda d: d.weekday() == 6), 10)


def _working_day_16h59(today: date, calendar: WorkingCalendar) -> datetime:
    return _at(_next_day(today, calendar.is_working_day), 16, 59)


def _tet_eve(today: date, calendar: WorkingCalendar) -> datetime:
    """The last working afternoon before the Tết break: the longest run of days off."""

    def starts_tet(day: date) -> bool:
        status = calendar.day_status(day)
        return not status.working and "Lunar New Year" in status.reason

    first_day_off = _next_day(today + timedelta(days=1), starts_tet)
    day = first_day_off - timedelta(days=1)
    while not calendar.is_working_day(day):
        day -= timedelta(days=1)
    return _at(day, 16, 30)


def _makeup_saturday(today: date, calendar: WorkingCalendar) -> datetime:
    day = _next_day(today, lambda d: d.weekday() == 5 and calendar.is_working_day(d))
    return _at(day, 9)


SCENARIOS: dict[str, Callable[[date, WorkingCalendar], datetime]] = {
    "working-monday-9h": _working_monday_9h,
    "friday-21h": _friday_21h,
    "sunday-10h": _sunday_10h,
    "working-day-16h59": _working_day_16h59,
    "tet-eve": _tet_eve,
    "makeup-saturday": _makeup_saturday,
}


def announce_makeup_saturday(calendar: WorkingCalendar, today: date) -> date | None:
    """When the calendar's data holds no make-up Saturday ahead (the Government announces
    them a year at a time), add one six weeks out to this process's calendar, as such an
    announcement would. Returns the day added, if any."""
    try:
        _makeup_saturday(today, calendar)
        return None
    except LookupError:
        pass
    day = _next_day(today + timedelta(days=42), lambda d: d.weekday() == 5)
    entry = OfficialDay(
        date=day,
        reason="make-up working Saturday announced for the test scenario",
        source="tests/instants.py",
    )
    calendar._make_up[day] = entry  # the calendar indexes its data file when built
    return day


def scenario_start(now: datetime, spec: str | None = None) -> datetime:
    """The instant the tests' dossiers are received at; it must lie ahead of `now`."""
    spec = spec or os.environ.get(START_AT) or DEFAULT_SCENARIO
    calendar = default_calendar()
    today = (now + MIN_LEAD).astimezone(HANOI).date()
    if spec == "makeup-saturday":
        announce_makeup_saturday(calendar, today)
    resolve = SCENARIOS.get(spec)
    if resolve is not None:
        return resolve(today, calendar)
    try:
        stated = datetime.fromisoformat(spec)
    except ValueError as err:
        raise ValueError(
            f"{START_AT}: {spec!r} is neither an ISO datetime nor one of {', '.join(SCENARIOS)}"
        ) from err
    if stated.tzinfo is None:
        raise ValueError(f"{START_AT}: {spec!r} needs a UTC offset (+07:00)")
    if stated < now + MIN_LEAD:
        raise ValueError(f"{START_AT}: {spec} is not ahead of the present; time only moves on")
    return stated.astimezone(HANOI)


@dataclass
class Arrival:
    """One dossier to be received at `at`: the start delay the interceptor gave it."""

    at: datetime
    workflow_id: str = ""
    delay: timedelta | None = None


ARRIVAL: ContextVar[Arrival | None] = ContextVar("arrival", default=None)


class ArriveAtScenarioInstant(Interceptor):
    """Delays the start of the dossier workflow being filed under `ARRIVAL` until its instant;
    the driver then fast-forwards it over the delay."""

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _DelayedStart(next)


class _DelayedStart(OutboundInterceptor):
    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        arrival = ARRIVAL.get()
        if arrival is not None and input.workflow == "Dossier" and arrival.delay is None:
            arrival.delay = arrival.at - datetime.now(UTC)
            arrival.workflow_id = input.id
            input.start_delay = arrival.delay
        return await super().start_workflow(input)
