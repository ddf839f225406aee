"""Service times, supplement and refusal rates, and arrivals, from the read model; and the
parameters the simulation runs on: the scenario's own rows over what was measured.

A step's service time is the officer's working time on it: from the claim to the step when
the officer claimed the task, else from the moment it was awaited (then it includes the
wait in the inbox, and over-states the work). Times are working time (domain.calendar), so
a night between claim and step does not count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, time, timedelta

from pydantic import BaseModel, ConfigDict

from domain.calendar import HANOI, WorkingCalendar
from domain.catalogue import Catalogue
from planner.scenario import (
    ArrivalRow,
    PlanInputError,
    RatesRow,
    Scenario,
    ServiceRow,
    Step,
    Window,
)
from store import kpis

# The read model's task names (store.projection.task_rows) for each planned step.
TASK_STEPS: dict[str, Step] = {
    "certify/refuse": Step.CERTIFY,
    "appraise/request_supplement": Step.APPRAISE,
    "approve/refuse": Step.APPROVE,
}
SUPPLEMENT_TASK = "provide_supplement"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ServiceTime(_Model):
    minutes: float
    cv: float
    source: str  # "scenario", or "measured (n tasks)"


class ProcedureParameters(_Model):
    procedure: str
    service: dict[Step, ServiceTime]
    supplement: float
    refusal: float
    supplement_return_hours: float
    source: str


class Measured(_Model):
    """What the read model says of a window, per procedure."""

    service: dict[str, dict[Step, ServiceTime]] = {}
    rates: dict[str, RatesRow] = {}


def _bounds(window: Window) -> tuple[datetime, datetime]:
    return (
        datetime.combine(window.from_, time(0), HANOI),
        datetime.combine(window.to, time(0), HANOI),
    )


def summarise(
    steps: list[kpis.StepTimeRow],
    outcomes: list[kpis.ProcedureOutcomeRow],
    calendar: WorkingCalendar,
) -> Measured:
    """Mean and spread of each step's working minutes, and each procedure's rates."""
    samples: dict[tuple[str, Step], list[float]] = defaultdict(list)
    returns: dict[str, list[float]] = defaultdict(list)
    for row in steps:
        begun = row.claimed_at or row.since
        minutes = calendar.working_seconds_between(begun, row.done_at) / 60
        step = TASK_STEPS.get(row.action)
        if step is not None:
            samples[(row.procedure_code, step)].append(minutes)
        elif row.action == SUPPLEMENT_TASK:
            returns[row.procedure_code].append(minutes / 60)
    service: dict[str, dict[Step, ServiceTime]] = defaultdict(dict)
    for (procedure, step), values in samples.items():
        mean = sum(values) / len(values)
        if mean <= 0:
            continue  # acted on in the same instant: nothing to learn a work time from
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        service[procedure][step] = ServiceTime(
            minutes=round(mean, 2),
            cv=round(min(spread / mean, 3.0), 3),
            source=f"measured ({len(values)} tasks)",
        )
    rates: dict[str, RatesRow] = {}
    for outcome in outcomes:
        if outcome.decided == 0:
            continue
        back = returns.get(outcome.procedure_code)
        rates[outcome.procedure_code] = RatesRow(
            procedure=outcome.procedure_code,
            supplement=round(outcome.supplemented / outcome.decided, 4),
            refusal=round(outcome.refused / outcome.decided, 4),
            supplement_return_hours=round(sum(back) / len(back), 2) if back else 16.0,
        )
    return Measured(service=dict(service), rates=rates)


async def measure(database_url: str, window: Window, calendar: WorkingCalendar) -> Measured:
    """Service times and rates of the dossiers received in the window."""
    from store.db import engine_for

    start, end = _bounds(window)
    async with engine_for(database_url).connect() as conn:
        steps = await kpis.step_times(conn, received_from=start, received_to=end)
        outcomes = await kpis.procedure_outcomes(conn, received_from=start, received_to=end)
    return summarise(steps, outcomes, calendar)


async def past_arrivals(database_url: str, scenario: Scenario) -> list[ArrivalRow]:
    """The history window's arrivals laid on the scenario's days, day by day in order, each
    count scaled and rounded; days of the window past the scenario's last day are left out."""
    from store.db import engine_for

    window = scenario.history
    assert window is not None
    start, end = _bounds(window)
    async with engine_for(database_url).connect() as conn:
        rows = await kpis.arrivals_by_day(conn, received_from=start, received_to=end)
    return scale_arrivals(rows, window, scenario)


def scale_arrivals(
    rows: list[kpis.ArrivalDayRow], window: Window, scenario: Scenario
) -> list[ArrivalRow]:
    arrivals = []
    for row in rows:
        day = scenario.start + timedelta(days=(row.day - window.from_).days)
        count = round(row.count * window.scale)
        if day >= scenario.end or count == 0:
            continue
        arrivals.append(
            ArrivalRow(date=day, ward=row.receiving_unit, procedure=row.procedure_code, count=count)
        )
    return arrivals


def resolve(
    scenario: Scenario, measured: Measured, catalogue: Catalogue, procedures: set[str]
) -> dict[str, ProcedureParameters]:
    """Each procedure's parameters: the scenario's row for it, else what was measured, else
    the scenario's `*` row. A step with none of them stops the plan, naming it."""
    resolved: dict[str, ProcedureParameters] = {}
    for code in sorted(procedures):
        procedure = catalogue.procedure(code)
        steps = [Step.CERTIFY] if procedure.certification else [Step.APPRAISE, Step.APPROVE]
        service: dict[Step, ServiceTime] = {}
        for step in steps:
            service[step] = _service(scenario, measured, code, step)
        rates, source = _rates(scenario, measured, code)
        resolved[code] = ProcedureParameters(
            procedure=code,
            service=service,
            # Certification has no supplement round: the certifier certifies or refuses.
            supplement=0.0 if procedure.certification else rates.supplement,
            refusal=rates.refusal,
            supplement_return_hours=rates.supplement_return_hours,
            source=source,
        )
    return resolved


def _service(scenario: Scenario, measured: Measured, code: str, step: Step) -> ServiceTime:
    own = [r for r in scenario.service if r.procedure == code and r.step is step]
    if own:
        return _stated(own[-1])
    found = measured.service.get(code, {}).get(step)
    if found is not None:
        return found
    row = scenario.service_for(code, step)
    if row is not None:
        return _stated(row)
    raise PlanInputError(
        f"service: no service time for procedure {code}, step {step.value}: give a row "
        f'(procedure "{code}" or "*") or a measured window whose history has that step'
    )


def _stated(row: ServiceRow) -> ServiceTime:
    return ServiceTime(minutes=row.minutes, cv=row.cv, source="scenario")


def _rates(scenario: Scenario, measured: Measured, code: str) -> tuple[RatesRow, str]:
    own = [r for r in scenario.rates if r.procedure == code]
    if own:
        return own[-1], "scenario"
    found = measured.rates.get(code)
    if found is not None:
        return found, "measured"
    row = scenario.rates_for(code)
    if row is not None:
        return row, "scenario"
    return RatesRow(procedure=code), "none stated: no supplements, no refusals"
