"""The legal clock's rules that are not the calendar itself."""

from __future__ import annotations

from datetime import date, datetime

from domain.calendar import HANOI, WorkingCalendar
from schemas.catalogue import Deadline, SameDayDeadline, WorkingDaysDeadline

WORKING_DAY_SECONDS = 8 * 3600
# A same-day certification cannot get a day's notice (it is due the day it is received):
# the engine's own choice, which no text states (unconfirmed), is one working hour.
SAME_DAY_APOLOGY_LEAD_SECONDS = 3600


def apology_by(
    calendar: WorkingCalendar,
    due_at: datetime,
    deadline: Deadline,
    received_at: datetime | None = None,
) -> datetime:
    """The latest moment the apology slip (form 04) may go out for the appointment ``due_at``.

    Decree 61/2018 art. 19(9) (carried into Decree 118/2025; Circular 01/2018 form 04):
    "chậm nhất 01 ngày trước ngày hết hạn". Read in working time: the slip must leave on a
    working day before the due date, never on the due day itself, so at the latest at the
    close of working hours (17:00) of the last working day before the due date's day. A due
    date on Monday 30 Nov 2026 gives Friday 27 Nov 2026 17:00.

    A same-day certification (Decree 23/2015 art. 7) has no day before it: one working hour
    before the appointment (SAME_DAY_APOLOGY_LEAD_SECONDS, unconfirmed). So has a dossier
    received after that close (a one-working-day procedure received after 17:00 or on a day
    off): the day before had passed at receipt, and the same working hour applies rather
    than a slip at the moment of receipt (the engine's choice, unconfirmed).
    """
    one_hour_before = calendar.subtract_working_seconds(due_at, SAME_DAY_APOLOGY_LEAD_SECONDS)
    if isinstance(deadline, SameDayDeadline):
        return one_hour_before
    day_before = calendar.closing_on(_working_day_before(calendar, due_at))
    if received_at is not None and day_before <= received_at:
        return one_hour_before
    return day_before


def warn_at(calendar: WorkingCalendar, due_at: datetime, deadline: Deadline) -> datetime:
    """The unit's own reminder, not the decree's: one working day before the apology is due
    (the close of the second working day before the due date; one more working hour before
    it for a same-day certification)."""
    if isinstance(deadline, SameDayDeadline):
        return calendar.subtract_working_seconds(due_at, 2 * SAME_DAY_APOLOGY_LEAD_SECONDS)
    apology_day = _working_day_before(calendar, due_at)
    return calendar.closing_on(_working_day_before(calendar, calendar.closing_on(apology_day)))


def _working_day_before(calendar: WorkingCalendar, moment: datetime) -> date:
    day = moment.astimezone(HANOI).date()
    return calendar.previous_working_day(day)


def apology_extension(deadline: Deadline) -> WorkingDaysDeadline:
    """The new appointment on the apology slip, counted from the old one.

    The decree leaves the new date to the unit; the engine proposes half the legal time
    again (at least one working day), which the slip states.
    """
    if isinstance(deadline, SameDayDeadline):
        return WorkingDaysDeadline(days=1)
    return WorkingDaysDeadline(days=max(1, (deadline.days + 1) // 2))
