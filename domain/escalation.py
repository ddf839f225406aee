"""When a task waiting for an officer goes up to the unit's leader.

No text fixes it: one working day (8 working hours) idle on one step is where a ward's
leader wants to hear of it, well before the near-due warning of a 3-working-day procedure.
A unit sets its own in `domain/data/units.json` (`escalation_working_hours`): a certification
counter in a surge may want hours, a city department days.
"""

from __future__ import annotations

from schemas.catalogue import Unit

DEFAULT_WORKING_HOURS = 8


def threshold_hours(unit: Unit) -> int:
    """Working hours a task may wait at `unit` before it is escalated to the unit's leader."""
    return unit.escalation_working_hours or DEFAULT_WORKING_HOURS
