"""The legal working-day calendar: Hanoi's working days and hours, and deadlines counted in them.

A working day is Monday to Friday, except the statutory holidays (Labour Code 2019 art. 112,
computed by the `holidays` package for VN) and the extra days off the Government decides each
year; a make-up Saturday it decides is a working day. Those yearly decisions live in
``domain/data/official_days.json``. Times are Asia/Ho_Chi_Minh (UTC+7, no DST); every public
function takes and returns timezone-aware datetimes.

Pure apart from reading that file and importing `holidays`, both done once, lazily, by
``default_calendar()``; importing this module does neither.

CLI::

    python -m domain.calendar due --working-days 3 --received 2026-02-13T15:30+07:00
    python -m domain.calendar is-working-day 2026-08-22
    python -m domain.calendar apology-by --due 2026-11-30T17:00+07:00
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, assert_never
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.catalogue import Deadline, SameDayDeadline, WorkingDaysDeadline

DATA_FILE = Path(__file__).resolve().parent / "data" / "official_days.json"
# Every time the engine shows or counts in: the appointment, the working day, the receipt day.
HANOI = ZoneInfo("Asia/Ho_Chi_Minh")

_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
# No real calendar has a year without a working day; past this, the data is broken.
_MAX_DAYS_WITHOUT_WORK = 366
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CalendarDataError(ValueError):
    """The official-days file is malformed; the message names the entry and the field."""


# --- the data file -------------------------------------------------------------------------


class OfficialDay(BaseModel):
    """One dated Government decision: a day off, a make-up working day, or a non-day-off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    date: date
    reason: str = Field(min_length=3)
    source: str = Field(min_length=3, description="The decision or notice it comes from")


class OfficialDays(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    notes: tuple[str, ...] = ()
    working_hours: tuple[tuple[time, time], ...] = Field(min_length=1)
    # Extra days off on top of the `holidays` package (swapped days, extra Tết days).
    days_off: tuple[OfficialDay, ...] = ()
    # Make-up Saturdays (or Sundays) that are working days.
    working_days: tuple[OfficialDay, ...] = ()
    # Days the `holidays` package lists that are not statutory days off.
    not_days_off: tuple[OfficialDay, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> OfficialDays:
        previous_end: time | None = None
        for i, (start, end) in enumerate(self.working_hours):
            where = f"working_hours[{i}]"
            if start.tzinfo is not None or end.tzinfo is not None:
                raise ValueError(f"{where}: give local Hanoi times without an offset")
            if start >= end:
                raise ValueError(f"{where}: opens at {start} but closes at {end}")
            if previous_end is not None and start < previous_end:
                raise ValueError(f"{where}: opens at {start}, before the previous period closes")
            previous_end = end
        seen: dict[date, str] = {}
        lists = (
            ("days_off", self.days_off, False),
            ("working_days", self.working_days, True),
            ("not_days_off", self.not_days_off, False),
        )
        for name, entries, on_weekend in lists:
            for i, entry in enumerate(entries):
                where = f"{name}[{i}] ({entry.date}).date"
                weekday = _WEEKDAYS[entry.date.weekday()]
                if on_weekend and entry.date.weekday() < 5:
                    raise ValueError(
                        f"{where}: a make-up working day must be a weekend day, not a {weekday}"
                    )
                if not on_weekend and entry.date.weekday() >= 5:
                    raise ValueError(f"{where}: a {weekday} is no working day anyway")
                if entry.date in seen:
                    raise ValueError(
                        f"{where}: {entry.date} is already listed in {seen[entry.date]}"
                    )
                seen[entry.date] = f"{name}[{i}]"
        return self


def _describe_error(error: Mapping[str, Any], raw: object) -> str:
    """'days_off[3] (2026-01-02).source: String should have at least 3 characters'."""
    loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
    text = ""
    node = raw
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
            if isinstance(node, dict) and isinstance(node.get("date"), str):
                text += f" ({node['date']})"
        elif isinstance(part, str) and isinstance(node, dict):
            node = node.get(part)
    message = str(error.get("msg", "invalid"))
    return f"{text}: {message}" if text else message


def load_official_days(path: Path = DATA_FILE) -> OfficialDays:
    """Read and validate the official-days file."""
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CalendarDataError(f"{path}: cannot read: {exc}") from exc
    try:
        return OfficialDays.model_validate_json(raw_text)
    except ValidationError as exc:
        try:
            raw: object = json.loads(raw_text)
        except ValueError:
            raw = None
        details = "; ".join(_describe_error(e, raw) for e in exc.errors())
        raise CalendarDataError(f"{path}: {details}") from exc


# --- the statutory holidays ------------------------------------------------------------------


class HolidayYear(NamedTuple):
    """What the holiday source says about one year."""

    holidays: Mapping[date, str]  # day off -> its name
    weekend_workdays: frozenset[date]  # make-up Saturdays the source knows


HolidaySource = Callable[[int], HolidayYear]


def package_holidays(year: int) -> HolidayYear:
    """VN holidays from the `holidays` package: Labour Code art. 112 days, their substitutes
    (art. 112(3): a holiday on a weekly day off gives the next working day off) and the swaps
    the package knows."""
    import holidays  # slow (~0.1 s): imported when a year is first needed, not at import

    # Neighbouring years too: a swap may be filed under the year of its decision.
    vn = holidays.country_holidays("VN", years=(year - 1, year, year + 1), language="en_US")
    names = {day: str(name) for day, name in vn.items() if day.year == year}
    # `weekend_workdays` is missing from older versions of the package (pyproject: >=0.60).
    workdays = frozenset(day for day in getattr(vn, "weekend_workdays", ()) if day.year == year)
    return HolidayYear(names, workdays)


# --- the calendar ----------------------------------------------------------------------------


class DayStatus(NamedTuple):
    working: bool
    reason: str


def _hanoi(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(HANOI)


def _plain_date(value: date, name: str) -> date:
    if isinstance(value, datetime):
        raise TypeError(f"{name} must be a date, not a datetime; use .astimezone(HANOI).date()")
    return value


class WorkingCalendar:
    """Working days and working hours in Hanoi, and deadlines counted in them."""

    def __init__(
        self, official: OfficialDays, holiday_source: HolidaySource = package_holidays
    ) -> None:
        self.official = official
        self._source = holiday_source
        self._hours = official.working_hours
        self._days_off = {entry.date: entry for entry in official.days_off}
        self._make_up = {entry.date: entry for entry in official.working_days}
        self._not_off = {entry.date: entry for entry in official.not_days_off}
        self._years: dict[int, HolidayYear] = {}
        self._lock = threading.Lock()
        self.working_day_seconds = sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start)) // _ONE_SECOND
            for start, end in self._hours
        )
        self.closing_time = self._hours[-1][1]

    def _year(self, year: int) -> HolidayYear:
        found = self._years.get(year)
        if found is None:
            with self._lock:  # activities may run in threads
                found = self._years.get(year)
                if found is None:
                    found = self._source(year)
                    self._years[year] = found
        return found

    # -- days --

    def day_status(self, day: date) -> DayStatus:
        """Whether ``day`` is a working day, and why (for counter staff)."""
        day = _plain_date(day, "day")
        weekday = _WEEKDAYS[day.weekday()]
        if day in self._make_up:
            entry = self._make_up[day]
            return DayStatus(True, f"{entry.reason} [{entry.source}]")
        if day in self._days_off:
            entry = self._days_off[day]
            return DayStatus(False, f"day off: {entry.reason} [{entry.source}]")
        year = self._year(day.year)
        name = year.holidays.get(day)
        if name is not None and day not in self._not_off:
            return DayStatus(False, f"public holiday: {name}")
        if day.weekday() >= 5:
            if day in year.weekend_workdays:
                return DayStatus(True, f"make-up working {weekday} (holidays package)")
            return DayStatus(False, f"weekend ({weekday})")
        if name is not None:
            entry = self._not_off[day]
            return DayStatus(True, f"working day ({weekday}): {entry.reason} [{entry.source}]")
        return DayStatus(True, f"working day ({weekday})")

    def is_working_day(self, day: date) -> bool:
        """Mon-Fri that is no holiday or day off, or a make-up working day."""
        day = _plain_date(day, "day")
        if day in self._make_up:
            return True
        if day in self._days_off:
            return False
        year = self._year(day.year)
        if day in year.holidays and day not in self._not_off:
            return False
        if day.weekday() >= 5:
            # The package's make-up Saturdays go with the swapped days off it also lists.
            return day in year.weekend_workdays
        return True

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        day = _plain_date(day, "day")
        for _ in range(_MAX_DAYS_WITHOUT_WORK):
            day += _ONE_DAY
            if self.is_working_day(day):
                return day
        raise CalendarDataError(f"no working day in the {_MAX_DAYS_WITHOUT_WORK} days after {day}")

    def previous_working_day(self, day: date) -> date:
        """The last working day strictly before ``day``."""
        day = _plain_date(day, "day")
        for _ in range(_MAX_DAYS_WITHOUT_WORK):
            day -= _ONE_DAY
            if self.is_working_day(day):
                return day
        raise CalendarDataError(f"no working day in the {_MAX_DAYS_WITHOUT_WORK} days before {day}")

    def working_days_after(self, day: date, n: int) -> date:
        """The n-th working day after ``day`` (n >= 1). A period in days starts on the day
        after the event (Civil Code 2015 art. 147), so ``day`` itself never counts."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        for _ in range(n):
            day = self.next_working_day(day)
        return day

    def closing_on(self, day: date) -> datetime:
        """The end of working hours (17:00) on ``day``, Hanoi time."""
        return datetime.combine(_plain_date(day, "day"), self.closing_time, HANOI)

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_working_day(day):
            return []
        return [
            (datetime.combine(day, start, HANOI), datetime.combine(day, end, HANOI))
            for start, end in self._hours
        ]

    # -- deadlines --

    def due_at(self, received_at: datetime, deadline: Deadline) -> datetime:
        """The appointment (ngày hẹn trả) for a dossier received at ``received_at``."""
        local = _hanoi(received_at, "received_at")
        today = local.date()
        if isinstance(deadline, WorkingDaysDeadline):
            # N working days counted from the day after receipt (Civil Code art. 147), due at
            # the close of the N-th; the same whether received on a working day or not.
            return self.closing_on(self.working_days_after(today, deadline.days))
        if isinstance(deadline, SameDayDeadline):
            # Certification (Decree 23/2015 art. 7): the same working day, or the next one when
            # received after the cutoff ("sau 15 giờ": strictly after, so 15:00:00 is the same
            # day) or on a day off. Receipts state the second, so a fraction of a second past
            # 15:00:00 is still 15:00:00.
            if (
                self.is_working_day(today)
                and local.replace(microsecond=0).time() <= deadline.cutoff
                and local < self.closing_on(today)
            ):
                return self.closing_on(today)
            return self.closing_on(self.next_working_day(today))
        assert_never(deadline)

    # -- working hours --

    def working_seconds_between(self, start: datetime, end: datetime) -> int:
        """Working time between two instants, in whole seconds (rounded down); 0 if end <= start."""
        start = _hanoi(start, "start")
        end = _hanoi(end, "end")
        if end <= start:
            return 0
        total = timedelta(0)
        day = start.date()
        last = end.date()
        while day <= last:
            if start.date() < day < last:
                if self.is_working_day(day):
                    total += timedelta(seconds=self.working_day_seconds)
            else:
                for opens, closes in self._periods(day):
                    low, high = max(opens, start), min(closes, end)
                    if high > low:
                        total += high - low
            day += _ONE_DAY
        return total // _ONE_SECOND

    def add_working_seconds(self, start: datetime, seconds: int) -> datetime:
        """The earliest instant with ``seconds`` of working time since ``start``.

        Outside working hours counting starts at the next opening, so adding 0 there gives that
        opening; inside them adding 0 gives ``start``. A sum that fills a period exactly ends at
        its close (17:00), not at the next opening.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        moment = _hanoi(start, "start")
        remaining = timedelta(seconds=seconds)
        day_length = timedelta(seconds=self.working_day_seconds)
        day = moment.date()
        idle = 0
        while idle < _MAX_DAYS_WITHOUT_WORK:
            periods = self._periods(day)
            if periods and moment <= periods[0][0] and remaining > day_length:
                remaining -= day_length  # a whole working day ahead: skip it
                periods = []
                idle = 0
            for opens, closes in periods:
                if closes <= moment:
                    continue
                low = max(opens, moment)
                if remaining <= closes - low:
                    return low + remaining
                remaining -= closes - low
                idle = 0
            idle += 1
            day += _ONE_DAY
        raise CalendarDataError(f"no working time in the {idle} days from {day}")

    def subtract_working_seconds(self, end: datetime, seconds: int) -> datetime:
        """The latest instant with ``seconds`` of working time before ``end`` (the mirror of
        ``add_working_seconds``: landing exactly on an opening gives the opening, 08:00)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        moment = _hanoi(end, "end")
        remaining = timedelta(seconds=seconds)
        day_length = timedelta(seconds=self.working_day_seconds)
        day = moment.date()
        idle = 0
        while idle < _MAX_DAYS_WITHOUT_WORK:
            periods = self._periods(day)
            if periods and moment >= periods[-1][1] and remaining > day_length:
                remaining -= day_length
                periods = []
                idle = 0
            for opens, closes in reversed(periods):
                if opens >= moment:
                    continue
                high = min(closes, moment)
                if remaining <= high - opens:
                    return high - remaining
                remaining -= high - opens
                idle = 0
            idle += 1
            day -= _ONE_DAY
        raise CalendarDataError(f"no working time in the {idle} days before {day}")


@lru_cache(maxsize=1)
def default_calendar() -> WorkingCalendar:
    """The calendar from the shipped data file and the `holidays` package, built once."""
    return WorkingCalendar(load_official_days())


# --- CLI -------------------------------------------------------------------------------------


def _received_arg(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date-time: {value!r} (e.g. 2026-02-13T15:30+07:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=HANOI)  # counter staff type local Hanoi time
    return parsed


def _working_days_arg(value: str) -> WorkingDaysDeadline:
    try:
        return WorkingDaysDeadline(days=int(value))
    except (ValueError, ValidationError):
        raise argparse.ArgumentTypeError(
            f"expected a whole number of working days from 1 to 120, got {value!r}"
        ) from None


def _date_arg(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def _procedure_deadline(parser: argparse.ArgumentParser, code: str) -> Deadline:
    # Imported here so the calendar works (and imports fast) without the catalogue.
    try:
        from domain.catalogue import load_catalogue

        catalogue = load_catalogue()
    except (ImportError, ValueError) as exc:
        parser.exit(1, f"{parser.prog}: error: cannot load the procedure catalogue: {exc}\n")
    try:
        return catalogue.procedure(code).deadline
    except LookupError as exc:  # CatalogueError is a ValueError, KeyError a LookupError
        parser.error(f"argument --procedure: unknown procedure {code!r} ({exc})")
    except ValueError as exc:
        parser.error(f"argument --procedure: {exc}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m domain.calendar",
        description="Hanoi's legal working-day calendar (Asia/Ho_Chi_Minh).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    due = commands.add_parser("due", help="print the appointment (ngày hẹn trả) as ISO 8601")
    kind = due.add_mutually_exclusive_group(required=True)
    kind.add_argument("--procedure", metavar="CODE", help="national TTHC code, e.g. 1.001193")
    kind.add_argument(
        "--working-days", metavar="N", type=_working_days_arg, help="a deadline of N working days"
    )
    kind.add_argument(
        "--certification",
        action="store_true",
        help="same working day; the next one when received after 15:00:00",
    )
    due.add_argument(
        "--received",
        type=_received_arg,
        default=None,
        metavar="ISO_DATETIME",
        help="when the dossier was received, ISO 8601 (default: now; no offset means Hanoi time)",
    )
    check = commands.add_parser("is-working-day", help="say whether a date is a working day")
    check.add_argument("date", type=_date_arg, help="YYYY-MM-DD")
    apology = commands.add_parser(
        "apology-by",
        help="print the latest moment the apology slip (form 04) may go out for an appointment",
    )
    apology.add_argument(
        "--due",
        type=_received_arg,
        required=True,
        metavar="ISO_DATETIME",
        help="the appointment, ISO 8601 (no offset means Hanoi time)",
    )
    apology.add_argument(
        "--certification",
        action="store_true",
        help="the appointment of a same-day certification (one working hour before it)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    calendar = default_calendar()
    if args.command == "is-working-day":
        status = calendar.day_status(args.date)
        print(f"{'yes' if status.working else 'no'}: {status.reason}")
        return 0
    if args.command == "apology-by":
        from domain.clock import apology_by  # the clock's rule, over this calendar

        kind: Deadline = SameDayDeadline() if args.certification else WorkingDaysDeadline(days=1)
        print(apology_by(calendar, args.due, kind).isoformat())
        return 0
    deadline: Deadline
    if args.procedure is not None:
        deadline = _procedure_deadline(parser, args.procedure)
    elif args.working_days is not None:
        deadline = args.working_days
    else:
        deadline = SameDayDeadline()
    received: datetime = args.received or datetime.now(HANOI)
    print(calendar.due_at(received, deadline).isoformat())
    return 0


if __name__ == "__main__":
    sys.exit(main())
