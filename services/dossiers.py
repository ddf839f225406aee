"""Submit a dossier, act on it, read it: one way each, over the Temporal client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain import lanes
from domain.calendar import HANOI, default_calendar
from domain.catalogue import Catalogue, CatalogueError
from domain.codes import dossier_code, sequence_scope
from domain.routing import RoutingError, check_receiving_unit, competent_unit_code, route
from schemas.actions import Acknowledgement, Action, SharingGrant, Step
from schemas.dossier import (
    DossierFiling,
    DossierSubmission,
    DossierView,
    Officer,
    TimelineEntry,
)
from schemas.lifecycle import HOLDER, Holder
from schemas.statuses import DossierStatus, Role, Stage
from store import views
from store.db import engine_for
from store.idempotency import claim
from store.sequences import next_value
from workflows import search_attributes as sa
from workflows.dossier import DossierWorkflow

# A counter may record a dossier taken during an outage of its own software, but not one
# from another month, and never one from the future.
MAX_BACKDATING = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=5)
NOT_READY_RETRIES = 10
# What the SDK says of an Update the workflow has no handler for.
UNKNOWN_STEP = "expected but not found"
T = TypeVar("T")


class FilingError(ValueError):
    """A submission that cannot be filed: names the field and the rule it breaks."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class ActionRefused(ValueError):
    """A human step the dossier refused, with the validator's reason."""


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    received_at: datetime
    due_at: datetime
    status: DossierStatus


def prepare_filing(
    submission: DossierSubmission, catalogue: Catalogue, now: datetime, code: str = ""
) -> DossierFiling:
    """Resolve a submission against the catalogue; refuse it before anything starts."""
    try:
        procedure = catalogue.procedure(submission.procedure_code)
    except CatalogueError as err:
        raise FilingError("procedure_code", str(err)) from err
    try:
        receiving = catalogue.unit(submission.receiving_unit)
    except CatalogueError as err:
        raise FilingError("receiving_unit", str(err)) from err
    if submission.delivery_channel not in procedure.delivery_channels:
        allowed = ", ".join(c.value for c in procedure.delivery_channels)
        raise FilingError(
            "delivery_channel", f"procedure {procedure.code} returns results by {allowed} only"
        )
    received_at = submission.received_at or now
    if received_at > now + CLOCK_SKEW:
        raise FilingError("received_at", "must not be in the future")
    if received_at < now - MAX_BACKDATING:
        raise FilingError("received_at", f"must be within the last {MAX_BACKDATING.days} days")
    try:
        check_receiving_unit(procedure, receiving)
        competent_code = competent_unit_code(procedure, receiving, submission.competent_unit)
        competent = catalogue.unit(competent_code)
        route(procedure, receiving, competent)
    except RoutingError as err:
        raise FilingError(err.field, err.rule) from err
    except CatalogueError as err:
        raise FilingError("competent_unit", str(err)) from err
    return DossierFiling(
        code=code,
        submission=submission,
        procedure=procedure,
        receiving_unit=receiving,
        competent_unit=competent,
        received_at=received_at.astimezone(HANOI),
    )


class IdempotencyKey(BaseModel):
    """An integrating system's Idempotency-Key, with the digest of the body it came with."""

    model_config = ConfigDict(frozen=True)

    system: str
    key: str
    body_digest: str


class IdempotencyConflict(ValueError):
    """The same Idempotency-Key came with a different body."""


async def submit(
    client: Client,
    submission: DossierSubmission,
    catalogue: Catalogue,
    database_url: str,
    idempotency: IdempotencyKey | None = None,
    now: datetime | None = None,
) -> Receipt:
    """File a dossier: code, appointment, workflow started. With an idempotency key, a retry
    returns the first answer and never starts a second workflow. `now` is the counter's
    present (the real one unless stated)."""
    now = now or datetime.now(HANOI)
    filing = prepare_filing(submission, catalogue, now)
    receipt_day = filing.received_at.date()
    agency = filing.receiving_unit.agency_code
    due_at = default_calendar().due_at(filing.received_at, filing.procedure.deadline)
    if idempotency is None:
        sequence = await next_value(database_url, sequence_scope(agency, receipt_day))
        code = dossier_code(agency, receipt_day, sequence)
    else:
        claimed = await claim(
            database_url,
            system=idempotency.system,
            key=idempotency.key,
            body_digest=idempotency.body_digest,
            sequence_scope=sequence_scope(agency, receipt_day),
            code_for=lambda n: dossier_code(agency, receipt_day, n),
            received_at=filing.received_at,
            due_at=due_at,
        )
        if claimed.body_digest != idempotency.body_digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency.key!r} was used with another body "
                f"(dossier {claimed.dossier_code})"
            )
        code = claimed.dossier_code
        # The first request's receipt time, so the filing (and its appointment) is the same.
        filing = prepare_filing(
            submission.model_copy(update={"received_at": claimed.received_at}), catalogue, now
        )
        due_at = claimed.due_at.astimezone(HANOI)
    filing = filing.model_copy(update={"code": code})
    await _start(client, filing, due_at, reuse=idempotency is not None)
    return Receipt(
        code=filing.code,
        received_at=filing.received_at,
        due_at=due_at,
        status=DossierStatus.SUBMITTED,
    )


async def _start(client: Client, filing: DossierFiling, due_at: datetime, *, reuse: bool) -> None:
    lane = route(filing.procedure, filing.receiving_unit, filing.competent_unit).lane
    try:
        await _start_workflow(client, filing, due_at, lane, reuse=reuse)
    except WorkflowAlreadyStartedError:
        if not reuse:
            raise
        # The dossier the first request started has already closed: it is the answer.


async def _start_workflow(
    client: Client, filing: DossierFiling, due_at: datetime, lane: str, *, reuse: bool
) -> None:
    await client.start_workflow(
        DossierWorkflow.run,
        filing,
        id=filing.code,
        # On its lane's queue from intake to return: the lane runs inside the dossier, so a
        # surge of certifications scales on `--queues certification` workers alone. Dossiers
        # begun before run on `intake`, their lanes as children on the lane's queue.
        task_queue=lane,
        # A retried idempotent request finds the workflow the first one started.
        id_conflict_policy=(
            WorkflowIDConflictPolicy.USE_EXISTING if reuse else WorkflowIDConflictPolicy.FAIL
        ),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.PROCEDURE, filing.procedure.code),
                SearchAttributePair(sa.RECEIVING_UNIT, filing.receiving_unit.code),
                SearchAttributePair(sa.COMPETENT_UNIT, filing.competent_unit.code),
                SearchAttributePair(sa.TIER, filing.procedure.tier.value),
                SearchAttributePair(sa.LANE, lane),
                SearchAttributePair(sa.STATUS, DossierStatus.SUBMITTED.value),
                SearchAttributePair(sa.DUE_AT, due_at),
                SearchAttributePair(sa.OVERDUE, False),
            ]
        ),
    )


async def status(client: Client, database_url: str, code: str) -> DossierView:
    """The dossier's status from the read model, open or closed: each step writes it in the
    transaction of its audit event, so no worker replays the workflow to answer a read, and
    Temporal may have deleted a closed dossier's history. A dossier filed a moment ago whose
    first step is not written yet is asked of its workflow."""
    recorded = await _recorded(database_url, code)
    if recorded is not None:
        return recorded.view
    return await live_status(client, code)


async def timeline(client: Client, database_url: str, code: str) -> list[TimelineEntry]:
    """Every step of the dossier, from where `status` reads it."""
    recorded = await _recorded(database_url, code)
    if recorded is not None:
        return recorded.timeline
    return await live_timeline(client, code)


async def live_status(client: Client, code: str) -> DossierView:
    """What the dossier's workflow says now: where the next step is taken. The read model
    trails it by the step being written (one local activity), and between two steps its
    `handled_by` may still name the dossier's workflow while the lane has taken over: the
    routing of an officer's step asks the workflow instead."""
    return await _query(client, code, DossierWorkflow.status)


async def live_timeline(client: Client, code: str) -> list[TimelineEntry]:
    return await _query(client, code, DossierWorkflow.timeline)


async def _recorded(database_url: str, code: str) -> views.DossierSnapshot | None:
    async with engine_for(database_url).connect() as conn:
        return await views.snapshot(conn, code)


async def _query(client: Client, code: str, query: Callable[[DossierWorkflow], T]) -> T:
    """A dossier filed a moment ago has not run its first workflow task yet, and the server
    answers a query with FAILED_PRECONDITION until it has: ask again in a moment."""
    handle = client.get_workflow_handle(code)
    for attempt in range(NOT_READY_RETRIES):
        try:
            return await handle.query(query)
        except RPCError as err:
            if err.status is not RPCStatusCode.FAILED_PRECONDITION:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    return await handle.query(query)


class Whereabouts(BaseModel):
    """Where a dossier is, from the server's search attributes (no worker is asked), or from
    its record once it closed."""

    model_config = ConfigDict(frozen=True)

    code: str
    receiving_unit: str
    competent_unit: str
    lane: str
    # Why no step can be taken any more: the dossier closed (said to whoever may see it).
    closed: str | None = None
    # The lane runs inside the dossier workflow, which takes the lane's steps itself.
    lane_inside: bool = False


def closed_reason(view: DossierView) -> str:
    when = f" on {view.closed_at.astimezone(HANOI):%Y-%m-%d %H:%M}" if view.closed_at else ""
    outcome = view.outcome.value if view.outcome else view.status.value
    return f"dossier {view.code} closed{when} ({outcome}): no step can be taken on it"


async def whereabouts(client: Client, database_url: str, code: str) -> Whereabouts:
    """Raises RPCError NOT_FOUND for an unknown code."""
    recorded = await _recorded(database_url, code)
    if recorded is not None and recorded.closed:
        view = recorded.view
        return Whereabouts(
            code=code,
            receiving_unit=view.receiving_unit,
            competent_unit=view.competent_unit,
            lane=view.lane,
            closed=closed_reason(view),
        )
    attributes = (await client.get_workflow_handle(code).describe()).typed_search_attributes
    return Whereabouts(
        code=code,
        receiving_unit=attributes.get(sa.RECEIVING_UNIT) or "",
        competent_unit=attributes.get(sa.COMPETENT_UNIT) or "",
        lane=attributes.get(sa.LANE) or lanes.INTAKE,
        lane_inside=recorded is not None and lane_inside(recorded.view),
    )


def lane_inside(view: DossierView) -> bool:
    """Processing, and the dossier workflow itself takes the steps: its lane runs inside it
    (a lane child takes them under its own id)."""
    return view.stage is Stage.PROCESSING and view.handled_by == view.code


async def _holder(client: Client, place: Whereabouts, action: Action) -> str:
    """The workflow that takes the step: the dossier's at intake and return, its lane's
    while the competent unit works on it."""
    holder = HOLDER[action]
    if holder is Holder.DOSSIER:
        return place.code
    if holder is Holder.CURRENT:
        # Intake, lane or past the decision: only the dossier knows, so ask it (its workflow,
        # not the read model, which may not show yet that a lane has taken the dossier).
        return (await live_status(client, place.code)).handled_by
    if place.lane_inside:
        return place.code
    return lanes.lane_workflow_id(place.code, place.lane)


async def sharing_grant(
    database_url: str, dossier_unit: str, officer: Officer, now: datetime | None = None
) -> SharingGrant | None:
    """The open sharing under which `officer`, a certifier of another unit, may act on
    `dossier_unit`'s certification tasks (services/sharing.py); None at their own unit."""
    if officer.unit == dossier_unit or officer.role != Role.CERTIFIER.value:
        return None
    async with engine_for(database_url).connect() as conn:
        record = await views.sharing_grant(
            conn, unit=dossier_unit, neighbour=officer.unit, at=now or datetime.now(HANOI)
        )
    return None if record is None else record.grant()


async def act(
    client: Client,
    database_url: str,
    code: str,
    action: Action,
    step: Step,
    place: Whereabouts | None = None,
) -> Acknowledgement:
    """Send a human step to the workflow that holds the dossier now. A closed dossier refuses
    it with when and how it closed: a counter retrying a hand-over after a timeout learns
    that it was done."""
    place = place or await whereabouts(client, database_url, code)
    if place.closed is not None:
        raise ActionRefused(place.closed)
    # The grant is the engine's to set, never the client's: the lane checks what it carries.
    grant = await sharing_grant(database_url, place.competent_unit, step.officer)
    step = step.model_copy(update={"acting_for": grant})
    for attempt in range(NOT_READY_RETRIES + 1):
        holder = await _holder(client, place, action)
        handle = client.get_workflow_handle(holder)
        try:
            acknowledgement: Acknowledgement = await handle.execute_update(
                action.value, step, result_type=Acknowledgement
            )
            return acknowledgement
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = getattr(cause, "message", None) or str(cause)
            if UNKNOWN_STEP in message:
                # The workflow holding the dossier has no such step (certify sent to a
                # dossier a ward processes): say what the dossier is and awaits instead.
                view = await live_status(client, code)
                awaited = ", ".join(sorted({a.action for a in view.awaiting})) or "nothing"
                raise ActionRefused(
                    f"{action.value} is not a step of dossier {code} in lane {view.lane}: it "
                    f"is {view.status.value}, awaiting {awaited}"
                ) from err
            raise ActionRefused(message) from err
        except RPCError as err:
            # The workflow's last task failed and is being retried (a worker restart, an
            # overloaded worker), or the lane is about to start: the step can be taken in a
            # moment.
            if err.status is RPCStatusCode.NOT_FOUND:
                if holder == code:
                    # The dossier closed while the step was on its way (a second hand-over
                    # sent as the first one closed it): say when and how, as for any step
                    # sent after the close.
                    closed = (await whereabouts(client, database_url, code)).closed
                    if closed is not None:
                        raise ActionRefused(closed) from err
                    raise
                # No running lane: not yet started, or already finished.
                view = await live_status(client, code)
                if view.handled_by != holder:
                    raise ActionRefused(
                        f"{action.value} is not possible now: dossier {code} is "
                        f"{view.status.value} at stage {view.stage.value}"
                    ) from err
            not_ready = err.status in (RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.NOT_FOUND)
            if not_ready and attempt < NOT_READY_RETRIES:
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            # The lane finished between the status read and the update: the step is gone.
            raise ActionRefused(f"{action.value}: dossier {code} moved on ({err.message})") from err
    raise AssertionError("unreachable")
