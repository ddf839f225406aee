"""The demo of `starter.py demo`: sample dossiers filed, the officers played until each one
closes, one row per dossier, and the read model and the audit chains checked against them.

Two dossiers show officers covering for each other, worked through the HTTP API with a key per
unit as a counter's software works them: a task left waiting past its unit's threshold (the
lane's own timer, the dossier's clock fast-forwarded over the working day) goes up to the
leader, who reassigns it and later delegates the approval; and a ward in a surge shares a
certification task with a neighbouring ward's certifier.

The demo is a client like the counter software: under load the server may answer a call
with "unavailable", "deadline exceeded" or "resource exhausted", and the demo calls again
after a pause, a bounded number of times, instead of leaving its dossiers without officers.
A step the dossier refuses is an answer, not a fault: the officer looks at the dossier again.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from bootstrap import connect
from config import settings
from domain import escalation
from domain.calendar import HANOI, default_calendar
from domain.catalogue import default_catalogue
from embedded import embedded
from ops.audit import verify
from samples import document_title, sample_submission
from schemas.actions import (
    Action,
    Appraisal,
    Approval,
    Certification,
    Claim,
    Delegation,
    HandOver,
    IdentityCheckMethod,
    InPersonIdentityCheck,
    Reassignment,
    ReassignReason,
    Recommendation,
    Refusal,
    Release,
    ReleaseReason,
    SharingClosing,
    SharingOpening,
    Step,
    Supplement,
    SupplementRequest,
    WetSignature,
)
from schemas.dossier import (
    AwaitedAction,
    DossierSubmission,
    DossierView,
    Officer,
    SubmittedDocument,
)
from schemas.lifecycle import TimelineStep
from schemas.statuses import Role, Stage
from services import dossiers
from store import api_keys
from store.db import dispose_all, engine_for
from store.startup import prepare_database
from store.tables import dossiers as dossier_rows

# How often the demo's officers look at their dossiers.
OFFICER_POLL_SECONDS = 0.5
# The demo files as an integrating system would, with an Idempotency-Key per dossier: a
# submission retried after a lost answer finds the dossier the first attempt started.
DEMO_SYSTEM = "demo"

T = TypeVar("T")


class Backoff(BaseModel):
    model_config = ConfigDict(frozen=True)

    first_seconds: float = 0.2
    longest_seconds: float = 5.0
    attempts: int = 8  # about 16 s of waiting in all before the demo gives up


BACKOFF = Backoff()

# What a busy or briefly unreachable server answers: the call itself is sound.
TRANSIENT = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED}
)


class ApiBusy(Exception):
    """The HTTP API answered 503 (Temporal or the database not answering) or 429."""


async def patiently(call: Callable[[], Awaitable[T]], backoff: Backoff = BACKOFF) -> T:
    """`call`, again after a doubling pause while the server answers with a transient
    status; any other error, and the last transient one, is raised."""
    pause = backoff.first_seconds
    for attempt in range(1, backoff.attempts + 1):
        try:
            return await call()
        except RPCError as err:
            if err.status not in TRANSIENT or attempt == backoff.attempts:
                raise
        except ApiBusy:
            if attempt == backoff.attempts:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, backoff.longest_seconds)
    raise AssertionError("unreachable")


# --- the counter software: the HTTP API, a key per unit ------------------------------------------
@dataclass
class CounterSoftware:
    """How the showcase dossiers are worked: the API the one-stop-shop software calls, each
    step with the key of the officer's unit (a neighbour's certifier with its own ward's key,
    so the engine resolves the sharing as it does for any counter)."""

    http: httpx.AsyncClient
    keys: dict[str, str]

    async def call(self, unit: str, path: str, body: BaseModel) -> httpx.Response:
        answer = await self.http.post(
            path,
            content=body.model_dump_json(exclude_none=True),
            headers={
                "Authorization": f"Bearer {self.keys[unit]}",
                "Content-Type": "application/json",
            },
        )
        if answer.status_code in (429, 503):
            raise ApiBusy(f"{path}: {answer.status_code}")
        if answer.status_code == 409:
            raise dossiers.ActionRefused(answer.json().get("detail", answer.text))
        if answer.is_error:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text}")
        return answer

    async def act(self, code: str, action: Action, step: Step) -> None:
        await self.call(step.officer.unit, f"/v1/dossiers/{code}/actions/{action.value}", step)

    async def open_sharing(self, unit: str, opening: SharingOpening) -> int:
        answer = await self.call(unit, f"/v1/units/{unit}/certification-sharing", opening)
        grants: list[dict[str, Any]] = answer.json()["items"]
        return int(grants[0]["id"])

    async def close_sharing(self, unit: str, closing: SharingClosing) -> None:
        await self.call(unit, f"/v1/units/{unit}/certification-sharing/close", closing)


@asynccontextmanager
async def counter_software(
    api_url: str, database_url: str, units: list[str]
) -> AsyncIterator[CounterSoftware]:
    """A key for each of `units` (every role), issued for this run and revoked after it."""
    run = uuid.uuid4().hex[:8]
    issued: list[str] = []
    keys: dict[str, str] = {}
    try:
        for unit in units:
            system = f"{DEMO_SYSTEM}-{run}-{unit}"
            key = await api_keys.issue(database_url, system, [unit], [r.value for r in Role])
            issued.append(system)
            keys[unit] = key.key
        async with httpx.AsyncClient(base_url=api_url, timeout=60) as http:
            yield CounterSoftware(http=http, keys=keys)
    finally:
        for system in issued:
            await api_keys.revoke(database_url, system)


class WorkflowClock(Protocol):
    """A server that fast-forwards one workflow's clock (per-workflow time skipping)."""

    async def get_current_time(self, handle: WorkflowHandle[Any, Any]) -> datetime: ...

    async def fast_forward(
        self, handle: WorkflowHandle[Any, Any], duration: timedelta | float | None = None, /
    ) -> bool: ...


Act = Callable[[str, Action, Step], Awaitable[object]]


@dataclass
class Players:
    """What the demo's officers work with."""

    client: Client
    database_url: str
    counter: CounterSoftware
    # None on a server without time skipping (`make run`'s): the escalation is not shown.
    clock: WorkflowClock | None
    deadline: float
    refuse_next_signature: Callable[[], Awaitable[bool]]
    notes: list[str] = field(default_factory=list)

    def act_for(self, index: int) -> Act:
        """The showcase dossiers go through the HTTP API; the others through the engine's
        service, as the API itself calls it."""
        if index in (TASK_HOLDING, SURGE_SHARING):
            return self.counter.act
        return partial(dossiers.act, self.client, self.database_url)


# --- officers, played by the demo ----------------------------------------------------------------
def officer(role: str, unit: str) -> Officer:
    return Officer(officer_id=f"{unit}.{role}.1", full_name=f"{role} {unit}", role=role, unit=unit)


def demo_step(
    index: int, awaited: AwaitedAction, supplements_asked: bool, procedure_code: str = ""
) -> tuple[Action, Step]:
    """What the officer does: mostly approve; every 10th gets a supplement request first,
    every 9th is refused; a result the signing service refused is signed on paper."""
    me = officer(awaited.role, awaited.unit)
    action = Action(awaited.action)
    if action is Action.CHECK_IDENTITY_IN_PERSON:
        # The population registry is silent: the counter reads the card's chip.
        return action, InPersonIdentityCheck(officer=me, method=IdentityCheckMethod.CHIP_READ)
    if action is Action.RECORD_WET_SIGNATURE:
        scan = hashlib.sha256(f"scan of the signed result, {index}".encode()).hexdigest()
        return action, WetSignature(officer=me, signed_at=datetime.now(HANOI), scan_sha256=scan)
    if action is Action.APPRAISE and index % 10 == 4 and not supplements_asked:
        return Action.REQUEST_SUPPLEMENT, SupplementRequest(officer=me, missing=["identity_card"])
    if action is Action.APPRAISE:
        return action, Appraisal(officer=me, recommendation=Recommendation.APPROVE)
    if action in (Action.APPROVE, Action.CERTIFY) and index % 9 == 8:
        return Action.REFUSE, Refusal(officer=me, reason="Giấy tờ không hợp lệ theo quy định")
    if action is Action.APPROVE:
        return action, Approval(officer=me)
    if action is Action.CERTIFY:
        return action, Certification(officer=me)
    if action is Action.PROVIDE_SUPPLEMENT:
        # Everything the procedure requires, and the ID card the specialist asks for.
        required = (
            default_catalogue().procedure(procedure_code).required_documents
            if procedure_code
            else []
        )
        documents = {
            d.kind: SubmittedDocument(kind=d.kind, title=document_title(d.name)) for d in required
        }
        documents.setdefault("identity_card", SubmittedDocument(kind="identity_card", title="CCCD"))
        return action, Supplement(officer=me, documents=list(documents.values()))
    if action is Action.HAND_OVER:
        return action, HandOver(officer=me, rating=3)
    # The demo never withdraws; a step it does not know is a demo to extend, not a dossier
    # to give up.
    raise ValueError(f"the demo officer does not know the step {action.value}")


# The dossiers that show what the law asks beyond the common way (README, The demo).
INTAKE_SUPPLEMENT = 3  # filed without one of its documents: form 02 at the counter
CITY_CENTRE = 2  # a city-tier procedure received at the city's service centre
SECOND_REQUEST = 14  # a second supplement request, refused (Decree 61/2018 art. 19(4))
PAPER_SIGNATURE = 6  # the signing service refuses its result: signed on paper
CITY_CENTRE_UNIT = "trung-tam-phvhcc"
# Who holds a task: a claim that reserves, a release, the task left waiting past the unit's
# threshold and escalated, the leader's reassignment, then the leader's approval delegated to
# a deputy (a ward-tier dossier of 3 working days, decided where it was filed: the threshold,
# one working day, falls well before its due date).
TASK_HOLDING = 12
# A surge: the ward shares this certification dossier's lane with a neighbour, whose
# certifier certifies it for the ward; then the sharing is closed.
SURGE_SHARING = 1
SURGE_NEIGHBOUR = "hoan-kiem"


async def show_task_holding(
    players: Players, code: str, awaited: AwaitedAction, view: DossierView
) -> None:
    """A claim reserves the task: a colleague is refused. Released, it waits in the unit's
    inbox past the threshold, is escalated, and the leader reassigns it."""
    unit = awaited.unit
    holder = officer(awaited.role, unit)
    colleague = holder.model_copy(update={"officer_id": f"{unit}.{awaited.role}.2"})
    leader = officer("leader", unit)
    take = players.counter.act

    await patiently(partial(take, code, Action.CLAIM, Claim(officer=holder)))
    try:
        appraisal = Appraisal(officer=colleague, recommendation=Recommendation.APPROVE)
        await patiently(partial(take, code, Action.APPRAISE, appraisal))
        refused = "NOT refused"
    except dossiers.ActionRefused as err:
        refused = f"refused: {err}"
    release = Release(officer=holder, reason=ReleaseReason.ABSENT)
    await patiently(partial(take, code, Action.RELEASE, release))
    players.notes.append(
        f"claim: {code} appraise claimed by {holder.officer_id}; {colleague.officer_id} "
        f"{refused}; released by {holder.officer_id} (absent)"
    )
    escalated = await let_it_wait(players, code, awaited, view)
    reassignment = Reassignment(
        officer=leader,
        task=Action.APPRAISE,
        to=colleague.officer_id,
        reason=ReassignReason.ESCALATED if escalated else ReassignReason.ASSIGNMENT,
    )
    await patiently(partial(take, code, Action.REASSIGN, reassignment))
    players.notes.append(
        f"reassignment: {code} appraise reassigned by {leader.officer_id} to "
        f"{colleague.officer_id} ({reassignment.reason.value})"
    )


async def let_it_wait(
    players: Players, code: str, awaited: AwaitedAction, view: DossierView
) -> bool:
    """Nobody takes the task: the dossier's clock is fast-forwarded to just past the unit's
    threshold (working hours on the legal calendar), and the lane's own timer escalates it.
    True once the dossier's timeline says so."""
    if players.clock is None:
        players.notes.append(
            f"escalation: not shown for {code}: this Temporal server does not fast-forward a "
            "workflow's clock, and the threshold is working hours away"
        )
        return False
    hours = escalation.threshold_hours(default_catalogue().unit(awaited.unit))
    due = default_calendar().add_working_seconds(awaited.since, hours * 3600)
    # The workflow whose timer escalates: the dossier's own when its lane runs inside it.
    lane = players.client.get_workflow_handle(view.handled_by)
    now = await players.clock.get_current_time(lane)
    ahead = max(due - now, timedelta(0)) + timedelta(minutes=1)
    try:
        await asyncio.wait_for(
            players.clock.fast_forward(lane, ahead), max(players.deadline - time.monotonic(), 1)
        )
    except TimeoutError:
        players.notes.append(f"escalation: {code} NOT escalated: its clock did not move")
        return False
    while time.monotonic() < players.deadline:
        entries = await patiently(
            partial(dossiers.timeline, players.client, players.database_url, code)
        )
        step = next((e for e in entries if e.step == TimelineStep.ESCALATED.value), None)
        if step is not None:
            players.notes.append(
                f"escalation: {code} appraise waiting at {awaited.unit} since "
                f"{hanoi(awaited.since)}, escalated to its leader at {hanoi(step.at)} (over "
                f"{hours} working hours; the demo fast-forwards this dossier's clock)"
            )
            return True
        await asyncio.sleep(OFFICER_POLL_SECONDS)
    players.notes.append(f"escalation: {code} NOT escalated")
    return False


async def show_delegation(players: Players, code: str, awaited: AwaitedAction) -> None:
    """The leader is away: the approval goes to a deputy, who approves in the leader's place."""
    leader = officer("leader", awaited.unit)
    deputy = f"{awaited.unit}.leader.2"
    step = Delegation(officer=leader, task=Action.APPROVE, to=deputy, reason=ReassignReason.ABSENT)
    await patiently(partial(players.counter.act, code, Action.DELEGATE, step))
    players.notes.append(
        f"delegation: {code} approval delegated by {leader.officer_id} to {deputy}"
    )


async def open_surge_sharing(players: Players, unit: str) -> int:
    """The ward's leader opens its certification lane to the neighbour for an hour."""
    opening = SharingOpening(
        officer=officer("leader", unit),
        neighbours=[SURGE_NEIGHBOUR],
        until=datetime.now(HANOI) + timedelta(hours=1),
        reason="demo: a surge of certified copies",
    )
    return await patiently(partial(players.counter.open_sharing, unit, opening))


async def close_surge_sharing(players: Players, unit: str) -> None:
    closing = SharingClosing(officer=officer("leader", unit), reason="demo: surge over")
    await patiently(partial(players.counter.close_sharing, unit, closing))


async def play_officers(players: Players, index: int, code: str) -> DossierView:
    asked = supplied = tried_again = fault_set = shown = delegated = False
    grant: int | None = None
    act = players.act_for(index)
    notes = players.notes
    while True:
        view = await patiently(partial(dossiers.status, players.client, players.database_url, code))
        if view.stage is Stage.CLOSED or time.monotonic() > players.deadline:
            return view
        awaited = [a for a in view.awaiting if a.action != Action.WITHDRAW.value]
        if not awaited:
            await asyncio.sleep(OFFICER_POLL_SECONDS)
            continue
        task = awaited[0]
        if index == TASK_HOLDING and not shown and task.action == Action.APPRAISE.value:
            shown = True
            await show_task_holding(players, code, task, view)
            continue
        if index == TASK_HOLDING and task.action == Action.APPROVE.value and not delegated:
            delegated = True
            await show_delegation(players, code, task)
            continue
        if index == SURGE_SHARING and task.action == Action.CERTIFY.value:
            if grant is None:
                grant = await open_surge_sharing(players, task.unit)
            # The neighbour's certifier takes it, for the ward.
            task = task.model_copy(update={"unit": SURGE_NEIGHBOUR})
        action, step = demo_step(index, task, asked, view.procedure_code)
        if task.claimed_by and task.claimed_by != step.officer.officer_id:
            # The task is held (a claim, a reassignment, a delegation): its holder acts.
            holder = step.officer.model_copy(update={"officer_id": task.claimed_by})
            step = step.model_copy(update={"officer": holder})
        if action is Action.APPRAISE and supplied and index == SECOND_REQUEST and not tried_again:
            # The specialist would ask again: refused, the dossier went back once already.
            tried_again = True
            again = SupplementRequest(officer=step.officer, missing=["birth_certificate"])
            try:
                await patiently(partial(act, code, Action.REQUEST_SUPPLEMENT, again))
                notes.append(f"second supplement request: {code} NOT refused")
            except dossiers.ActionRefused as refused:
                notes.append(f"second supplement request refused: {code}: {refused}")
        if action is Action.APPROVE and index == PAPER_SIGNATURE and not fault_set:
            fault_set = True
            await players.refuse_next_signature()
        if action is Action.RECORD_WET_SIGNATURE:
            notes.append(
                f"paper signature: {code}, signing service refused; recorded by "
                f"{step.officer.officer_id}, the dossier goes on flagged"
            )
        asked = asked or action is Action.REQUEST_SUPPLEMENT
        try:
            await patiently(partial(act, code, action, step))
        except dossiers.ActionRefused:
            await asyncio.sleep(OFFICER_POLL_SECONDS)
            continue
        supplied = supplied or (asked and action is Action.PROVIDE_SUPPLEMENT)
        if grant is not None and action in (Action.CERTIFY, Action.REFUSE):
            await close_surge_sharing(players, view.competent_unit)
            notes.append(
                f"surge sharing: {code} certified for {view.competent_unit} by "
                f"{step.officer.officer_id} under its sharing #{grant} with {SURGE_NEIGHBOUR}, "
                "then closed"
            )


# --- the run and its report ------------------------------------------------------------------
def hanoi(value: datetime | None) -> str:
    return value.astimezone(HANOI).strftime("%Y-%m-%d %H:%M") if value else "-"


def demo_submission(index: int) -> DossierSubmission:
    """The sample dossier, with the demo's special cases."""
    submission = sample_submission(index, default_catalogue())
    if index == INTAKE_SUPPLEMENT:
        return submission.model_copy(update={"documents": submission.documents[1:]})
    if index == CITY_CENTRE:
        return submission.model_copy(update={"receiving_unit": CITY_CENTRE_UNIT})
    return submission


async def file_samples(client: Client, count: int, database_url: str) -> list[str]:
    """The codes of `count` sample dossiers, each filed once however often it is retried."""
    catalogue = default_catalogue()
    run = uuid.uuid4().hex[:12]
    codes = []
    for index in range(count):
        submission = demo_submission(index)
        key = dossiers.IdempotencyKey(
            system=DEMO_SYSTEM,
            key=f"{run}-{index}",
            body_digest=hashlib.sha256(submission.model_dump_json().encode()).hexdigest(),
        )
        receipt = await patiently(
            partial(dossiers.submit, client, submission, catalogue, database_url, key)
        )
        codes.append(receipt.code)
    return codes


class DemoRun(BaseModel):
    """The dossiers the demo filed, in order, and how many closed."""

    model_config = ConfigDict(frozen=True)

    codes: list[str]
    closed: int

    @property
    def exit_code(self) -> int:
        return 0 if self.closed == len(self.codes) else 1


async def run_demo(
    client: Client,
    count: int,
    database_url: str,
    timeout: float,
    signing_url: str,
    *,
    api_url: str,
    clock: WorkflowClock | None,
) -> DemoRun:
    codes = await file_samples(client, count, database_url)
    deadline = time.monotonic() + timeout

    async def refuse_next_signature() -> bool:
        """The signing simulator refuses the next signature, as for an officer without a
        usable certificate (a real signing service has no such switch: nothing happens)."""
        try:
            async with httpx.AsyncClient() as http:
                answer = await http.post(
                    f"{signing_url}/_sim/faults", json={"fail_next": 1, "status": 403}
                )
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    # The units the showcase dossiers' officers belong to, each with its counter's key.
    units = sorted(
        {demo_submission(i).receiving_unit for i in (TASK_HOLDING, SURGE_SHARING) if i < count}
        | {SURGE_NEIGHBOUR}
    )
    async with counter_software(api_url, database_url, units) as counter:
        players = Players(
            client=client,
            database_url=database_url,
            counter=counter,
            clock=clock,
            deadline=deadline,
            refuse_next_signature=refuse_next_signature,
        )
        views = await asyncio.gather(
            *(play_officers(players, i, code) for i, code in enumerate(codes))
        )
    notes = players.notes
    header = (
        "code",
        "procedure",
        "receiving",
        "competent",
        "lane",
        "status",
        "outcome",
        "due",
        "closed",
        "on time",
    )
    rows = [
        (
            v.code,
            v.procedure_code,
            v.receiving_unit,
            v.competent_unit,
            v.lane,
            v.status.value,
            v.outcome.value if v.outcome else "-",
            hanoi(v.clock.due_at if v.clock else None),
            hanoi(v.closed_at),
            {True: "yes", False: "no", None: "-"}[v.on_time],
        )
        for v in views
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    # What the special dossiers went through, as their own records tell it.
    if count > INTAKE_SUPPLEMENT:
        code = codes[INTAKE_SUPPLEMENT]
        steps = {e.step for e in await dossiers.timeline(client, database_url, code)}
        asked_at_intake = {
            TimelineStep.INTAKE_SUPPLEMENT_REQUESTED.value,
            TimelineStep.INTAKE_SUPPLEMENT_RECEIVED.value,
        }
        if asked_at_intake <= steps:
            notes.insert(
                0,
                f"intake supplement: {code} filed without one of its documents, asked for it "
                "on form 02, received when complete",
            )
    if count > CITY_CENTRE and views[CITY_CENTRE].receiving_unit == CITY_CENTRE_UNIT:
        notes.insert(0, f"city centre counter: {codes[CITY_CENTRE]} received at {CITY_CENTRE_UNIT}")
    for note in notes:
        print(note)
    await check_read_model(client, database_url, views)
    closed = sum(1 for v in views if v.stage is Stage.CLOSED)
    print(f"demo: {count} submitted, {closed} closed, {count - closed} stuck")
    return DemoRun(codes=codes, closed=closed)


def row_matches(row: Any, view: DossierView) -> bool:
    due_at = view.clock.due_at if view.clock else None
    return bool(
        row.status == view.status.value
        and row.closed_at == view.closed_at
        and row.on_time == view.on_time
        and row.due_at == due_at
    )


async def check_read_model(client: Client, database_url: str, views: list[DossierView]) -> None:
    """The `dossiers` table against the table above, and the audit chains against the
    histories: what a counter's list and an auditor would see of the same dossiers."""
    by_code = {v.code: v for v in views}
    async with engine_for(database_url).connect() as conn:
        # The last step's write trails the state the query shows by one local activity.
        for _ in range(50):
            rows = (
                await conn.execute(
                    select(dossier_rows).where(dossier_rows.c.code.in_(list(by_code)))
                )
            ).all()
            matching = [r for r in rows if row_matches(r, by_code[r.code])]
            if len(matching) == len(views):
                break
            await asyncio.sleep(0.1)
            await conn.rollback()
        print(f"read model: {len(matching)} of {len(views)} dossier rows match the table")
        events = 0
        for code in by_code:
            report = await patiently(partial(verify, conn, client, database_url, code))
            events += report.events
            if report.broken is not None:
                broken = report.broken
                print(f"audit: BROKEN at {broken.dossier_code} event {broken.seq}: {broken.reason}")
                return
        print(f"audit: {len(views)} dossiers and {events} events verified")


async def demo(count: int, timeout: float) -> int:
    """Against TEMPORAL_ADDRESS when it is set, else on an embedded stack of its own."""
    config = settings()
    try:
        if config.temporal_address:
            # `make run`'s server and API: its server does not skip time.
            await prepare_database(config.database_url)
            client = await connect(config)
            signing = config.url("signing")
            api_url = f"http://127.0.0.1:{config.api_port}"
            run = await run_demo(
                client, count, config.database_url, timeout, signing, api_url=api_url, clock=None
            )
            return run.exit_code
        with tempfile.TemporaryDirectory(prefix="dossier-demo-") as tmp:
            async with embedded(Path(tmp)) as stack:
                run = await run_demo(
                    stack.client,
                    count,
                    stack.settings.database_url,
                    timeout,
                    stack.settings.url("signing"),
                    api_url=stack.api_url,
                    clock=stack.time_skipper,
                )
                return run.exit_code
    finally:
        # Closed before the interpreter exits: a database thread left running then can
        # abort the process after the report.
        await dispose_all()
