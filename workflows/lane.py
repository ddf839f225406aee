"""What both processing lanes share: human steps, progress reports and the legal clock.

A lane owns the dossier while the competent unit works on it, so it owns the legal clock too
(workflows/clock.py): the appointment can only move (supplement, apology) while the unit holds
the dossier. Dossiers begun before `lane-in-dossier` run their lane as a child workflow on the
lane's task queue, which signals each step to the dossier; newer ones run it inside the
dossier workflow (`run_inside`), which takes the lane's steps and records its reports at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from schemas.actions import (
    Acknowledgement,
    Action,
    Claim,
    Delegation,
    Reassignment,
    Refusal,
    Release,
    SharingGrant,
    Step,
    WetSignature,
    Withdrawal,
)
from schemas.dossier import AwaitedAction, DossierFiling, IntakeChannel, Officer, TimelineEntry
from schemas.exchanges import (
    FeeRequest,
    IssuedDocument,
    ResultKind,
    ShiftRequest,
    WetInkSignature,
)
from schemas.lanes import LaneJob, LaneResult, ProgressEvent
from schemas.lifecycle import PROGRESS_SIGNAL, TimelineStep
from schemas.statuses import DossierStatus, Outcome, Role
from workflows import documents, notices
from workflows.clock import LegalClock
from workflows.policies import (
    LOCAL_CALL,
    REGISTRY_CALL,
    TRANSIENT,
    is_rejection,
    rejection_message,
)
from workflows.steps import HumanSteps, check_holder, shared_with

with workflow.unsafe.imports_passed_through():
    from activities import clock
    from activities.payment import PaymentActivities
    from domain import escalation, lanes
    from domain.calendar import HANOI
    from domain.catalogue import billable_pages, fee_vnd

SYSTEM = "system"
MIN_WAIT = timedelta(seconds=1)
# A task waiting past its unit's threshold goes up to the unit's leader (a durable timer per
# awaited step); dossiers begun before it keep their old command sequence.
TASK_ESCALATION = "task-escalation"
# Online filings of procedures whose text waives the fee for them pay nothing.
ONLINE_FEE_EXEMPTION = "online-fee-exemption"
# A signature the signing service refuses is made on paper instead of stopping the dossier.
WET_INK_SIGNATURE = "wet-ink-signature"
# Inside the dossier workflow the clock's first local activity would run beside the dossier's
# own, and on replay their results may come back in another order than they did: the clock's
# marks are known before the lane's first command.
CLOCK_MARKS_FIRST = "clock-marks-first"

# How a lane run inside the dossier workflow hands it a report, under the dossier's lock.
Deliver = Callable[[ProgressEvent], Awaitable[None]]
# An update the lane takes: its name, handler and validator.
LaneUpdate = tuple[str, Callable[..., Any], Callable[..., None]]


def waived_online(filing: DossierFiling) -> bool:
    """The fee is waived: filed online under a procedure whose text exempts online filings.
    Behind a patch marker, so dossiers that asked for the fee before the rule keep asking."""
    return (
        filing.procedure.online_fee_exempt
        and filing.submission.intake_channel is IntakeChannel.ONLINE
        and workflow.patched(ONLINE_FEE_EXEMPTION)
    )


class LaneWorkflow(HumanSteps):
    @workflow.init
    def __init__(self, job: LaneJob) -> None:
        self.filing: DossierFiling = job.filing
        self._status = DossierStatus.IN_PROCESSING
        self._awaiting: list[AwaitedAction] = []
        # What the dossier last told its parent it awaits: the clock's own events repeat it,
        # so a warning between an officer's step and its report does not close the task.
        self._reported: list[AwaitedAction] = []
        self._steps: dict[Action, Step] = {}
        self._withdrawal: Withdrawal | None = None
        self._decided = False
        self._lock = asyncio.Lock()
        self.clock = LegalClock(job.filing, job.clock, self._lock, self._report_mark)
        # Inside the dossier workflow: the lane's name and where its reports go.
        self._lane: str | None = None
        self._deliver: Deliver | None = None

    def run_inside(self, lane: str, lock: asyncio.Lock, deliver: Deliver) -> None:
        """The lane runs inside the dossier workflow: one lock for the dossier, its lane and
        the clock, so the lane's reports and the dossier's own steps stay in order."""
        self._lane = lane
        self._deliver = deliver
        self._lock = lock
        self.clock = LegalClock(self.filing, self.clock.state, lock, self._report_mark)

    def updates(self) -> list[LaneUpdate]:
        """The steps the lane takes while it holds the dossier, with their validators: a
        dossier workflow running the lane inside takes them in its place."""
        return [
            (Action.WITHDRAW.value, self.withdraw, self._validate_withdraw),
            (Action.REFUSE.value, self.refuse, self._validate_refuse),
            (
                Action.RECORD_WET_SIGNATURE.value,
                self.record_wet_signature,
                self._validate_record_wet_signature,
            ),
            (Action.CLAIM.value, self.claim, self._validate_claim),
            (Action.RELEASE.value, self.release, self._validate_release),
            (Action.REASSIGN.value, self.reassign, self._validate_reassign),
            (Action.DELEGATE.value, self.delegate, self._validate_delegate),
        ]

    async def _begin(self) -> None:
        """The unit takes the dossier: counted per lane and unit, and its clock runs."""
        lane = self._lane or workflow.info().task_queue
        workflow.metric_meter().create_counter(
            "dossiers_in_lane", "Dossiers that entered a processing lane"
        ).add(1, {"lane": lane, "unit": self.filing.competent_unit.code})
        if self._lane is not None and workflow.patched(CLOCK_MARKS_FIRST):
            await self.clock.prepare()
        self.clock.start()

    async def _finish(
        self,
        outcome: Outcome,
        *,
        reason: str | None = None,
        documents: list[IssuedDocument] | None = None,
        fee_paid_vnd: int = 0,
    ) -> LaneResult:
        self.clock.close()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return LaneResult(
            outcome=outcome,
            clock=self.clock.state,
            decided_at=workflow.now(),
            reason=reason,
            documents=documents or [],
            fee_paid_vnd=fee_paid_vnd,
        )

    async def _refused(self) -> LaneResult:
        """Circular 01/2018 form 03: the refusal notice, signed, states the reason."""
        refusal = self._take(Action.REFUSE)
        assert isinstance(refusal, Refusal)
        notice = await self._issue_signed(
            ResultKind.REFUSAL_NOTICE, refusal.officer, refusal.reason, e_sign=True
        )
        return await self._finish(Outcome.REFUSED, reason=refusal.reason, documents=[notice])

    async def _withdrawn(self) -> LaneResult:
        assert self._withdrawal is not None
        return await self._finish(Outcome.WITHDRAWN, reason=self._withdrawal.reason)

    # --- signing, on paper when it cannot be done electronically -----------------------------
    async def _issue_signed(
        self, kind: ResultKind, officer: Officer, text: str, *, e_sign: bool
    ) -> IssuedDocument:
        """The document, e-signed where the procedure says so. When the signing service
        refuses (or the officer has no usable certificate) the result is signed on paper:
        the leader records the wet-ink signature and the dossier goes on, flagged in its
        timeline and on the document; a missing e-signature never stops a dossier."""
        try:
            return await documents.issue(self.filing, kind, officer, text, e_sign=e_sign)
        except ActivityError as err:
            if not (e_sign and is_rejection(err)) or not workflow.patched(WET_INK_SIGNATURE):
                raise
            why = rejection_message(err)
        unsigned = await documents.issue(self.filing, kind, officer, text, e_sign=False)
        # The one who decided signs on paper: the leader, or the certifier in certification.
        await self._await_step(
            [(Action.RECORD_WET_SIGNATURE, Role(officer.role), self.filing.competent_unit.code)],
            status=self._status,
            step=TimelineStep.E_SIGNATURE_REFUSED,
            note=f"{kind.value} {unsigned.sha256[:12]} to be signed on paper: {why}",
        )
        step = self._take(Action.RECORD_WET_SIGNATURE)
        assert isinstance(step, WetSignature)
        wet_ink = WetInkSignature(
            signed_by=step.officer,
            signed_at=step.signed_at,
            scan_sha256=step.scan_sha256,
            why=why,
        )
        await self._report(
            self._status,
            TimelineStep.SIGNED_ON_PAPER,
            step.officer.officer_id,
            f"{kind.value} signed on paper at {step.signed_at.isoformat()}; "
            f"scan sha256 {step.scan_sha256}",
        )
        return unsigned.model_copy(update={"wet_ink": wet_ink})

    @workflow.update
    def record_wet_signature(self, step: WetSignature) -> Acknowledgement:
        return self._accept(Action.RECORD_WET_SIGNATURE, step)

    @record_wet_signature.validator
    def _validate_record_wet_signature(self, step: WetSignature) -> None:
        self._check(Action.RECORD_WET_SIGNATURE, step.officer, step.acting_for)
        if step.signed_at > workflow.now():
            raise ValueError("signed_at: must not be in the future")

    # --- progress reports to the dossier workflow -----------------------------------------
    async def _report(
        self,
        status: DossierStatus,
        step: str,
        actor: str,
        note: str = "",
        at: datetime | None = None,
    ) -> None:
        async with self._lock:
            await self._send(status, step, actor, note, at)

    async def _send(
        self,
        status: DossierStatus,
        step: str,
        actor: str,
        note: str,
        at: datetime | None = None,
        awaiting: list[AwaitedAction] | None = None,
    ) -> None:
        self._status = status
        self._reported = list(self._awaiting if awaiting is None else awaiting)
        event = ProgressEvent(
            entry=TimelineEntry(
                at=at or workflow.now(),
                status=status,
                step=step,
                actor=actor,
                note=note,
                due_at=self.clock.state.due_at,
                awaiting=self._reported,
            ),
            clock=self.clock.state,
        )
        if self._deliver is not None:
            # A copy, as a signal would carry: a later claim or escalation of an awaited task
            # must not rewrite the steps already in the timeline.
            await self._deliver(event.model_copy(deep=True))
            return
        parent = workflow.info().parent
        assert parent is not None, "a lane runs as a child of its dossier"
        await workflow.get_external_workflow_handle(parent.workflow_id).signal(
            PROGRESS_SIGNAL, event
        )

    async def _report_mark(self, step: TimelineStep, note: str) -> None:
        """A mark of the legal clock, sent under the lock the clock holds: the status and what
        the dossier awaits stay as last reported."""
        await self._send(self._status, step, SYSTEM, note, awaiting=self._reported)

    # --- fees ---------------------------------------------------------------------------------
    async def _collect_fee(self) -> int:
        filing = self.filing
        pages = billable_pages(
            filing.procedure, ((d.kind, d.pages) for d in filing.submission.documents)
        )
        amount = fee_vnd(
            filing.procedure, pages, filing.submission.copies, online=waived_online(filing)
        )
        if amount == 0:
            return 0
        await self._report(
            DossierStatus.FEES_REQUESTED, TimelineStep.FEES_REQUESTED, SYSTEM, f"{amount} VND"
        )
        receipt = await workflow.execute_activity_method(
            PaymentActivities.collect_fee,
            FeeRequest(
                dossier_code=filing.code,
                amount_vnd=amount,
                payer_citizen_id=filing.submission.applicant.citizen_id,
                description=f"Lệ phí {filing.procedure.name}",
            ),
            task_queue=lanes.PAYMENT,
            start_to_close_timeout=REGISTRY_CALL,
            retry_policy=TRANSIENT,
        )
        await self._report(
            DossierStatus.IN_PROCESSING,
            TimelineStep.FEES_PAID,
            SYSTEM,
            f"payment {receipt.payment_id}",
        )
        return receipt.amount_vnd

    # --- human steps ------------------------------------------------------------------------
    async def _await_step(
        self,
        expected: list[tuple[Action, Role, str]],
        *,
        status: DossierStatus,
        step: str,
        actor: str = SYSTEM,
        note: str = "",
        at: datetime | None = None,
        escalate: bool = True,
    ) -> Action:
        """Report what the dossier now waits for, then wait for one of those steps or a
        withdrawal, escalating the tasks to the unit's leader when they wait past the unit's
        threshold (not a wait for the citizen: `escalate=False`). Returns the action taken."""
        now = workflow.now()
        self._awaiting = [
            AwaitedAction(action=action.value, role=role.value, unit=unit, since=now)
            for action, role, unit in expected
        ]
        if not self._decided:
            self._awaiting.append(self._withdrawal_awaited(since=now))
        await self._report(status, step, actor, note, at)
        actions = [action for action, _, _ in expected]

        def taken() -> bool:
            return self._withdrawal is not None or any(a in self._steps for a in actions)

        escalate_at = await self._escalation_due(now) if escalate else None
        if escalate_at is None:
            await workflow.wait_condition(taken)
        else:
            try:
                await workflow.wait_condition(
                    taken, timeout=max(escalate_at - workflow.now(), MIN_WAIT)
                )
            except TimeoutError:
                await self._escalate(now)
                await workflow.wait_condition(taken)
        self._awaiting = []
        if self._withdrawal is not None:
            return Action.WITHDRAW
        return next(a for a in actions if a in self._steps)

    # --- escalation to the unit's leader -------------------------------------------------------
    async def _escalation_due(self, since: datetime) -> datetime | None:
        """When the tasks awaited since `since` go up to the leader: the unit's threshold in
        working hours, counted on the legal calendar (a local activity, so the answer is in
        the history)."""
        if not workflow.patched(TASK_ESCALATION):
            return None
        hours = escalation.threshold_hours(self.filing.competent_unit)
        due: datetime = await workflow.execute_local_activity(
            clock.add_working_seconds,
            ShiftRequest(start=since, working_seconds=hours * 3600),
            start_to_close_timeout=LOCAL_CALL,
        )
        return due

    async def _escalate(self, since: datetime) -> None:
        """The tasks waited past the threshold: marked, in the timeline, and a notice to the
        unit's leaders, who may reassign them or delegate their own."""
        now = workflow.now()
        waiting = [a for a in self._awaiting if a.action != Action.WITHDRAW.value]
        for awaited in waiting:
            awaited.escalated_at = now
        hours = escalation.threshold_hours(self.filing.competent_unit)
        tasks = ", ".join(
            f"{a.action} by {a.role} at {a.unit}"
            + (f" (held by {a.claimed_by})" if a.claimed_by else "")
            for a in waiting
        )
        text = (
            f"{tasks} of dossier {self.filing.code} waiting since "
            f"{since.astimezone(HANOI):%d/%m/%Y %H:%M}, over {hours} working hours: to the "
            f"unit's leader, who may reassign or delegate it"
        )
        await self._report(self._status, TimelineStep.ESCALATED, SYSTEM, text)
        for code in sorted({a.unit for a in waiting}):
            unit = (
                self.filing.receiving_unit
                if code == self.filing.receiving_unit.code
                else self.filing.competent_unit
            )
            await notices.send(notices.to_unit(self.filing, unit, "task_escalated", text))

    def _awaited(self, action: Action) -> AwaitedAction:
        if action is Action.WITHDRAW:
            if self._decided:
                raise ValueError(
                    f"withdrawal is possible only before the decision; dossier "
                    f"{self.filing.code} has been decided"
                )
            if self._withdrawal is not None:
                raise ValueError(f"dossier {self.filing.code} is already being withdrawn")
        awaited = next((a for a in self._awaiting if a.action == action.value), None)
        if awaited is None:
            waiting = ", ".join(
                f"{a.action} by {a.role} at {a.unit}"
                for a in self._awaiting
                if a.action != Action.WITHDRAW.value
            )
            raise ValueError(
                f"{action.value} is not possible now: dossier {self.filing.code} is "
                f"{self._status.value} and awaits {waiting or 'no officer action'}"
            )
        return awaited

    def _accept(self, action: Action, step: Step) -> Acknowledgement:
        self._steps[action] = step
        return self._acknowledge(action)

    def _take(self, action: Action) -> Step:
        return self._steps.pop(action)

    @workflow.update
    def refuse(self, step: Refusal) -> Acknowledgement:
        return self._accept(Action.REFUSE, step)

    @refuse.validator
    def _validate_refuse(self, step: Refusal) -> None:
        self._check(Action.REFUSE, step.officer, step.acting_for)

    # --- who holds a task: claim, release, reassign, delegate --------------------------------
    def _tasks_of(self, officer: Officer, grant: SharingGrant | None) -> list[AwaitedAction]:
        """The officer tasks awaited now that this officer may take: their role's (or the ones
        delegated to them) at their unit (or a unit sharing its certification with theirs)."""
        return [
            a
            for a in self._awaiting
            if a.action != Action.WITHDRAW.value
            and (a.role == officer.role or a.delegated_to == officer.officer_id)
            and (a.unit == officer.unit or shared_with(a, officer, grant))
        ]

    def _group(self, task: Action) -> list[AwaitedAction]:
        """The task and the alternatives awaited with it from the same role (approve or
        refuse): held, given and moved together."""
        awaited = self._awaited(task)
        return [
            a
            for a in self._awaiting
            if a.action != Action.WITHDRAW.value
            and (a.role, a.unit, a.since) == (awaited.role, awaited.unit, awaited.since)
        ]

    @staticmethod
    def _on_behalf(grant: SharingGrant | None) -> str:
        if grant is None:
            return ""
        return (
            f" for {grant.unit} under its certification sharing #{grant.grant_id} "
            f"opened by {grant.opened_by}"
        )

    @workflow.update
    async def claim(self, step: Claim) -> Acknowledgement:
        officer = step.officer
        now = workflow.now()
        mine = self._tasks_of(officer, step.acting_for)
        for awaited in mine:
            awaited.claimed_by = officer.officer_id
            awaited.claimed_at = now
        actions = "/".join(a.action for a in mine)
        await self._report(
            self._status,
            TimelineStep.CLAIMED,
            officer.officer_id,
            f"{actions}: {officer.role} at {officer.unit}{self._on_behalf(step.acting_for)}",
        )
        return self._acknowledge(Action.CLAIM)

    @claim.validator
    def _validate_claim(self, step: Claim) -> None:
        officer = step.officer
        mine = self._tasks_of(officer, step.acting_for)
        if not mine:
            raise ValueError(
                f"claim: dossier {self.filing.code} awaits nothing from {officer.role} "
                f"at {officer.unit}"
            )
        for awaited in mine:
            check_holder(self.filing.code, "claim", awaited, officer)

    @workflow.update
    async def release(self, step: Release) -> Acknowledgement:
        officer = step.officer
        held = [a for a in self._awaiting if a.claimed_by == officer.officer_id]
        for awaited in held:
            # A deputy who gives a delegated task back gives it back to the leader.
            awaited.claimed_by = None
            awaited.claimed_at = None
            awaited.delegated_to = None
        actions = "/".join(a.action for a in held)
        await self._report(
            self._status,
            TimelineStep.RELEASED,
            officer.officer_id,
            f"{actions}: {step.reason.value}. {step.note}".strip(),
        )
        return self._acknowledge(Action.RELEASE)

    @release.validator
    def _validate_release(self, step: Release) -> None:
        officer = step.officer
        if not any(a.claimed_by == officer.officer_id for a in self._awaiting):
            raise ValueError(
                f"release: officer {officer.officer_id} holds no task of dossier {self.filing.code}"
            )

    def _check_leader(self, what: str, step: Reassignment | Delegation) -> list[AwaitedAction]:
        """Only the leader of the task's unit moves a task."""
        officer = step.officer
        if step.task is Action.WITHDRAW:
            raise ValueError(f"task: {what} moves an officer's task; withdrawal is the citizen's")
        group = self._group(step.task)
        unit = group[0].unit
        if officer.role != Role.LEADER.value or officer.unit != unit:
            raise ValueError(
                f"{what}: only the leader of {unit} may {what} task {step.task.value}; officer "
                f"{officer.officer_id} acts as {officer.role} at {officer.unit}"
            )
        if all(a.claimed_by == step.to for a in group):
            raise ValueError(f"to: task {step.task.value} is already held by {step.to}")
        return group

    @workflow.update
    async def reassign(self, step: Reassignment) -> Acknowledgement:
        group = self._group(step.task)
        before = group[0].claimed_by
        now = workflow.now()
        for awaited in group:
            awaited.claimed_by = step.to
            awaited.claimed_at = now
            awaited.delegated_to = None
        await self._report(
            self._status,
            TimelineStep.REASSIGNED,
            step.officer.officer_id,
            f"{'/'.join(a.action for a in group)} to {step.to} (held by "
            f"{before or 'nobody'}): {step.reason.value}. {step.note}".strip(),
        )
        return self._acknowledge(Action.REASSIGN)

    @reassign.validator
    def _validate_reassign(self, step: Reassignment) -> None:
        self._check_leader("reassign", step)

    @workflow.update
    async def delegate(self, step: Delegation) -> Acknowledgement:
        group = self._group(step.task)
        now = workflow.now()
        for awaited in group:
            awaited.delegated_to = step.to
            awaited.claimed_by = step.to
            awaited.claimed_at = now
        await self._report(
            self._status,
            TimelineStep.DELEGATED,
            step.officer.officer_id,
            f"{'/'.join(a.action for a in group)} to {step.to}, in the leader's place: "
            f"{step.reason.value}. {step.note}".strip(),
        )
        return self._acknowledge(Action.DELEGATE)

    @delegate.validator
    def _validate_delegate(self, step: Delegation) -> None:
        group = self._check_leader("delegate", step)
        if group[0].role != Role.LEADER.value:
            raise ValueError(
                f"task: delegate hands on a task awaiting the leader; {step.task.value} awaits "
                f"{group[0].role} (the leader reassigns it instead)"
            )
        if step.to == step.officer.officer_id:
            raise ValueError("to: a leader delegates to another officer of the unit")
