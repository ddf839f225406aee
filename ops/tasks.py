"""`python -m ops tasks` and `python -m ops sharing`: who holds an officer's task, and the surge
sharing of a ward's certification, from the command line, for a unit whose counter software
is down or a supervisor on the phone.

Each task command is the same step the API sends (services/dossiers.py `act`): the dossier's
lane checks it and records it in its timeline, hence in the audit chain, with the officer as
actor; the operator who typed it is recorded beside it, as an `operator_task_step` event in the
same chain (who, why, which step). A sharing is recorded with `ops:<operator>` as the one who
recorded it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ConfigDict, ValidationError

from bootstrap import connect
from config import settings
from domain.catalogue import default_catalogue
from ops.cli import AsJson, Operator, Reason, fail, print_json, show_rows
from ops.errors import OperatorError, check_action
from schemas.actions import (
    Acknowledgement,
    Action,
    Claim,
    Delegation,
    Reassignment,
    ReassignReason,
    Release,
    ReleaseReason,
    SharingClosing,
    SharingOpening,
    Step,
)
from schemas.dossier import AwaitedAction, Officer
from schemas.statuses import Role
from services import dossiers, sharing
from services.dossiers import ActionRefused, FilingError
from store import views
from store.audit import append_operator_event
from store.db import engine_for, writing
from store.migrate import migrate

tasks_app = typer.Typer(help="who holds a dossier's task: claim, release, reassign, delegate")
sharing_app = typer.Typer(help="surge sharing of a ward's certification with its neighbours")

T = TypeVar("T")

Code = Annotated[str, typer.Argument(help="the dossier code")]
OfficerId = Annotated[str, typer.Option("--officer", help="the officer who takes the step")]
OfficerRole = Annotated[Role, typer.Option("--role", help="the officer's role")]
OfficerUnit = Annotated[str, typer.Option("--unit", help="the officer's unit")]
OfficerName = Annotated[str | None, typer.Option("--name", help="full name (default: the id)")]
Task = Annotated[Action, typer.Option("--task", help="the awaited step, e.g. appraise")]
To = Annotated[str, typer.Option("--to", help="officer id of the one who gets the task")]
Note = Annotated[str, typer.Option("--note", help="a note for the timeline")]


class OperatorTaskStep(BaseModel):
    """The audit payload of a task step typed by an operator."""

    model_config = ConfigDict(frozen=True)

    operator: str
    reason: str
    dossier_code: str
    action: Action
    officer_id: str
    to: str | None = None


def _officer(officer_id: str, role: Role, unit: str, name: str | None) -> Officer:
    return Officer(officer_id=officer_id, full_name=name or officer_id, role=role.value, unit=unit)


def _run(name: str, work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except (OperatorError, ActionRefused, FilingError) as err:
        raise fail(f"ops {name}: {err}", 2 if isinstance(err, OperatorError) else 1) from err
    except ValueError as err:  # a step model refused an argument (pydantic names the field)
        raise fail(f"ops {name}: {err}", 2) from err


async def take_step(
    code: str, action: Action, step: Step, *, operator: str, reason: str
) -> Acknowledgement:
    """Send the step as the API does; once the dossier accepted it, the operator's event."""
    check_action(operator, reason)
    config = settings()
    await migrate(config.database_url)
    client = await connect(config)
    acknowledgement = await dossiers.act(client, config.database_url, code, action, step)
    to = getattr(step, "to", None)
    async with writing(config.database_url) as conn:
        await append_operator_event(
            conn,
            code=code,
            event_type="operator_task_step",
            operator=operator,
            payload=OperatorTaskStep(
                operator=operator,
                reason=reason,
                dossier_code=code,
                action=action,
                officer_id=step.officer.officer_id,
                to=to if isinstance(to, str) else None,
            ),
        )
    return acknowledgement


def _step(
    name: str, code: str, action: Action, build: Callable[[], Step], operator: str, reason: str
) -> None:
    """Build the step from the arguments (a bad one is named, exit 2), then take it."""
    try:
        step = build()
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise fail(f"ops {name}: {problems}", 2) from err
    acknowledgement = _run(name, take_step(code, action, step, operator=operator, reason=reason))
    print_json(acknowledgement)


@tasks_app.command("claim")
def claim_command(
    code: Code,
    officer: OfficerId,
    role: OfficerRole,
    unit: OfficerUnit,
    operator: Operator,
    reason: Reason,
    name: OfficerName = None,
) -> None:
    """The officer holds the task awaited from their role: nobody else takes it until they
    release it or the unit's leader reassigns it."""
    _step(
        "tasks claim",
        code,
        Action.CLAIM,
        lambda: Claim(officer=_officer(officer, role, unit, name)),
        operator,
        reason,
    )


@tasks_app.command("release")
def release_command(
    code: Code,
    officer: OfficerId,
    role: OfficerRole,
    unit: OfficerUnit,
    because: Annotated[ReleaseReason, typer.Option("--because", help="the named reason")],
    operator: Operator,
    reason: Reason,
    note: Note = "",
    name: OfficerName = None,
) -> None:
    """The holder gives the task back to the unit's inbox."""
    _step(
        "tasks release",
        code,
        Action.RELEASE,
        lambda: Release(officer=_officer(officer, role, unit, name), reason=because, note=note),
        operator,
        reason,
    )


@tasks_app.command("reassign")
def reassign_command(
    code: Code,
    task: Task,
    to: To,
    leader: Annotated[str, typer.Option("--leader", help="the unit's leader who moves it")],
    unit: OfficerUnit,
    because: Annotated[ReassignReason, typer.Option("--because", help="the named reason")],
    operator: Operator,
    reason: Reason,
    note: Note = "",
    name: OfficerName = None,
) -> None:
    """The unit's leader gives a task (claimed or not) to another officer of its role."""
    _step(
        "tasks reassign",
        code,
        Action.REASSIGN,
        lambda: Reassignment(
            officer=_officer(leader, Role.LEADER, unit, name),
            task=task,
            to=to,
            reason=because,
            note=note,
        ),
        operator,
        reason,
    )


@tasks_app.command("delegate")
def delegate_command(
    code: Code,
    task: Task,
    to: To,
    leader: Annotated[str, typer.Option("--leader", help="the unit's leader who delegates")],
    unit: OfficerUnit,
    because: Annotated[ReassignReason, typer.Option("--because", help="the named reason")],
    operator: Operator,
    reason: Reason,
    note: Note = "",
    name: OfficerName = None,
) -> None:
    """The unit's leader hands a task awaiting the leader to a deputy of the unit."""
    _step(
        "tasks delegate",
        code,
        Action.DELEGATE,
        lambda: Delegation(
            officer=_officer(leader, Role.LEADER, unit, name),
            task=task,
            to=to,
            reason=because,
            note=note,
        ),
        operator,
        reason,
    )


@tasks_app.command("show")
def show_command(code: Code, as_json: AsJson = False) -> None:
    """What the dossier awaits now: who holds each task, since when, delegated to whom, and
    when it was escalated to the unit's leader."""

    async def read() -> list[AwaitedAction]:
        config = settings()
        client = await connect(config)
        view = await dossiers.status(client, config.database_url, code)
        return [a for a in view.awaiting if a.action != Action.WITHDRAW.value]

    show_rows(_run("tasks show", read()), as_json, f"tasks of {code}", empty="none awaited")


@tasks_app.command("escalated")
def escalated_command(
    unit: Annotated[str, typer.Option("--unit", help="the unit whose leader looks")],
    role: Annotated[Role | None, typer.Option("--role", help="only this role's tasks")] = None,
    as_json: AsJson = False,
) -> None:
    """The unit's open tasks escalated to its leader (waiting past the unit's threshold),
    the earliest due first: the leader reassigns them, or delegates their own."""

    async def read() -> list[views.TaskRecord]:
        config = settings()
        await migrate(config.database_url)
        async with engine_for(config.database_url).connect() as conn:
            return await views.inbox(
                conn, unit=unit, role=role.value if role else None, limit=500, escalated=True
            )

    show_rows(_run("tasks escalated", read()), as_json, f"escalated at {unit}", empty="none")


# --- sharing ------------------------------------------------------------------------------------
Unit = Annotated[str, typer.Argument(help="the ward whose certification is shared")]
Neighbours = Annotated[
    str, typer.Option("--with", help="neighbouring units, comma-separated: cua-nam,ba-dinh")
]


def _units(value: str) -> list[str]:
    return [u.strip() for u in value.split(",") if u.strip()]


@sharing_app.command("open")
def open_command(
    unit: Unit,
    neighbours: Neighbours,
    until: Annotated[str, typer.Option("--until", help="ISO time with offset")],
    leader: Annotated[str, typer.Option("--leader", help="the unit's leader who opens it")],
    operator: Operator,
    reason: Reason,
    as_json: AsJson = False,
) -> None:
    """Open UNIT's certification lane to the neighbours' certifiers until --until."""
    check_action(operator, reason)
    try:
        ends = datetime.fromisoformat(until)
    except ValueError as err:
        raise fail(f"ops sharing open: --until: not an ISO time: {until}", 2) from err
    if ends.tzinfo is None:
        raise fail("ops sharing open: --until: give the offset, e.g. 2026-12-01T17:00+07:00", 2)

    async def run() -> list[views.SharingRecord]:
        config = settings()
        await migrate(config.database_url)
        opening = SharingOpening(
            officer=_officer(leader, Role.LEADER, unit, None),
            neighbours=_units(neighbours),
            until=ends,
            reason=reason,
        )
        return await sharing.open_sharing(
            config.database_url, default_catalogue(), unit, opening, f"ops:{operator}"
        )

    show_rows(_run("sharing open", run()), as_json, f"{unit} shares certification", empty="none")


@sharing_app.command("close")
def close_command(
    unit: Unit,
    leader: Annotated[str, typer.Option("--leader", help="the unit's leader who closes it")],
    operator: Operator,
    reason: Reason,
    neighbours: Annotated[
        str, typer.Option("--with", help="only these neighbours (default: every one)")
    ] = "",
    as_json: AsJson = False,
) -> None:
    """Close UNIT's open sharings of certification (with every neighbour, or those named)."""
    check_action(operator, reason)

    async def run() -> list[views.SharingRecord]:
        config = settings()
        await migrate(config.database_url)
        closing = SharingClosing(
            officer=_officer(leader, Role.LEADER, unit, None),
            neighbours=_units(neighbours),
            reason=f"{reason} (ops:{operator})",
        )
        return await sharing.close_sharing(config.database_url, unit, closing)

    show_rows(_run("sharing close", run()), as_json, f"{unit} closed", empty="none")


@sharing_app.command("list")
def list_command(unit: Unit, as_json: AsJson = False) -> None:
    """UNIT's sharings, given and received, newest first."""

    async def read() -> list[views.SharingRecord]:
        config = settings()
        await migrate(config.database_url)
        async with engine_for(config.database_url).connect() as conn:
            return await views.sharings(conn, unit=unit)

    show_rows(_run("sharing list", read()), as_json, f"sharings of {unit}", empty="none")
