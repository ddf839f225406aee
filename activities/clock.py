"""The legal clock as local activities.

The calendar's data (official days off, make-up Saturdays) changes when the government
announces a swap; recording each answer in history keeps running dossiers replayable after
such a change, and the appointment already promised to a citizen does not move.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from temporalio import activity

from domain.calendar import default_calendar
from domain.clock import apology_by, apology_extension, warn_at
from schemas.exchanges import ClockMarks, DueRequest, MarksRequest, ShiftRequest


@activity.defn(name="compute_due")
def compute_due(request: DueRequest) -> datetime:
    return default_calendar().due_at(request.received_at, request.deadline)


@activity.defn(name="clock_marks")
def clock_marks(request: MarksRequest) -> ClockMarks:
    """The marks of one appointment (domain.clock). A mark that falls before receipt (a short
    deadline) is kept at once: a slip due before the dossier came cannot wait."""
    calendar = default_calendar()
    return ClockMarks(
        warn_at=max(warn_at(calendar, request.due_at, request.deadline), request.received_at),
        apologize_at=max(
            apology_by(calendar, request.due_at, request.deadline, request.received_at),
            request.received_at,
        ),
    )


@activity.defn(name="working_seconds_between")
def working_seconds_between(request: ShiftRequest) -> int:
    assert request.end is not None
    return default_calendar().working_seconds_between(request.start, request.end)


@activity.defn(name="add_working_seconds")
def add_working_seconds(request: ShiftRequest) -> datetime:
    return default_calendar().add_working_seconds(request.start, request.working_seconds)


@activity.defn(name="apology_appointment")
def apology_appointment(request: DueRequest) -> datetime:
    """New appointment on the apology slip: counted from the old one (request.received_at)."""
    return default_calendar().due_at(request.received_at, apology_extension(request.deadline))


CLOCK_ACTIVITIES: list[Callable[..., Any]] = [
    compute_due,
    clock_marks,
    working_seconds_between,
    add_working_seconds,
    apology_appointment,
]
