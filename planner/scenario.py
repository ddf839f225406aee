"""The planner's two inputs: a scenario (who arrives where, and how long the work takes) and a
staffing plan (who works where, when), read from JSON files (arrivals also from CSV).

A bad entry stops the load with a message naming the file, the row, the field and the rule:
`surge.json: arrivals[3].count: Input should be greater than or equal to 0`,
`arrivals.csv row 7, ward: unknown unit atlantis`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.calendar import WorkingCalendar
from domain.catalogue import Catalogue
from domain.routing import RoutingError, check_receiving_unit
from schemas.catalogue import DeliveryChannel, UnitKind
from schemas.statuses import Role

ANY = "*"  # a row for every procedure, or every unit, that has no row of its own
MAX_DAYS = 120


class PlanInputError(ValueError):
    """A scenario or staffing file that cannot be used; the message names the field and rule."""


class Step(StrEnum):
    """The officers' steps the plan gives capacity to: the decisions of each lane."""

    CERTIFY = "certify"  # certification lane, by a certifier
    APPRAISE = "appraise"  # processing lane, by a specialist
    APPROVE = "approve"  # processing lane, by a leader (approve or refuse)


STEP_ROLE: dict[Step, Role] = {
    Step.CERTIFY: Role.CERTIFIER,
    Step.APPRAISE: Role.SPECIALIST,
    Step.APPROVE: Role.LEADER,
}
PLANNED_ROLES = (Role.CERTIFIER, Role.SPECIALIST, Role.LEADER)


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- the scenario -------------------------------------------------------------------------------
class ArrivalRow(_Row):
    """Dossiers filed at one ward on one day for one procedure through one channel."""

    date: date
    ward: str = Field(min_length=1)
    procedure: str = Field(min_length=1)
    channel: DeliveryChannel = DeliveryChannel.COUNTER
    count: int = Field(ge=0, le=100_000)


class ServiceRow(_Row):
    """An officer's working minutes on one step of one procedure (`*`: every procedure without
    a row of its own); drawn from a lognormal with this mean and coefficient of variation."""

    procedure: str = Field(min_length=1)
    step: Step
    minutes: float = Field(gt=0, le=8 * 60 * 20)
    cv: float = Field(default=0.5, ge=0, le=3)


class RatesRow(_Row):
    """How often the specialist asks for a supplement, how often the decision is a refusal, and
    how many working hours the citizen takes to bring the supplement."""

    procedure: str = Field(min_length=1)
    supplement: float = Field(default=0.0, ge=0, le=1)
    refusal: float = Field(default=0.0, ge=0, le=1)
    supplement_return_hours: float = Field(default=16.0, gt=0, le=8 * 60)


class Window(_Row):
    """A past period of the read model, [from, to) in Hanoi days."""

    from_: date = Field(alias="from")
    to: date
    scale: float = Field(default=1.0, gt=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.to <= self.from_:
            raise ValueError(f"to: {self.to} must come after from ({self.from_})")
        return self


class Scenario(_Row):
    name: str = Field(min_length=1)
    start: date
    days: int = Field(ge=1, le=MAX_DAYS)
    seed: int = 2025
    arrivals: tuple[ArrivalRow, ...] = ()
    # Arrival rows in a CSV file beside the scenario (columns date,ward,procedure,channel,count).
    arrivals_csv: str | None = None
    # Arrivals taken from the read model: each day of the window laid on the scenario's days
    # in order, every count multiplied by `scale` ("the first 15 days of July 2025, x1.3").
    history: Window | None = None
    # Service times and rates measured from the read model over this window; the scenario's
    # own `service` and `rates` rows take precedence.
    measured: Window | None = None
    service: tuple[ServiceRow, ...] = ()
    rates: tuple[RatesRow, ...] = ()

    @property
    def days_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    @property
    def end(self) -> date:
        """The first day after the scenario."""
        return self.start + timedelta(days=self.days)

    def service_for(self, procedure: str, step: Step) -> ServiceRow | None:
        return _most_specific(self.service, procedure, lambda r: r.step is step)

    def rates_for(self, procedure: str) -> RatesRow | None:
        return _most_specific(self.rates, procedure, lambda r: True)


_R = TypeVar("_R", ServiceRow, RatesRow)


def _most_specific(rows: Iterable[_R], procedure: str, keep: Callable[[_R], bool]) -> _R | None:
    own = [r for r in rows if r.procedure == procedure and keep(r)]
    if own:
        return own[-1]
    every = [r for r in rows if r.procedure == ANY and keep(r)]
    return every[-1] if every else None


# --- the staffing plan ------------------------------------------------------------------------
Hours = tuple[tuple[time, time], ...]


def _check_hours(hours: Hours | None) -> None:
    if hours is None:
        return
    previous: time | None = None
    for i, (opens, closes) in enumerate(hours):
        if opens >= closes:
            raise ValueError(f"hours[{i}]: opens at {opens} but closes at {closes}")
        if previous is not None and opens < previous:
            raise ValueError(f"hours[{i}]: opens at {opens}, before the previous period closes")
        previous = closes


class StaffRow(_Row):
    """Officers of one role at one unit (`*`: every unit without a row of its own) on each
    working day, or on the working days from `from` to `to` (inclusive)."""

    unit: str = Field(min_length=1)
    role: Role
    officers: int = Field(ge=0, le=500)
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None
    hours: Hours | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _check(self) -> StaffRow:
        if self.role not in PLANNED_ROLES:
            raise ValueError(f"role: {self.role} has no step the plan gives capacity to")
        if self.from_ and self.to and self.to < self.from_:
            raise ValueError(f"to: {self.to} is before from ({self.from_})")
        _check_hours(self.hours)
        return self

    def covers(self, day: date) -> bool:
        return (self.from_ is None or self.from_ <= day) and (self.to is None or day <= self.to)


class SaturdaySession(_Row):
    """Extra opening on days off (a Saturday session): the units' officers of these roles work
    these hours. Deadlines do not move: the legal calendar still counts it as a day off."""

    units: tuple[str, ...] = Field(min_length=1)
    roles: tuple[Role, ...] = Field(min_length=1)
    dates: tuple[date, ...] = Field(min_length=1)
    hours: Hours = ((time(8), time(11, 30)),)
    officers: int | None = Field(default=None, ge=1, le=500)

    @model_validator(mode="after")
    def _check(self) -> SaturdaySession:
        _check_hours(self.hours)
        return self


class Move(_Row):
    """Officers of one role lent by one unit to another on the working days from `from` to
    `to` (inclusive)."""

    role: Role
    officers: int = Field(ge=1, le=500)
    from_unit: str
    to_unit: str
    from_: date = Field(alias="from")
    to: date

    @model_validator(mode="after")
    def _check(self) -> Move:
        if self.to < self.from_:
            raise ValueError(f"to: {self.to} is before from ({self.from_})")
        if self.from_unit == self.to_unit:
            raise ValueError(f"to_unit: the officers already work at {self.from_unit}")
        return self


class Staffing(_Row):
    name: str = Field(min_length=1)
    staff: tuple[StaffRow, ...] = Field(min_length=1)
    # Groups of neighbouring wards whose certifiers serve one queue together: a citizen sent on
    # to a neighbour is certified there (Decree 23/2015 art. 5: any commune certifies).
    shared_certification: tuple[tuple[str, ...], ...] = ()
    saturday_sessions: tuple[SaturdaySession, ...] = ()
    moves: tuple[Move, ...] = ()

    def officers_on(
        self, unit: str, role: Role, day: date, *, with_moves: bool = True
    ) -> tuple[int, Hours | None]:
        """The unit's officers of a role on a working day, and their hours (None: the
        calendar's): the unit's own row over `*`, a dated row over an undated one, the last
        row over an earlier one; then the moves of that day."""
        best: StaffRow | None = None
        best_rank = -1
        for row in self.staff:
            if row.role is not role or not row.covers(day) or row.unit not in (unit, ANY):
                continue
            rank = (2 if row.unit == unit else 0) + (1 if row.from_ or row.to else 0)
            if rank >= best_rank:
                best, best_rank = row, rank
        count = best.officers if best else 0
        for move in self.moves if with_moves else ():
            if move.role is role and move.from_ <= day <= move.to:
                if move.from_unit == unit:
                    count -= move.officers
                if move.to_unit == unit:
                    count += move.officers
        return max(count, 0), best.hours if best else None

    def certification_group(self, ward: str) -> tuple[str, ...]:
        for group in self.shared_certification:
            if ward in group:
                return group
        return (ward,)


# --- loading --------------------------------------------------------------------------------
def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = "from" if part == "from_" else part
            text += f".{name}" if text else name
    return text


def _describe(exc: ValidationError) -> str:
    """Every error, but not a list's own complaint when it comes from a bad entry in it."""
    errors = exc.errors()
    locations = [tuple(e["loc"]) for e in errors]
    parts = []
    for error, loc in zip(errors, locations, strict=True):
        if any(other != loc and other[: len(loc)] == loc for other in locations):
            continue
        where = _location([p for p in error["loc"] if isinstance(p, int | str)])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlanInputError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise PlanInputError(
            f"{path.name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], raw: Any, label: str) -> _M:
    if not isinstance(raw, dict):
        raise PlanInputError(f"{label}: expected a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise PlanInputError(f"{label}: {_describe(exc)}") from exc


CSV_COLUMNS = ("date", "ward", "procedure", "channel", "count")


def read_arrivals_csv(path: Path) -> list[ArrivalRow]:
    """Rows of date,ward,procedure,channel,count; row numbers count the header as row 1."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise PlanInputError(f"{path.name} row 1: missing column {', '.join(missing)}")
            rows: list[ArrivalRow] = []
            for number, raw in enumerate(reader, start=2):
                values = {k: (v or "").strip() for k, v in raw.items() if k in CSV_COLUMNS}
                if not values.get("channel"):
                    values.pop("channel", None)
                try:
                    rows.append(ArrivalRow.model_validate(values))
                except ValidationError as exc:
                    raise PlanInputError(f"{path.name} row {number}, {_describe(exc)}") from exc
            return rows
    except OSError as exc:
        raise PlanInputError(f"{path}: cannot read: {exc.strerror}") from exc


def load_scenario(path: Path, catalogue: Catalogue) -> tuple[Scenario, list[ArrivalRow]]:
    """The scenario and its arrival rows (its own, then the CSV's), each row checked against
    the catalogue and the scenario's days. Arrivals from the read model are added later
    (planner.measure), as they need the database."""
    scenario = _validate(Scenario, _read_json(path), path.name)
    checks = _ArrivalChecks(scenario, catalogue)
    for i, row in enumerate(scenario.arrivals):
        checks.check(row, f"{path.name}: arrivals[{i}]", ".")
    rows = list(scenario.arrivals)
    if scenario.arrivals_csv:
        csv_path = (path.parent / scenario.arrivals_csv).resolve()
        extra = read_arrivals_csv(csv_path)
        for number, row in enumerate(extra, start=2):
            checks.check(row, f"{csv_path.name} row {number}", ", ")
        rows.extend(extra)
    for i, service in enumerate(scenario.service):
        _check_procedure(catalogue, service.procedure, f"{path.name}: service[{i}].procedure")
    for i, rates in enumerate(scenario.rates):
        _check_procedure(catalogue, rates.procedure, f"{path.name}: rates[{i}].procedure")
    if not rows and scenario.history is None:
        raise PlanInputError(f"{path.name}: arrivals: none given, and no history to take them from")
    return scenario, rows


class _ArrivalChecks:
    def __init__(self, scenario: Scenario, catalogue: Catalogue) -> None:
        self.scenario = scenario
        self.catalogue = catalogue

    def check(self, row: ArrivalRow, where: str, sep: str) -> None:
        unit = self.catalogue.units.get(row.ward)
        if unit is None:
            raise PlanInputError(f"{where}{sep}ward: unknown unit {row.ward}")
        if unit.kind is UnitKind.CITY_DEPARTMENT:
            # The same rule as routing's: dossiers are received at ward and commune counters.
            raise PlanInputError(
                f"{where}{sep}ward: {row.ward} is a city department; dossiers are received at "
                "ward and commune counters"
            )
        if row.procedure not in self.catalogue.procedures:
            raise PlanInputError(f"{where}{sep}procedure: unknown procedure {row.procedure}")
        try:
            check_receiving_unit(self.catalogue.procedures[row.procedure], unit)
        except RoutingError as err:
            raise PlanInputError(f"{where}{sep}ward: {err.rule}") from err
        if not self.scenario.start <= row.date < self.scenario.end:
            raise PlanInputError(
                f"{where}{sep}date: {row.date} is outside the scenario "
                f"({self.scenario.start} to {self.scenario.end - timedelta(days=1)})"
            )


def _check_procedure(catalogue: Catalogue, code: str, where: str) -> None:
    if code != ANY and code not in catalogue.procedures:
        raise PlanInputError(f"{where}: unknown procedure {code}")


def load_staffing(path: Path, catalogue: Catalogue, calendar: WorkingCalendar) -> Staffing:
    staffing = _validate(Staffing, _read_json(path), path.name)
    check_staffing(staffing, catalogue.units, calendar, path.name)
    return staffing


def check_staffing(
    staffing: Staffing, units: Mapping[str, Any], calendar: WorkingCalendar, label: str
) -> None:
    def unit_known(code: str, where: str, *, any_ok: bool = False) -> None:
        if (code != ANY or not any_ok) and code not in units:
            raise PlanInputError(f"{label}: {where}: unknown unit {code}")

    for i, row in enumerate(staffing.staff):
        unit_known(row.unit, f"staff[{i}].unit", any_ok=True)
    seen: dict[str, int] = {}
    for g, group in enumerate(staffing.shared_certification):
        if len(group) < 2:
            raise PlanInputError(
                f"{label}: shared_certification[{g}]: a shared queue needs at least two wards"
            )
        for w, ward in enumerate(group):
            where = f"shared_certification[{g}][{w}]"
            unit_known(ward, where)
            if units[ward].kind is UnitKind.CITY_DEPARTMENT:
                raise PlanInputError(
                    f"{label}: {where}: {ward} is a city department; certification is done by "
                    "wards and communes"
                )
            if ward in seen:
                raise PlanInputError(
                    f"{label}: {where}: {ward} is already in shared_certification[{seen[ward]}]"
                )
            seen[ward] = g
    for s, session in enumerate(staffing.saturday_sessions):
        for u, unit in enumerate(session.units):
            unit_known(unit, f"saturday_sessions[{s}].units[{u}]")
        for r, role in enumerate(session.roles):
            if role not in PLANNED_ROLES:
                raise PlanInputError(
                    f"{label}: saturday_sessions[{s}].roles[{r}]: {role} has no step the plan "
                    "gives capacity to"
                )
        for d, day in enumerate(session.dates):
            if calendar.is_working_day(day):
                raise PlanInputError(
                    f"{label}: saturday_sessions[{s}].dates[{d}]: {day} is a working day already"
                )
    for m, move in enumerate(staffing.moves):
        unit_known(move.from_unit, f"moves[{m}].from_unit")
        unit_known(move.to_unit, f"moves[{m}].to_unit")
        day = move.from_
        while day <= move.to:
            if calendar.is_working_day(day):
                has, _ = staffing.officers_on(move.from_unit, move.role, day, with_moves=False)
                if has < move.officers:
                    raise PlanInputError(
                        f"{label}: moves[{m}].officers: {move.from_unit} has {has} "
                        f"{move.role.value}(s) on {day}, cannot lend {move.officers}"
                    )
            day += timedelta(days=1)
