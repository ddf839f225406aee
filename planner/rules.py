"""The engine's own rules, as the simulation calls them: never a copy.

The appointment, the apology mark and the apology slip's new appointment are the engine's
clock activities (activities/clock.py), called as the plain functions they are: the same code
the lanes run, over domain.calendar and domain.clock. The competent unit and the lane are
domain.routing's. Answers are cached: a surge files thousands of dossiers in the same minute
of the same day.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from activities import clock
from domain.catalogue import Catalogue
from domain.routing import Route, competent_unit_code, route
from schemas.catalogue import Deadline, Procedure, SupplementRule
from schemas.exchanges import DueRequest, MarksRequest, ShiftRequest


@lru_cache(maxsize=200_000)
def due_at(received_at: datetime, deadline: Deadline) -> datetime:
    """The appointment on the receipt (the engine's compute_due)."""
    return clock.compute_due(DueRequest(received_at=received_at, deadline=deadline))


@lru_cache(maxsize=200_000)
def apology_at(received_at: datetime, due: datetime, deadline: Deadline) -> datetime:
    """When a dossier not ready by then gets its apology slip (the engine's clock_marks, over
    domain.clock's apology rule)."""
    marks = clock.clock_marks(MarksRequest(received_at=received_at, due_at=due, deadline=deadline))
    return marks.apologize_at


@lru_cache(maxsize=50_000)
def apology_appointment(due: datetime, deadline: Deadline) -> datetime:
    """The new appointment on the apology slip (domain.clock.apology_extension)."""
    return clock.apology_appointment(DueRequest(received_at=due, deadline=deadline))


def resumed_due(
    procedure: Procedure, due: datetime, stopped_at: datetime, resumed_at: datetime
) -> datetime:
    """The appointment once the supplement is in, by the procedure's supplement rule: the
    engine's clock (workflows/clock.py, LegalClock.resume) picks one of these two activities."""
    if procedure.supplement_rule is SupplementRule.RESTART:
        return due_at(resumed_at, procedure.deadline)
    waited = clock.working_seconds_between(ShiftRequest(start=stopped_at, end=resumed_at))
    return clock.add_working_seconds(ShiftRequest(start=due, working_seconds=waited))


__all__ = [
    "apology_appointment",
    "apology_at",
    "clock",
    "competent_unit_code",
    "due_at",
    "resumed_due",
    "route",
    "routed",
]

_routes: dict[tuple[int, str, str], Route] = {}


def routed(catalogue: Catalogue, procedure_code: str, ward: str) -> Route:
    """Where a dossier filed at `ward` is decided, and on which lane (domain.routing)."""
    key = (id(catalogue), procedure_code, ward)
    found = _routes.get(key)
    if found is None:
        procedure = catalogue.procedure(procedure_code)
        receiving = catalogue.unit(ward)
        competent = catalogue.unit(competent_unit_code(procedure, receiving, None))
        found = _routes[key] = route(procedure, receiving, competent)
    return found
