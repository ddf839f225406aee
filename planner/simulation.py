"""The surge as a discrete-event simulation (SimPy) on the engine's own rules.

Each dossier is a process: it is filed at its ward at its minute, routed to its competent
unit and lane (domain.routing), given its appointment (the engine's clock), and waits at each
desk (a unit's officers of one role, or the certifiers of wards that share certification) in
the order an inbox shows it, the earliest appointment first. An officer works only in the
desk's hours; a step's work is drawn from its service time. A supplement request stops the
legal clock until the citizen is back, then the procedure's supplement rule sets the new
appointment. The clock's marks are kept as the engine keeps them: one apology slip with a new
appointment when the dossier is not decided by the apology mark, overdue when the appointment
passes with the dossier open; on time means decided by the appointment with no apology slip.

Time runs in minutes from midnight (Hanoi) of the scenario's first day.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import simpy
from simpy.resources.resource import PriorityRequest

from domain import lanes
from domain.calendar import HANOI, WorkingCalendar
from domain.catalogue import Catalogue
from planner import rules
from planner.measure import ProcedureParameters
from planner.scenario import STEP_ROLE, ArrivalRow, Hours, Scenario, Staffing, Step
from schemas.catalogue import DeliveryChannel, Procedure
from schemas.statuses import Role

DAY = 24 * 60
# Dossiers wait by appointment; an officer's absence goes before any of them.
ABSENT = -1


def _minutes(hours: time) -> int:
    return hours.hour * 60 + hours.minute


# --- desks: officers of one role, and when they work ------------------------------------------
@dataclass
class Desk:
    """One queue of work: a unit's officers of a role (or a shared certification pool)."""

    name: str
    role: Role
    # (start, end, officers) in minutes, sorted, officers > 0
    segments: list[tuple[int, int, int]]
    resource: simpy.PriorityResource = field(init=False)
    periods: list[tuple[int, int]] = field(init=False)  # contiguous working time
    ends: list[int] = field(init=False)
    busy: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    capacity: int = field(init=False)

    def open(self, env: simpy.Environment, horizon: int) -> None:
        self.capacity = max((n for _, _, n in self.segments), default=0)
        self.resource = simpy.PriorityResource(env, capacity=max(self.capacity, 1))
        periods: list[tuple[int, int]] = []
        for start, end, _ in self.segments:
            if periods and periods[-1][1] == start:
                periods[-1] = (periods[-1][0], end)
            else:
                periods.append((start, end))
        self.periods = periods
        self.ends = [end for _, end in periods]
        for start, end, officers in self.segments:
            if officers < self.capacity:
                env.process(self._absent(env, start, end, self.capacity - officers))
        # Out of hours nobody is at the desk: a dossier filed at night waits for the morning
        # with the others, and the officer then takes the earliest appointment, as the inbox
        # shows it, not the first dossier that came in.
        closed_from = 0
        for start, end in [*periods, (horizon, horizon)]:
            if closed_from < start:
                env.process(
                    self._absent(env, closed_from, min(start, horizon), max(self.capacity, 1))
                )
            closed_from = max(closed_from, end)

    def _absent(
        self, env: simpy.Environment, start: int, end: int, count: int
    ) -> Generator[simpy.Event, object, None]:
        """Officers not at the desk in this stretch hold their places in the queue."""
        yield env.timeout(start - env.now)
        for _ in range(count):
            env.process(self._away(env, end))

    def _away(self, env: simpy.Environment, end: int) -> Generator[simpy.Event, object, None]:
        """One officer's place, from the moment it is free (an officer at work when the
        stretch begins finishes the dossier in hand first) to the stretch's end; each place
        on its own, so a colleague still at work does not keep a free one idle past it."""
        request = self.resource.request(priority=ABSENT)
        yield request
        if env.now < end:
            yield env.timeout(end - env.now)
        self.resource.release(request)

    def finish(self, begin: float, work: float) -> float | None:
        """When `work` minutes started at `begin` are done, working only in the desk's hours
        (None: not within the scenario). Books the busy minutes on their days."""
        i = bisect_right(self.ends, begin)
        if i >= len(self.periods):
            return None
        moment = max(begin, self.periods[i][0])
        while True:
            start, end = self.periods[i]
            moment = max(moment, start)
            available = end - moment
            if work <= available:
                self._book(moment, moment + work)
                return moment + work
            self._book(moment, end)
            work -= available
            i += 1
            if i >= len(self.periods):
                return None

    def _book(self, start: float, end: float) -> None:
        day = int(start // DAY)
        while end > start:
            cut = min(end, (day + 1) * DAY)
            self.busy[day] += cut - start
            start, day = cut, day + 1

    def available(self) -> dict[int, float]:
        minutes: dict[int, float] = defaultdict(float)
        for start, end, officers in self.segments:
            minutes[start // DAY] += (end - start) * officers
        return minutes


def build_desks(
    staffing: Staffing,
    scenario: Scenario,
    calendar: WorkingCalendar,
    needed: set[tuple[str, Role]],
) -> dict[tuple[str, Role], Desk]:
    """A desk for each (unit or shared pool, role) some dossier needs."""
    default_hours: Hours = calendar.official.working_hours
    desks: dict[tuple[str, Role], Desk] = {}
    for name, role in sorted(needed):
        members = name.split("+")
        pieces: list[tuple[int, int, int]] = []
        for offset, day in enumerate(scenario.days_list):
            base = offset * DAY
            for unit in members:
                if calendar.is_working_day(day):
                    officers, hours = staffing.officers_on(unit, role, day)
                    if officers > 0:
                        for opens, closes in hours or default_hours:
                            pieces.append(
                                (base + _minutes(opens), base + _minutes(closes), officers)
                            )
                for session in staffing.saturday_sessions:
                    if unit in session.units and role in session.roles and day in session.dates:
                        officers = session.officers or staffing.officers_on(unit, role, day)[0]
                        for opens, closes in session.hours:
                            pieces.append(
                                (base + _minutes(opens), base + _minutes(closes), officers)
                            )
        desks[(name, role)] = Desk(name=name, role=role, segments=_sum_pieces(pieces))
    return desks


def _stretch(base: int, opens: time, closes: time, officers: int) -> tuple[int, int, int]:
    return (base + _minutes(opens), base + _minutes(closes), officers)


def _sum_pieces(pieces: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Overlapping stretches of officers added up, as contiguous segments with officers > 0."""
    changes: dict[int, int] = defaultdict(int)
    for start, end, officers in pieces:
        changes[start] += officers
        changes[end] -= officers
    segments: list[tuple[int, int, int]] = []
    level = 0
    instants = sorted(changes)
    for at, following in itertools.pairwise(instants):
        level += changes[at]
        if level > 0:
            segments.append((at, following, level))
    return segments


# --- dossiers ---------------------------------------------------------------------------------
class Dossier:
    __slots__ = (
        "apologized",
        "apology_minute",
        "channel",
        "decided_minute",
        "desks",
        "due",
        "origin",
        "overdue",
        "overdue_minute",
        "procedure",
        "received",
        "received_minute",
        "refused",
        "running_from",
        "supplemented",
        "ward",
    )

    def __init__(
        self,
        ward: str,
        procedure: Procedure,
        channel: DeliveryChannel,
        received_minute: int,
        origin: datetime,
        desks: list[tuple[Step, Desk]],
    ) -> None:
        self.origin = origin
        self.ward = ward
        self.procedure = procedure
        self.channel = channel
        self.received_minute = received_minute
        self.received = origin + timedelta(minutes=received_minute)
        self.running_from: float = received_minute  # the legal clock runs since
        self.desks = desks
        self.due = rules.due_at(self.received, procedure.deadline)
        self.apologized = False
        self.apology_minute: float | None = None
        self.overdue = False
        self.overdue_minute: float | None = None
        self.decided_minute: float | None = None
        self.refused = False
        self.supplemented = False

    @property
    def on_time(self) -> bool | None:
        """The engine's measure: decided by the appointment, and no apology slip."""
        if self.decided_minute is None:
            return None
        return not self.apologized and self.decided_minute <= self.due_minute

    @property
    def due_minute(self) -> float:
        return self.minute_of(self.due)

    def minute_of(self, moment: datetime) -> float:
        return (moment - self.origin).total_seconds() / 60

    def at(self, minute: float) -> datetime:
        return self.origin + timedelta(minutes=minute)


def keep_marks(dossier: Dossier, running_from: float, running_to: float) -> None:
    """The clock's marks while it ran from `running_from` to `running_to` (the decision, the
    supplement request or the end of the scenario), as the lane's watch keeps them: the apology
    slip when the dossier is still open at the apology mark, then overdue at the appointment."""
    deadline = dossier.procedure.deadline
    if not dossier.apologized:
        mark = dossier.minute_of(rules.apology_at(dossier.received, dossier.due, deadline))
        mark = max(mark, running_from)
        if mark < running_to:
            dossier.apologized = True
            dossier.apology_minute = mark
            dossier.due = rules.apology_appointment(dossier.due, deadline)
    if not dossier.overdue:
        mark = max(dossier.due_minute, running_from)
        if mark < running_to:
            dossier.overdue = True
            dossier.overdue_minute = mark


@dataclass
class Outcome:
    dossiers: list[Dossier]
    desks: dict[tuple[str, Role], Desk]
    horizon: int


class Model:
    def __init__(
        self,
        scenario: Scenario,
        staffing: Staffing,
        arrivals: list[ArrivalRow],
        parameters: dict[str, ProcedureParameters],
        catalogue: Catalogue,
        calendar: WorkingCalendar,
        seed: int | None = None,
    ) -> None:
        self.scenario = scenario
        self.staffing = staffing
        self.arrivals = arrivals
        self.parameters = parameters
        self.catalogue = catalogue
        self.calendar = calendar
        self.random = random.Random(scenario.seed if seed is None else seed)
        self.env = simpy.Environment()
        self.horizon = scenario.days * DAY
        self.origin = datetime.combine(scenario.start, time(0), HANOI)

    def _desk_names(self, procedure: Procedure, ward: str) -> list[tuple[Step, str, Role]]:
        route = rules.routed(self.catalogue, procedure.code, ward)
        if route.lane == lanes.CERTIFICATION:
            pool = "+".join(self.staffing.certification_group(route.competent_unit))
            return [(Step.CERTIFY, pool, Role.CERTIFIER)]
        unit = route.competent_unit
        return [(step, unit, STEP_ROLE[step]) for step in (Step.APPRAISE, Step.APPROVE)]

    def _arrival_minutes(self, row: ArrivalRow) -> list[int]:
        """Counter dossiers arrive in the counter's hours; online and post ones at any hour."""
        base = (row.date - self.scenario.start).days * DAY
        if row.channel is DeliveryChannel.COUNTER:
            hours = [
                (_minutes(opens), _minutes(closes))
                for opens, closes in self.calendar.official.working_hours
            ]
        else:
            hours = [(0, DAY)]
        total = sum(end - start for start, end in hours)
        minutes = []
        for _ in range(row.count):
            offset = self.random.random() * total
            for start, end in hours:
                if offset < end - start:
                    minutes.append(base + start + int(offset))
                    break
                offset -= end - start
        return minutes

    def run(self) -> Outcome:
        plans: list[tuple[ArrivalRow, Procedure, list[tuple[Step, str, Role]]]] = []
        needed: set[tuple[str, Role]] = set()
        for row in self.arrivals:
            procedure = self.catalogue.procedure(row.procedure)
            names = self._desk_names(procedure, row.ward)
            needed.update((name, role) for _, name, role in names)
            plans.append((row, procedure, names))
        desks = build_desks(self.staffing, self.scenario, self.calendar, needed)
        for desk in desks.values():
            desk.open(self.env, self.horizon)
        dossiers: list[Dossier] = []
        for row, procedure, names in plans:
            steps = [(step, desks[(name, role)]) for step, name, role in names]
            for minute in self._arrival_minutes(row):
                dossier = Dossier(row.ward, procedure, row.channel, minute, self.origin, steps)
                dossiers.append(dossier)
        dossiers.sort(key=lambda d: d.received_minute)
        self.env.process(self._file_all(dossiers))
        self.env.run(until=self.horizon)
        for dossier in dossiers:
            if dossier.decided_minute is None and dossier.running_from < self.horizon:
                keep_marks(dossier, dossier.running_from, self.horizon)
        return Outcome(dossiers=dossiers, desks=desks, horizon=self.horizon)

    def _file_all(self, dossiers: list[Dossier]) -> Generator[simpy.Event, object, None]:
        for dossier in dossiers:
            if dossier.received_minute > self.env.now:
                yield self.env.timeout(dossier.received_minute - self.env.now)
            self.env.process(self._dossier(dossier))

    def _serve(
        self, dossier: Dossier, step: Step, desk: Desk
    ) -> Generator[simpy.Event, object, bool]:
        """Wait at the desk by appointment, then the officer's work in the desk's hours.
        False when the work is not done within the scenario."""
        env = self.env
        request: PriorityRequest = desk.resource.request(priority=int(dossier.due_minute))
        yield request
        service = self.parameters[dossier.procedure.code].service[step]
        done = desk.finish(env.now, self._draw(service.minutes, service.cv))
        if done is None:
            # Still at the desk when the scenario ends: the officer is taken until then.
            yield env.timeout(self.horizon - env.now)
            return False
        yield env.timeout(done - env.now)
        desk.resource.release(request)
        return True

    def _draw(self, mean: float, cv: float) -> float:
        if cv <= 0:
            return mean
        sigma2 = math.log(1 + cv * cv)
        return self.random.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))

    def _dossier(self, dossier: Dossier) -> Generator[simpy.Event, object, None]:
        env = self.env
        parameters = self.parameters[dossier.procedure.code]
        first_step, first_desk = dossier.desks[0]
        if not (yield from self._serve(dossier, first_step, first_desk)):
            return
        if first_step is Step.APPRAISE and self.random.random() < parameters.supplement:
            # The specialist asks for a supplement: the clock stops until the citizen is back
            # (Decree 61/2018 art. 19(4)), then the procedure's rule sets the appointment.
            stopped = env.now
            keep_marks(dossier, dossier.running_from, stopped)
            dossier.supplemented = True
            back = self.calendar.add_working_seconds(
                dossier.at(stopped), int(parameters.supplement_return_hours * 3600)
            )
            back_minute = dossier.minute_of(back)
            dossier.running_from = math.inf  # the clock waits for the citizen
            if back_minute >= self.horizon:
                return
            yield env.timeout(back_minute - env.now)
            dossier.due = rules.resumed_due(
                dossier.procedure, dossier.due, dossier.at(stopped), back
            )
            dossier.overdue = False
            dossier.running_from = back_minute
            if not (yield from self._serve(dossier, first_step, first_desk)):
                return
        for step, desk in dossier.desks[1:]:
            if not (yield from self._serve(dossier, step, desk)):
                return
        dossier.refused = self.random.random() < parameters.refusal
        dossier.decided_minute = env.now
        keep_marks(dossier, dossier.running_from, env.now)


def simulate(
    scenario: Scenario,
    staffing: Staffing,
    arrivals: list[ArrivalRow],
    parameters: dict[str, ProcedureParameters],
    catalogue: Catalogue,
    calendar: WorkingCalendar,
    seed: int | None = None,
) -> Outcome:
    return Model(scenario, staffing, arrivals, parameters, catalogue, calendar, seed).run()


def day_of(minute: float) -> int:
    return int(minute // DAY)


def date_of(scenario: Scenario, index: int) -> date:
    return scenario.start + timedelta(days=index)
