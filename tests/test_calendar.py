"""The legal working-day calendar on the real 2025-2027 calendar, with properties and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.calendar import (
    DATA_FILE,
    HANOI,
    CalendarDataError,
    HolidayYear,
    OfficialDays,
    WorkingCalendar,
    default_calendar,
    load_official_days,
    main,
)
from schemas.catalogue import SameDayDeadline, WorkingDaysDeadline

ROOT = Path(__file__).resolve().parent.parent
CAL = default_calendar()
CERT = SameDayDeadline()
HOUR = 3600
DAY = 8 * HOUR
FAST = settings(max_examples=60, deadline=None, database=None)


def at(text: str) -> datetime:
    """'2026-02-13 15:30' in Hanoi time."""
    return datetime.fromisoformat(text).replace(tzinfo=HANOI)


def wd(days: int) -> WorkingDaysDeadline:
    return WorkingDaysDeadline(days=days)


# --- working days on the real calendar ------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        ("2026-02-13", True),  # Friday before Tết
        ("2026-02-14", False),  # Saturday
        ("2026-02-15", False),  # Sunday
        *[(f"2026-02-{d}", False) for d in range(16, 21)],  # Tết Bính Ngọ, Mon-Fri
        ("2026-02-23", True),
        ("2025-09-01", False),  # National Day and its adjacent day (art. 112(1)(đ))
        ("2025-09-02", False),
        ("2026-09-01", False),
        ("2026-09-02", False),
        ("2026-08-31", False),  # swapped with Saturday 22 Aug 2026
        ("2026-08-22", True),
        ("2025-04-26", True),  # make-up Saturday for Friday 2 May 2025
        ("2025-05-02", False),
        ("2025-04-30", False),
        ("2025-05-01", False),
        ("2026-01-02", False),  # New Year 2026 swap (12729/VPCP-KGVX)
        ("2026-01-10", True),
        ("2026-04-27", False),  # Hùng Kings on Sunday 26 Apr -> Monday off
        ("2026-11-24", True),  # Vietnam Cultural Day: not yet a statutory day off
        ("2027-02-08", False),  # Tết 2027 (package)
    ],
)
def test_real_calendar(day: str, working: bool) -> None:
    assert CAL.is_working_day(date.fromisoformat(day)) is working
    assert CAL.day_status(date.fromisoformat(day)).working is working


def test_day_status_reasons() -> None:
    assert "make-up" in CAL.day_status(date(2026, 8, 22)).reason
    assert CAL.day_status(date(2026, 2, 17)).reason.startswith("public holiday")
    assert CAL.day_status(date(2026, 3, 7)).reason == "weekend (Saturday)"
    assert "12729/VPCP-KGVX" in CAL.day_status(date(2026, 1, 2)).reason
    assert "80-NQ/TW" in CAL.day_status(date(2026, 11, 24)).reason


def test_next_working_day_and_counting() -> None:
    assert CAL.next_working_day(date(2026, 2, 13)) == date(2026, 2, 23)
    assert CAL.next_working_day(date(2026, 3, 4)) == date(2026, 3, 5)
    assert CAL.working_days_after(date(2026, 2, 13), 3) == date(2026, 2, 25)
    # The receipt day never counts, even when it is a working day (Civil Code art. 147).
    assert CAL.working_days_after(date(2026, 3, 4), 1) == date(2026, 3, 5)
    with pytest.raises(ValueError):
        CAL.working_days_after(date(2026, 3, 4), 0)


# --- due_at ---------------------------------------------------------------------------------


def test_tet_example() -> None:
    assert CAL.due_at(at("2026-02-13 15:30"), wd(3)) == at("2026-02-25 17:00")


def test_due_at_accepts_any_offset_and_answers_in_hanoi_time() -> None:
    due = CAL.due_at(datetime(2026, 2, 13, 8, 30, tzinfo=UTC), wd(3))
    assert due == at("2026-02-25 17:00")
    assert due.utcoffset() == timedelta(hours=7)
    # 23:30 UTC on Friday is already Saturday in Hanoi.
    saturday = datetime(2026, 3, 6, 23, 30, tzinfo=UTC)
    assert CAL.due_at(saturday, wd(1)) == at("2026-03-09 17:00")


def test_due_at_over_weekend_and_holidays() -> None:
    assert CAL.due_at(at("2026-03-06 10:00"), wd(1)) == at("2026-03-09 17:00")
    assert CAL.due_at(at("2026-03-07 10:00"), wd(1)) == at("2026-03-09 17:00")  # Saturday
    # 30 Apr, 1 May, 2 May off, then the weekend.
    assert CAL.due_at(at("2025-04-29 10:00"), wd(1)) == at("2025-05-05 17:00")
    # The make-up Saturday counts.
    assert CAL.due_at(at("2025-04-25 09:00"), wd(1)) == at("2025-04-26 17:00")
    # Around 2 Sep 2026: Sat 29 Aug - Wed 2 Sep off.
    assert CAL.due_at(at("2026-08-28 09:00"), wd(1)) == at("2026-09-03 17:00")


@pytest.mark.parametrize(
    ("received", "due"),
    [
        ("2026-03-04 14:59", "2026-03-04 17:00"),  # before 15:00: same day
        # Decree 23/2015 art. 7, "sau 15 giờ" is strictly after: Wed 4 Mar 2026 at 15:00:00
        # is due that Wednesday at 17:00; one second later, Thursday 5 Mar at 17:00.
        ("2026-03-04 15:00:00", "2026-03-04 17:00"),
        ("2026-03-04 15:00:00.900", "2026-03-04 17:00"),  # the receipt says 15:00:00
        ("2026-03-04 15:00:01", "2026-03-05 17:00"),
        # Fri 6 Mar 2026 at 15:00:00: that Friday; at 15:00:01: Monday 9 Mar.
        ("2026-03-06 15:00:00", "2026-03-06 17:00"),
        ("2026-03-06 15:00:01", "2026-03-09 17:00"),
        ("2026-03-04 16:30", "2026-03-05 17:00"),
        ("2026-03-04 06:00", "2026-03-04 17:00"),  # before opening: same day
        ("2026-03-04 12:30", "2026-03-04 17:00"),  # lunch break
        ("2026-03-04 18:00", "2026-03-05 17:00"),
        ("2026-03-06 15:30", "2026-03-09 17:00"),  # Friday after 15:00 -> Monday
        ("2026-03-07 10:00", "2026-03-09 17:00"),  # Saturday -> Monday
        ("2026-02-13 14:00", "2026-02-13 17:00"),  # the day before Tết, in time
        ("2026-02-13 15:30", "2026-02-23 17:00"),  # the day before Tết, too late
        ("2026-08-22 10:00", "2026-08-22 17:00"),  # make-up Saturday
    ],
)
def test_certification(received: str, due: str) -> None:
    assert CAL.due_at(at(received), CERT) == at(due)


def test_certification_custom_cutoff() -> None:
    assert CAL.due_at(at("2026-03-04 15:30"), SameDayDeadline(cutoff=time(16))) == at(
        "2026-03-04 17:00"
    )
    # At the custom cutoff itself: the same day (16:00:00 is not after 16:00).
    assert CAL.due_at(at("2026-03-04 16:00"), SameDayDeadline(cutoff=time(16))) == at(
        "2026-03-04 17:00"
    )


def test_cli_certification_at_exactly_15h(capsys: pytest.CaptureFixture[str]) -> None:
    # Wed 4 Mar 2026 15:00:00 -> the same day, 17:00.
    assert main(["due", "--certification", "--received", "2026-03-04T15:00:00+07:00"]) == 0
    assert capsys.readouterr().out == "2026-03-04T17:00:00+07:00\n"


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 3, 4, 10)
    aware = at("2026-03-04 10:00")
    with pytest.raises(ValueError, match="received_at"):
        CAL.due_at(naive, wd(1))
    with pytest.raises(ValueError, match="start"):
        CAL.working_seconds_between(naive, aware)
    with pytest.raises(ValueError, match="end"):
        CAL.working_seconds_between(aware, naive)
    with pytest.raises(ValueError):
        CAL.add_working_seconds(naive, 1)
    with pytest.raises(ValueError):
        CAL.subtract_working_seconds(naive, 1)
    with pytest.raises(TypeError):
        CAL.is_working_day(aware)


# --- working hours --------------------------------------------------------------------------


def test_working_seconds_examples() -> None:
    w = CAL.working_seconds_between
    assert w(at("2026-03-04 08:00"), at("2026-03-04 17:00")) == DAY
    assert w(at("2026-03-04 11:00"), at("2026-03-04 14:00")) == 2 * HOUR  # lunch excluded
    assert w(at("2026-02-13 08:00"), at("2026-02-23 17:00")) == 2 * DAY  # Tết in between
    assert w(at("2026-03-04 17:00"), at("2026-03-04 08:00")) == 0
    assert w(at("2026-03-04 10:00:00.600000"), at("2026-03-04 10:00:02")) == 1  # rounded down


def test_add_and_subtract_examples() -> None:
    add, sub = CAL.add_working_seconds, CAL.subtract_working_seconds
    assert add(at("2026-03-04 16:00"), HOUR) == at("2026-03-04 17:00")  # lands on the close
    assert add(at("2026-03-04 08:00"), 4 * HOUR) == at("2026-03-04 12:00")
    assert add(at("2026-03-04 17:00"), 1) == at("2026-03-05 08:00:01")
    assert add(at("2026-03-04 06:00"), 0) == at("2026-03-04 08:00")
    assert add(at("2026-03-04 10:00"), 0) == at("2026-03-04 10:00")
    assert add(at("2026-03-04 12:30"), 0) == at("2026-03-04 13:00")
    assert add(at("2026-02-13 16:00"), 2 * HOUR) == at("2026-02-23 09:00")
    assert sub(at("2026-03-05 09:00"), HOUR) == at("2026-03-05 08:00")  # lands on the opening
    assert sub(at("2026-03-05 08:00"), HOUR) == at("2026-03-04 16:00")
    assert sub(at("2026-03-05 17:00"), DAY) == at("2026-03-05 08:00")
    assert sub(at("2026-02-23 09:00"), 2 * HOUR) == at("2026-02-13 16:00")
    with pytest.raises(ValueError):
        add(at("2026-03-04 10:00"), -1)


def test_thirty_working_days_are_240_hours() -> None:
    """Hanoi's process sheets: 30 wd = 240 h."""
    received = at("2026-02-13 17:00")
    assert CAL.add_working_seconds(received, 240 * HOUR) == CAL.due_at(received, wd(30))


# --- the data file --------------------------------------------------------------------------


def test_shipped_data_file() -> None:
    data = load_official_days()
    assert data.working_hours == ((time(8), time(12)), (time(13), time(17)))
    assert CAL.working_day_seconds == DAY
    for entry in (*data.days_off, *data.working_days, *data.not_days_off):
        assert entry.source.strip()


def _write(tmp_path: Path, **changes: Any) -> Path:
    raw = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    raw.update(changes)
    path = tmp_path / "official_days.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"days_off": [{"date": "2026-13-01", "reason": "x" * 5, "source": "y" * 5}]},
            "days_off[0]",
        ),
        ({"days_off": [{"date": "2026-01-02", "reason": "off", "source": ""}]}, "source"),
        (
            {"working_days": [{"date": "2026-08-24", "reason": "Monday", "source": "z" * 5}]},
            "working_days[0] (2026-08-24).date",
        ),
        ({"days_off": [{"date": "2026-08-22", "reason": "Sat", "source": "z" * 5}]}, "Saturday"),
        ({"working_hours": [["08:00", "12:00"], ["11:00", "17:00"]]}, "working_hours[1]"),
        ({"working_hours": [["12:00", "08:00"]]}, "working_hours[0]"),
        ({"holidays": []}, "holidays"),
    ],
)
def test_bad_data_is_named(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(CalendarDataError) as caught:
        load_official_days(_write(tmp_path, **changes))
    assert expected in str(caught.value)


def test_bad_entry_message_names_entry_and_field(tmp_path: Path) -> None:
    bad = [{"date": "2026-01-02", "reason": "off", "source": ""}]
    with pytest.raises(CalendarDataError, match=r"days_off\[0\] \(2026-01-02\)\.source"):
        load_official_days(_write(tmp_path, days_off=bad))


def test_duplicate_dates_are_refused(tmp_path: Path) -> None:
    entry = {"date": "2026-01-02", "reason": "off", "source": "src"}
    with pytest.raises(CalendarDataError, match="already listed"):
        load_official_days(_write(tmp_path, days_off=[entry], not_days_off=[entry]))


def test_calendar_with_a_stub_holiday_source() -> None:
    """The calendar's rules without the package: a holiday, and one overruled by the data."""
    data = OfficialDays.model_validate(
        {
            "working_hours": [["07:30", "11:30"], ["13:30", "17:30"]],
            "not_days_off": [{"date": "2030-01-03", "reason": "not off", "source": "test"}],
        }
    )
    stub = HolidayYear({date(2030, 1, 2): "Stub Day", date(2030, 1, 3): "Listed"}, frozenset())
    cal = WorkingCalendar(data, lambda year: stub)
    assert not cal.is_working_day(date(2030, 1, 2))
    assert cal.is_working_day(date(2030, 1, 3))
    assert cal.due_at(datetime(2030, 1, 1, 9, tzinfo=HANOI), wd(1)) == datetime(
        2030, 1, 3, 17, 30, tzinfo=HANOI
    )


def test_import_does_no_work() -> None:
    code = "import sys, domain.calendar; assert 'holidays' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# --- properties -----------------------------------------------------------------------------

_LOW = datetime(2025, 1, 1)
_HIGH = datetime(2027, 12, 31)
_boundaries = st.sampled_from([time(h, m) for h, m in ((8, 0), (12, 0), (13, 0), (17, 0))])
_any_instant = st.datetimes(_LOW, _HIGH, timezones=st.just(HANOI)).map(
    lambda moment: moment.replace(microsecond=0)
)
_boundary_instant = st.builds(
    lambda day, clock: datetime.combine(day, clock, HANOI),
    st.dates(_LOW.date(), _HIGH.date()),
    _boundaries,
)
instants = st.one_of(_any_instant, _boundary_instant)
work_seconds = st.one_of(
    st.integers(0, 240 * HOUR), st.sampled_from([0, 1, HOUR, 4 * HOUR, DAY, 5 * DAY])
)
deadlines = st.one_of(st.builds(wd, st.integers(1, 60)), st.just(CERT))


@FAST
@given(instants, deadlines)
def test_due_at_is_a_close_of_a_working_day_after_receipt(
    received: datetime, deadline: WorkingDaysDeadline | SameDayDeadline
) -> None:
    due = CAL.due_at(received, deadline)
    assert due > received
    assert due.tzinfo is HANOI
    assert due.time() == time(17)
    assert CAL.is_working_day(due.date())


@FAST
@given(instants, st.integers(1, 60))
def test_due_at_counts_exactly_n_working_days_after_receipt_day(received: datetime, n: int) -> None:
    due = CAL.due_at(received, wd(n)).date()
    day, counted = received.date(), 0
    while day < due:
        day += timedelta(days=1)
        counted += CAL.is_working_day(day)
    assert counted == n


@FAST
@given(instants, instants, deadlines)
def test_due_at_is_monotonic_in_receipt(
    a: datetime, b: datetime, deadline: WorkingDaysDeadline | SameDayDeadline
) -> None:
    a, b = sorted((a, b))
    assert CAL.due_at(a, deadline) <= CAL.due_at(b, deadline)


@FAST
@given(instants, st.integers(1, 60), st.integers(1, 60))
def test_due_at_is_monotonic_in_days(received: datetime, m: int, n: int) -> None:
    m, n = sorted((m, n))
    assert CAL.due_at(received, wd(m)) <= CAL.due_at(received, wd(n))
    if m < n:
        assert CAL.due_at(received, wd(m)) < CAL.due_at(received, wd(n))


@FAST
@given(instants, instants, instants)
def test_working_seconds_are_additive(a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    w = CAL.working_seconds_between
    assert w(a, c) == w(a, b) + w(b, c)
    assert 0 <= w(a, c) <= (c - a).total_seconds()


@FAST
@given(st.dates(_LOW.date(), _HIGH.date()))
def test_a_working_day_holds_eight_hours(day: date) -> None:
    midnight = datetime.combine(day, time(0), HANOI)
    held = CAL.working_seconds_between(midnight, midnight + timedelta(days=1))
    assert held == (DAY if CAL.is_working_day(day) else 0)


@FAST
@given(instants, work_seconds)
def test_add_is_the_inverse_of_between(start: datetime, k: int) -> None:
    end = CAL.add_working_seconds(start, k)
    assert end >= start
    assert CAL.working_seconds_between(start, end) == k
    # the earliest such instant: a second earlier is short of k
    if k > 0:
        assert CAL.working_seconds_between(start, end - timedelta(seconds=1)) == k - 1
        assert CAL.subtract_working_seconds(end, k) == CAL.add_working_seconds(start, 0)


@FAST
@given(instants, work_seconds)
def test_subtract_is_the_inverse_of_between(end: datetime, k: int) -> None:
    start = CAL.subtract_working_seconds(end, k)
    assert start <= end
    assert CAL.working_seconds_between(start, end) == k
    if k > 0:
        assert CAL.working_seconds_between(start + timedelta(seconds=1), end) == k - 1
        assert CAL.add_working_seconds(start, k) == CAL.subtract_working_seconds(end, 0)


@FAST
@given(instants, work_seconds, work_seconds)
def test_add_composes(start: datetime, j: int, k: int) -> None:
    if k > 0:
        middle = CAL.add_working_seconds(start, j)
        assert CAL.add_working_seconds(middle, k) == CAL.add_working_seconds(start, j + k)
    assert CAL.add_working_seconds(start, min(j, k)) <= CAL.add_working_seconds(start, max(j, k))


@FAST
@given(instants)
def test_zero_is_identity_inside_working_hours(moment: datetime) -> None:
    clock = moment.time()
    inside = CAL.is_working_day(moment.date()) and (
        time(8) <= clock < time(12) or time(13) <= clock < time(17)
    )
    assert (CAL.add_working_seconds(moment, 0) == moment) is inside
    assert (CAL.subtract_working_seconds(moment, 0) == moment) is (
        CAL.is_working_day(moment.date())
        and (time(8) < clock <= time(12) or time(13) < clock <= time(17))
    )


# --- CLI ------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "domain.calendar", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_cli_due_working_days() -> None:
    done = run_cli("due", "--working-days", "3", "--received", "2026-02-13T15:30+07:00")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2026-02-25T17:00:00+07:00\n"


def test_cli_bad_received_exits_2() -> None:
    done = run_cli("due", "--certification", "--received", "13/02/2026 15:30")
    assert done.returncode == 2
    assert "--received" in done.stderr
    assert done.stdout == ""


def test_cli_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["due", "--certification", "--received", "2026-03-06T15:30+07:00"]) == 0
    assert capsys.readouterr().out == "2026-03-09T17:00:00+07:00\n"
    # Without an offset, counter staff mean Hanoi time.
    assert main(["due", "--working-days", "3", "--received", "2026-02-13T15:30"]) == 0
    assert capsys.readouterr().out == "2026-02-25T17:00:00+07:00\n"
    assert main(["is-working-day", "2026-08-22"]) == 0
    assert capsys.readouterr().out.startswith("yes: make-up working Saturday")
    assert main(["is-working-day", "2026-02-17"]) == 0
    assert capsys.readouterr().out.startswith("no: public holiday")
    with pytest.raises(SystemExit) as exited:
        main(["due", "--working-days", "0"])
    assert exited.value.code == 2
    assert "--working-days" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["is-working-day", "2026-02-30"])
    assert exited.value.code == 2


def test_cli_procedure(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    procedures = {"1.001193": SimpleNamespace(deadline=wd(3))}

    def procedure(code: str) -> SimpleNamespace:
        return procedures[code]

    fake = SimpleNamespace(load_catalogue=lambda: SimpleNamespace(procedure=procedure))
    monkeypatch.setitem(sys.modules, "domain.catalogue", fake)
    assert main(["due", "--procedure", "1.001193", "--received", "2026-02-13T15:30+07:00"]) == 0
    assert capsys.readouterr().out == "2026-02-25T17:00:00+07:00\n"
    with pytest.raises(SystemExit) as exited:
        main(["due", "--procedure", "9.999999"])
    assert exited.value.code == 2
    assert "--procedure" in capsys.readouterr().err


def test_cli_procedure_from_the_real_catalogue() -> None:
    catalogue = pytest.importorskip("domain.catalogue").load_catalogue()
    received = "2026-03-06T15:30+07:00"
    firsts = {type(p.deadline): p for p in reversed(list(catalogue.procedures.values()))}
    for procedure in firsts.values():  # one procedure of each deadline kind
        done = run_cli("due", "--procedure", procedure.code, "--received", received)
        assert done.returncode == 0, done.stderr
        expected = CAL.due_at(datetime.fromisoformat(received), procedure.deadline)
        assert done.stdout == f"{expected.isoformat()}\n"


# --- the apology slip's latest moment (Decree 61/2018 art. 19(9)) ----------------------------
@pytest.mark.parametrize(
    ("due", "latest"),
    [
        # Due Tue 1 Dec 2026 17:00: the day before is Mon 30 Nov, a working day; by its 17:00.
        ("2026-12-01 17:00", "2026-11-30 17:00"),
        # Due Mon 30 Nov 2026: Sat 28 and Sun 29 are days off; the Friday before, 27 Nov 17:00.
        ("2026-11-30 17:00", "2026-11-27 17:00"),
        # Due Thu 3 Sep 2026: Sat 29 Aug - Wed 2 Sep are days off; Fri 28 Aug 17:00.
        ("2026-09-03 17:00", "2026-08-28 17:00"),
        # Due Mon 23 Feb 2026, after Tết (16-20 Feb off): Fri 13 Feb 17:00.
        ("2026-02-23 17:00", "2026-02-13 17:00"),
        # Due Mon 24 Aug 2026: the make-up working Saturday 22 Aug counts; 22 Aug 17:00.
        ("2026-08-24 17:00", "2026-08-22 17:00"),
        # An appointment moved by a paused clock to Wed 2 Dec 2026 10:30: the day before is
        # Tue 1 Dec, by 17:00; never on the due day itself.
        ("2026-12-02 10:30", "2026-12-01 17:00"),
    ],
)
def test_apology_slip_at_the_latest_one_working_day_before_the_due_date(
    due: str, latest: str
) -> None:
    from domain.clock import apology_by

    moment = apology_by(CAL, at(due), wd(3))
    assert moment == at(latest)
    assert moment.date() < at(due).date()


def test_apology_slip_of_a_same_day_certification_one_working_hour_before() -> None:
    from domain.clock import apology_by, warn_at

    # Due Fri 27 Nov 2026 17:00, received that morning: no day before it; 16:00 (unconfirmed).
    assert apology_by(CAL, at("2026-11-27 17:00"), CERT) == at("2026-11-27 16:00")
    assert warn_at(CAL, at("2026-11-27 17:00"), CERT) == at("2026-11-27 15:00")


def test_apology_slip_when_the_day_before_had_passed_at_receipt() -> None:
    from domain.clock import apology_by

    # One working day, received Mon 30 Nov 2026 at 10:00: due Tue 1 Dec 17:00, slip by Mon
    # 30 Nov 17:00, the day of receipt itself.
    due = CAL.due_at(at("2026-11-30 10:00"), wd(1))
    assert due == at("2026-12-01 17:00")
    assert apology_by(CAL, due, wd(1), at("2026-11-30 10:00")) == at("2026-11-30 17:00")
    # Received Mon 30 Nov 2026 at 18:30: the same appointment, but Monday 17:00 had passed at
    # receipt; one working hour before the appointment instead, Tue 1 Dec 16:00.
    assert apology_by(CAL, due, wd(1), at("2026-11-30 18:30")) == at("2026-12-01 16:00")


def test_the_unit_is_warned_one_working_day_before_the_apology() -> None:
    from domain.clock import warn_at

    # Due Tue 1 Dec 2026: apology by Mon 30 Nov 17:00, warning at Fri 27 Nov 17:00.
    assert warn_at(CAL, at("2026-12-01 17:00"), wd(3)) == at("2026-11-27 17:00")
    # Due Thu 3 Sep 2026: apology by Fri 28 Aug 17:00; warning Thu 27 Aug 17:00.
    assert warn_at(CAL, at("2026-09-03 17:00"), wd(3)) == at("2026-08-27 17:00")


def test_cli_apology_by(capsys: pytest.CaptureFixture[str]) -> None:
    # Due Mon 30 Nov 2026 17:00 -> Fri 27 Nov 2026 17:00 (the weekend is no working day).
    done = run_cli("apology-by", "--due", "2026-11-30T17:00+07:00")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2026-11-27T17:00:00+07:00\n"
    # Without an offset it is Hanoi time; a same-day certification gets one working hour.
    assert main(["apology-by", "--due", "2026-11-27T17:00", "--certification"]) == 0
    assert capsys.readouterr().out == "2026-11-27T16:00:00+07:00\n"
    with pytest.raises(SystemExit) as exited:
        main(["apology-by", "--due", "30/11/2026"])
    assert exited.value.code == 2
    assert "--due" in capsys.readouterr().err
