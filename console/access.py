"""Who may see what in the console.

- city leader: every dashboard, unit and dossier, read-only; the operators' page read-only;
- unit leader: the dashboard, unit view and dossiers of their own unit only (a dossier is a
  unit's when it received or decides it), by URL and by search;
- operator: the operators' page with retry and reset, and the dossiers' pages;
- auditor: everything read-only, the downloads and the console's own audit record.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.console import ConsoleRole
from store.console_users import ConsoleUser

CITY, UNIT, OPERATOR, AUDITOR = (
    ConsoleRole.CITY_LEADER,
    ConsoleRole.UNIT_LEADER,
    ConsoleRole.OPERATOR,
    ConsoleRole.AUDITOR,
)


class Forbidden(Exception):
    """The account may not see or do this."""


def sees_dashboard(user: ConsoleUser) -> bool:
    return user.has(CITY, UNIT, AUDITOR)


def sees_operations(user: ConsoleUser) -> bool:
    return user.has(OPERATOR, AUDITOR, CITY)


def acts_on_dossiers(user: ConsoleUser) -> bool:
    return user.has(OPERATOR)


def downloads(user: ConsoleUser) -> bool:
    return user.has(AUDITOR)


def reads_console_audit(user: ConsoleUser) -> bool:
    return user.has(AUDITOR)


def sees_dossiers(user: ConsoleUser) -> bool:
    return user.has(CITY, UNIT, OPERATOR, AUDITOR)


def own_units(user: ConsoleUser) -> tuple[str, ...] | None:
    """The units whose dossiers the account may see; None for every unit."""
    if user.has(CITY, OPERATOR, AUDITOR):
        return None
    return (user.unit,) if user.unit else ()


def sees_units(user: ConsoleUser, units: Iterable[str]) -> bool:
    """Whether the account may see a dossier of these units (receiving, competent)."""
    mine = own_units(user)
    return mine is None or any(unit in mine for unit in units)


def require(allowed: bool) -> None:
    if not allowed:
        raise Forbidden()
