"""The surge planner: its files (a bad row named with its field and rule), the rules it shares
with the engine (the same functions, not copies), the simulation's bookkeeping, and the
`ops plan` command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

import activities.clock
import domain.routing
from domain.calendar import HANOI, default_calendar
from domain.catalogue import default_catalogue
from domain.clock import apology_extension
from planner import rules
from planner.measure import Measured, resolve, summarise
from planner.report import PlanReport, build_report
from planner.scenario import (
    ArrivalRow,
    PlanInputError,
    RatesRow,
    Scenario,
    ServiceRow,
    Staffing,
    StaffRow,
    Step,
    check_staffing,
    load_scenario,
    load_staffing,
)
from planner.simulation import DAY, Outcome, simulate
from schemas.catalogue import (
    DeliveryChannel,
    SameDayDeadline,
    SupplementRule,
    WorkingDaysDeadline,
)
from schemas.exchanges import MarksRequest
from schemas.statuses import Role
from store.kpis import ProcedureOutcomeRow, StepTimeRow

EXAMPLES = Path(__file__).resolve().parent.parent / "planner" / "examples"
CERTIFIED_COPY = "2.000815"  # same day, 15:00 cutoff
BIRTH = "1.001193"  # 1 working day, restart rule
LAND_CERTIFICATE = "1.013979"  # 3 working days, pause rule
MONDAY = date(2026, 7, 6)  # a working Monday (the calendar says so; checked below)


def write(folder: Path, name: str, content: object) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def scenario_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "test",
        "start": MONDAY.isoformat(),
        "days": 5,
        "arrivals": [
            {"date": MONDAY.isoformat(), "ward": "ha-dong", "procedure": CERTIFIED_COPY, "count": 3}
        ],
        "service": [{"procedure": "*", "step": "certify", "minutes": 5}],
    }
    doc.update(changes)
    return doc


# --- the files -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arrival", "expected"),
    [
        ({"count": -1}, "arrivals[0].count: Input should be greater than or equal to 0"),
        ({"ward": "atlantis"}, "arrivals[0].ward: unknown unit atlantis"),
        ({"ward": "so-tu-phap"}, "arrivals[0].ward: so-tu-phap is a city department"),
        ({"procedure": "9.999999"}, "arrivals[0].procedure: unknown procedure 9.999999"),
        ({"date": "2026-08-01"}, "arrivals[0].date: 2026-08-01 is outside the scenario"),
        ({"channel": "fax"}, "arrivals[0].channel: Input should be 'counter', 'post' or 'online'"),
        ({"date": "6/7/2026"}, "arrivals[0].date: Input should be a valid date"),
    ],
)
def test_a_bad_arrival_row_is_named_with_its_field_and_rule(
    tmp_path: Path, arrival: dict[str, object], expected: str
) -> None:
    row = {"date": MONDAY.isoformat(), "ward": "ha-dong", "procedure": CERTIFIED_COPY, "count": 1}
    path = write(tmp_path, "surge.json", scenario_doc(arrivals=[{**row, **arrival}]))
    with pytest.raises(PlanInputError) as raised:
        load_scenario(path, default_catalogue())
    assert f"surge.json: {expected}" in str(raised.value)


def test_a_bad_csv_row_is_named_by_its_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "arrivals.csv",
        "date,ward,procedure,channel,count\n"
        f"{MONDAY},ha-dong,{CERTIFIED_COPY},counter,4\n"
        f"{MONDAY},ha-dong,{BIRTH},,two\n",
    )
    path = write(tmp_path, "s.json", scenario_doc(arrivals=[], arrivals_csv="arrivals.csv"))
    with pytest.raises(PlanInputError) as raised:
        load_scenario(path, default_catalogue())
    assert str(raised.value) == (
        "arrivals.csv row 3, count: Input should be a valid integer, unable to parse string as "
        "an integer"
    )
    write(tmp_path, "arrivals.csv", f"date,ward,count\n{MONDAY},ha-dong,1\n")
    with pytest.raises(PlanInputError, match=r"arrivals.csv row 1: missing column procedure"):
        load_scenario(path, default_catalogue())


def test_scenario_fields_and_rules(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"days": 0}, "s.json: days: Input should be greater than or equal to 1"),
        (
            {"service": [{"procedure": "*", "step": "sign", "minutes": 5}]},
            "s.json: service[0].step: Input should be 'certify', 'appraise' or 'approve'",
        ),
        (
            {"rates": [{"procedure": BIRTH, "supplement": 1.5}]},
            "s.json: rates[0].supplement: Input should be less than or equal to 1",
        ),
        (
            {"measured": {"from": "2025-07-16", "to": "2025-07-01"}},
            "s.json: measured: to: 2025-07-01 must come after from (2025-07-16)",
        ),
        ({"arrivals": []}, "s.json: arrivals: none given, and no history to take them from"),
        ({"colour": "red"}, "s.json: colour: Extra inputs are not permitted"),
    ]
    for change, expected in cases:
        path = write(tmp_path, "s.json", scenario_doc(**change))
        with pytest.raises(PlanInputError) as raised:
            load_scenario(path, default_catalogue())
        assert str(raised.value) == expected


def test_a_step_without_a_service_time_stops_the_plan(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "s.json",
        scenario_doc(
            arrivals=[{"date": str(MONDAY), "ward": "ha-dong", "procedure": BIRTH, "count": 1}]
        ),
    )
    scenario, rows = load_scenario(path, default_catalogue())
    with pytest.raises(
        PlanInputError, match=rf"no service time for procedure {BIRTH}, step appraise"
    ):
        resolve(scenario, Measured(), default_catalogue(), {r.procedure for r in rows})


LEADER_ROW = {"unit": "*", "role": "leader", "officers": 1}


def staffing_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "plan",
        "staff": [{"unit": "*", "role": "certifier", "officers": 2}],
    }
    doc.update(changes)
    return doc


def test_a_bad_staffing_row_is_named_with_its_field_and_rule(tmp_path: Path) -> None:
    saturday = MONDAY + timedelta(days=5)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"staff": [{"unit": "*", "role": "counter_officer", "officers": 2}]},
            "staff[0]: role: counter_officer has no step the plan gives capacity to",
        ),
        (
            {"staff": [{"unit": "*", "role": "certifier", "officers": -2}]},
            "staff[0].officers: Input should be greater than or equal to 0",
        ),
        (
            {"staff": [{"unit": "atlantis", "role": "leader", "officers": 1}]},
            "staff[0].unit: unknown unit atlantis",
        ),
        (
            {
                "staff": [
                    {"unit": "*", "role": "leader", "officers": 1, "hours": [["13:00", "12:00"]]}
                ]
            },
            "staff[0]: hours[0]: opens at 13:00:00 but closes at 12:00:00",
        ),
        (
            {"shared_certification": [["ha-dong", "so-tu-phap"]]},
            "shared_certification[0][1]: so-tu-phap is a city department",
        ),
        (
            {"shared_certification": [["ha-dong", "duong-noi"], ["ha-dong", "yen-nghia"]]},
            "shared_certification[1][0]: ha-dong is already in shared_certification[0]",
        ),
        (
            {
                "saturday_sessions": [
                    {"units": ["ha-dong"], "roles": ["certifier"], "dates": [str(MONDAY)]}
                ]
            },
            f"saturday_sessions[0].dates[0]: {MONDAY} is a working day already",
        ),
        (
            {
                "moves": [
                    {
                        "role": "certifier",
                        "officers": 3,
                        "from_unit": "kien-hung",
                        "to_unit": "ha-dong",
                        "from": str(MONDAY),
                        "to": str(saturday),
                    }
                ]
            },
            f"moves[0].officers: kien-hung has 2 certifier(s) on {MONDAY}, cannot lend 3",
        ),
    ]
    for change, expected in cases:
        path = write(tmp_path, "staff.json", staffing_doc(**change))
        with pytest.raises(PlanInputError) as raised:
            load_staffing(path, default_catalogue(), default_calendar())
        assert str(raised.value).startswith(f"staff.json: {expected}")


def test_officers_on_a_day_take_the_most_specific_row_then_the_moves() -> None:
    wednesday = MONDAY + timedelta(days=2)
    staffing = Staffing.model_validate(
        {
            "name": "plan",
            "staff": [
                {"unit": "*", "role": "certifier", "officers": 2},
                {"unit": "ha-dong", "role": "certifier", "officers": 4},
                {"unit": "ha-dong", "role": "certifier", "officers": 6, "from": str(wednesday)},
            ],
            "moves": [
                {
                    "role": "certifier",
                    "officers": 1,
                    "from_unit": "kien-hung",
                    "to_unit": "ha-dong",
                    "from": str(wednesday),
                    "to": str(wednesday),
                }
            ],
        }
    )
    check_staffing(staffing, default_catalogue().units, default_calendar(), "plan")
    assert staffing.officers_on("duong-noi", Role.CERTIFIER, MONDAY)[0] == 2
    assert staffing.officers_on("ha-dong", Role.CERTIFIER, MONDAY)[0] == 4
    assert staffing.officers_on("ha-dong", Role.CERTIFIER, wednesday)[0] == 7
    assert staffing.officers_on("kien-hung", Role.CERTIFIER, wednesday)[0] == 1
    assert staffing.officers_on("ha-dong", Role.LEADER, MONDAY)[0] == 0


def test_the_examples_load() -> None:
    catalogue, calendar = default_catalogue(), default_calendar()
    _, rows = load_scenario(EXAMPLES / "three-wards-surge.json", catalogue)
    assert sum(r.count for r in rows) > 5000
    for name in ("staff-today.json", "staff-shared-certification.json"):
        load_staffing(EXAMPLES / name, catalogue, calendar)


# --- the rules it shares with the engine ------------------------------------------------------
def test_the_clock_and_routing_are_the_engines_own_functions() -> None:
    """planner.rules calls the engine's clock activities and domain.routing: the objects are
    the engine's, so a change to the rule there is a change here."""
    assert rules.clock is activities.clock
    assert rules.route is domain.routing.route
    assert rules.competent_unit_code is domain.routing.competent_unit_code


def test_the_rules_answer_as_the_calendar_and_the_clock_do() -> None:
    calendar = default_calendar()
    assert calendar.is_working_day(MONDAY)
    received = datetime.combine(MONDAY, time(15, 30), HANOI)
    same_day = SameDayDeadline()
    # Certification received after 15:00 on Monday: due at the close of Tuesday.
    due = rules.due_at(received, same_day)
    assert due == calendar.closing_on(calendar.next_working_day(MONDAY))
    # The apology mark: the engine's clock_marks over domain.clock's rule.
    marks = activities.clock.clock_marks(
        MarksRequest(received_at=received, due_at=due, deadline=same_day)
    )
    assert rules.apology_at(received, due, same_day) == marks.apologize_at
    # The slip's new appointment is the calendar's due date for domain.clock's extension.
    assert rules.apology_appointment(due, same_day) == calendar.due_at(
        due, apology_extension(same_day)
    )
    catalogue = default_catalogue()
    # A city-tier procedure filed at a ward goes to its department (domain.routing).
    judicial_record = catalogue.procedure("2.000488")
    route = rules.routed(catalogue, "2.000488", "ha-dong")
    assert route.competent_unit == judicial_record.competent_department
    assert route.lane == "city-processing"
    assert rules.routed(catalogue, CERTIFIED_COPY, "ha-dong").competent_unit == "ha-dong"


def test_supplement_rules_move_the_appointment_as_the_engine_does() -> None:
    calendar = default_calendar()
    catalogue = default_catalogue()
    stopped = datetime.combine(MONDAY, time(10), HANOI)
    resumed = datetime.combine(MONDAY + timedelta(days=1), time(11), HANOI)
    birth = catalogue.procedure(BIRTH)
    due = calendar.due_at(stopped, birth.deadline)
    # Restart (Decree 61/2018 art. 19(4)): one working day again from Tuesday 11:00, so the
    # close of Wednesday.
    assert rules.resumed_due(birth, due, stopped, resumed) == calendar.closing_on(
        MONDAY + timedelta(days=2)
    )
    land = catalogue.procedure(LAND_CERTIFICATE)
    due = calendar.due_at(stopped, land.deadline)
    # The land procedures restart too: no text of theirs gives the pause rule.
    assert rules.resumed_due(land, due, stopped, resumed) == calendar.due_at(resumed, land.deadline)
    # Pause, for a procedure whose own text gives it: Monday 10:00 to Tuesday 11:00 is
    # 6 + 3 = 9 working hours; the appointment moves back by them.
    paused = land.model_copy(
        update={
            "supplement_rule": SupplementRule.PAUSE,
            "supplement_text": "the procedure's own text (test)",
        }
    )
    assert calendar.working_seconds_between(stopped, resumed) == 9 * 3600
    assert rules.resumed_due(paused, due, stopped, resumed) == calendar.add_working_seconds(
        due, 9 * 3600
    )


def small_scenario(**changes: object) -> Scenario:
    base: dict[str, object] = {
        "name": "small",
        "start": MONDAY,
        "days": 5,
        "seed": 3,
        "service": (
            ServiceRow(procedure="*", step=Step.CERTIFY, minutes=10, cv=0.3),
            ServiceRow(procedure="*", step=Step.APPRAISE, minutes=30, cv=0.3),
            ServiceRow(procedure="*", step=Step.APPROVE, minutes=10, cv=0.3),
        ),
    }
    base.update(changes)
    return Scenario.model_validate(base)


def arrivals(
    count: int, procedure: str = CERTIFIED_COPY, ward: str = "ha-dong"
) -> list[ArrivalRow]:
    return [
        ArrivalRow(date=MONDAY + timedelta(days=i), ward=ward, procedure=procedure, count=count)
        for i in range(3)
    ]


def run(
    scenario: Scenario, staffing: Staffing, rows: list[ArrivalRow]
) -> tuple[Outcome, PlanReport]:
    catalogue = default_catalogue()
    parameters = resolve(scenario, Measured(), catalogue, {r.procedure for r in rows})
    outcome = simulate(scenario, staffing, rows, parameters, catalogue, default_calendar())
    return outcome, build_report(outcome, scenario, staffing, parameters, 0.0, scenario.seed)


def staff(officers: int, role: Role = Role.CERTIFIER, **changes: object) -> Staffing:
    doc: dict[str, object] = {
        "name": f"{officers} {role.value}s",
        "staff": (StaffRow(unit="*", role=role, officers=officers),),
    }
    doc.update(changes)
    return Staffing.model_validate(doc)


def test_an_undecided_dossier_gets_the_engines_apology_slip_then_goes_overdue() -> None:
    calendar = default_calendar()
    outcome, report = run(small_scenario(), staff(0), arrivals(1)[:1])
    [dossier] = outcome.dossiers
    assert dossier.decided_minute is None
    deadline = SameDayDeadline()
    first_due = calendar.due_at(dossier.received, deadline)
    apology = activities.clock.clock_marks(
        MarksRequest(received_at=dossier.received, due_at=first_due, deadline=deadline)
    ).apologize_at
    # One slip at the mark, one new appointment a working day after the first one.
    assert dossier.apologized and dossier.at(dossier.apology_minute or 0) == max(
        apology, dossier.received
    )
    assert dossier.due == calendar.due_at(first_due, WorkingDaysDeadline(days=1))
    # Overdue when that one passes, within the five days of the scenario.
    assert dossier.overdue and dossier.at(dossier.overdue_minute or 0) == dossier.due
    assert report.apology_slips == 1 and report.overdue == 1 and report.decided == 0
    assert report.wards[0].open_at_end == 1


def test_more_officers_never_make_it_worse_and_utilisation_stays_within_capacity() -> None:
    rows = arrivals(120)
    _, thin = run(small_scenario(), staff(1), rows)
    _, thick = run(small_scenario(), staff(4), rows)
    # 120 copies a day at 10 minutes: 1 certifier has 48 a day, 4 have 192.
    assert thin.on_time_share is not None and thick.on_time_share is not None
    assert thick.on_time_share > thin.on_time_share
    assert thick.apology_slips < thin.apology_slips
    assert thin.open_at_end > thick.open_at_end
    for report in (thin, thick):
        for row in report.desk_days:
            assert row.busy_minutes <= row.officer_minutes + 1e-6
    # One certifier is busy every working minute of the days after the first.
    tuesday = [r for r in thin.desk_days if r.day == MONDAY + timedelta(days=1)]
    assert tuesday[0].utilisation == pytest.approx(1.0, abs=0.01)


def test_the_same_seed_gives_the_same_plan() -> None:
    rows = arrivals(60) + arrivals(10, BIRTH)
    scenario = small_scenario(rates=(RatesRow(procedure="*", supplement=0.3, refusal=0.1),))
    _, first = run(scenario, both_roles(), rows)
    _, again = run(scenario, both_roles(), rows)
    assert first.model_dump(exclude={"seconds"}) == again.model_dump(exclude={"seconds"})


def both_roles() -> Staffing:
    return Staffing(
        name="all roles",
        staff=(
            StaffRow(unit="*", role=Role.CERTIFIER, officers=1),
            StaffRow(unit="*", role=Role.SPECIALIST, officers=1),
            StaffRow(unit="*", role=Role.LEADER, officers=1),
        ),
    )


def test_shared_certification_lets_a_neighbour_certify() -> None:
    rows = arrivals(60)  # all at ha-dong; duong-noi has no dossiers of its own
    alone = Staffing(name="alone", staff=(StaffRow(unit="*", role=Role.CERTIFIER, officers=1),))
    shared = Staffing(
        name="shared",
        staff=alone.staff,
        shared_certification=(("ha-dong", "duong-noi"),),
    )
    _, apart = run(small_scenario(), alone, rows)
    _, pooled = run(small_scenario(), shared, rows)
    assert {r.desk for r in pooled.desk_days} == {"ha-dong+duong-noi"}
    assert pooled.on_time_share is not None and apart.on_time_share is not None
    assert pooled.on_time_share > apart.on_time_share
    # Two certifiers' minutes on each working day: 2 x 8 h.
    assert pooled.desk_days[0].officer_minutes == 2 * 8 * 60


def test_a_saturday_session_adds_hours_but_no_deadline_moves() -> None:
    saturday = MONDAY + timedelta(days=5)
    session = {"units": ["ha-dong"], "roles": ["certifier"], "dates": [saturday]}
    staffing = staff(1, saturday_sessions=[session])
    outcome, report = run(small_scenario(days=7), staffing, arrivals(100))
    saturday_row = next(r for r in report.desk_days if r.day == saturday)
    assert saturday_row.officer_minutes == 3.5 * 60  # 08:00-11:30
    assert saturday_row.busy_minutes > 0
    # A copy certified on Saturday after its Friday-or-earlier appointment is still late.
    late_on_saturday = [
        d
        for d in outcome.dossiers
        if d.decided_minute is not None and int(d.decided_minute // DAY) == 5
    ]
    assert late_on_saturday and all(d.on_time is False for d in late_on_saturday)


def test_measured_times_are_working_time_from_the_claim() -> None:
    calendar = default_calendar()
    monday_9 = datetime.combine(MONDAY, time(9), HANOI)
    rows = [
        # Claimed at 10:00, certified at 10:12: 12 minutes of work.
        StepTimeRow(
            procedure_code=CERTIFIED_COPY,
            action="certify/refuse",
            since=monday_9,
            claimed_at=monday_9 + timedelta(hours=1),
            done_at=monday_9 + timedelta(hours=1, minutes=12),
        ),
        # Not claimed: from 16:50 to 08:08 the next day is 10 + 8 working minutes.
        StepTimeRow(
            procedure_code=CERTIFIED_COPY,
            action="certify/refuse",
            since=monday_9 + timedelta(hours=7, minutes=50),
            claimed_at=None,
            done_at=monday_9 + timedelta(hours=23, minutes=8),
        ),
        StepTimeRow(
            procedure_code=BIRTH,
            action="provide_supplement",
            since=monday_9,
            claimed_at=None,
            done_at=monday_9 + timedelta(days=1),
        ),
    ]
    outcomes = [
        ProcedureOutcomeRow(procedure_code=BIRTH, decided=10, refused=1, supplemented=2),
    ]
    measured = summarise(rows, outcomes, calendar)
    certify = measured.service[CERTIFIED_COPY][Step.CERTIFY]
    assert certify.minutes == pytest.approx((12 + 18) / 2)
    assert certify.source == "measured (2 tasks)"
    birth = measured.rates[BIRTH]
    assert (birth.supplement, birth.refusal) == (0.2, 0.1)
    assert birth.supplement_return_hours == 8.0  # Monday 9:00 to Tuesday 9:00


# --- the command ------------------------------------------------------------------------------
def test_ops_plan_prints_both_plans_and_writes_json_and_charts(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "plan",
            "--scenario",
            str(EXAMPLES / "three-wards-surge.json"),
            "--staffing",
            str(EXAMPLES / "staff-today.json"),
            "--compare",
            str(EXAMPLES / "staff-shared-certification.json"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "A: today's staff, B: certification shared" in done.stdout
    assert "duong-noi" in done.stdout
    document = json.loads((tmp_path / "plan.json").read_text())
    assert [p["staffing"] for p in document] == ["today's staff", "certification shared"]
    today, shared = document
    assert shared["on_time_share"] > today["on_time_share"]
    assert len(today["ward_days"]) == 5 * 12  # five wards, twelve days
    for chart in ("backlog.png", "late.png", "utilisation.png"):
        assert (tmp_path / chart).read_bytes()[:4] == b"\x89PNG"


def test_ops_plan_refuses_a_bad_file_naming_the_field(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", staffing_doc(staff=[{"unit": "*", "role": "certifier"}]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "plan",
            "--scenario",
            str(EXAMPLES / "three-wards-surge.json"),
            "--staffing",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "ops plan: bad.json: staff[0].officers: Field required" in done.stderr


def test_channel_counts_only_where_the_dossier_is_filed() -> None:
    rows = [
        ArrivalRow(
            date=MONDAY, ward="ha-dong", procedure=CERTIFIED_COPY, channel=channel, count=200
        )
        for channel in (DeliveryChannel.COUNTER, DeliveryChannel.ONLINE)
    ]
    outcome, _ = run(small_scenario(), staff(10), rows)
    counter = [d for d in outcome.dossiers if d.channel is DeliveryChannel.COUNTER]
    online = [d for d in outcome.dossiers if d.channel is DeliveryChannel.ONLINE]
    # Counter dossiers arrive in the counter's hours (08:00-12:00, 13:00-17:00); online ones
    # at any hour of the day.
    assert all(8 * 60 <= d.received_minute < 17 * 60 for d in counter)
    assert not any(12 * 60 <= d.received_minute < 13 * 60 for d in counter)
    assert any(d.received_minute < 8 * 60 or d.received_minute >= 17 * 60 for d in online)
