"""The legal clock's rules that are not the calendar itself."""

from __future__ import annotations

from schemas.catalogue import Deadline, SameDayDeadline, WorkingDaysDeadline

WORKING_DAY_SECONDS = 8 * 3600


def apology_lead_seconds(deadline: Deadline) -> int:
    """How long before the appointment a dossier that is not ready gets its apology slip.

    Decree 61/2018 art. 19: at least one working day before the deadline. A same-day
    certification cannot give a day's notice; it gets one working hour.
    """
    if isinstance(deadline, SameDayDeadline):
        return 3600
    return WORKING_DAY_SECONDS


def warning_lead_seconds(deadline: Deadline) -> int:
    """The unit is warned twice as early as the apology would fall due."""
    return 2 * apology_lead_seconds(deadline)


def apology_extension(deadline: Deadline) -> WorkingDaysDeadline:
    """The new appointment on the apology slip, counted from the old one.

    The decree leaves the new date to the unit; the engine proposes half the legal time
    again (at least one working day), which the slip states.
    """
    if isinstance(deadline, SameDayDeadline):
        return WorkingDaysDeadline(days=1)
    return WorkingDaysDeadline(days=max(1, (deadline.days + 1) // 2))
