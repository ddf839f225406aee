"""What both processing lanes share: the legal clock, human steps and progress reports.

A lane is a child of the dossier workflow, on its own task queue. It owns the dossier while
the competent unit works on it, so it owns the legal clock too: the appointment can only
move (supplement, apology) while the unit holds the dossier.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow

from schemas.actions import Acknowledgement, Action, Claim, Refusal, Step, Withdrawal
from schemas.catalogue import SupplementRule
from schemas.dossier import AwaitedAction, ClockState, DossierFiling, Officer, TimelineEntry
from schemas.exchanges import (
    ClockMarks,
    DueRequest,
    FeeRequest,
    IssuedDocument,
    IssueRequest,
    MarksRequest,
    ResultDraft,
    ResultKind,
    ShiftRequest,
)
from schemas.lanes import LaneJob, LaneResult, ProgressEvent
from schemas.lifecycle import PROGRESS_SIGNAL, TimelineStep
from schemas.statuses import DossierStatus, Outcome, Role
from workflows import notices
from workflows.policies import LOCAL_CALL, REGISTRY_CALL, SIGNING_CALL, SIGNING_HEARTBEAT, TRANSIENT

with workflow.unsafe.imports_passed_through():
    from activities import clock
    from activities.documents import DocumentActivities
    from activities.payment import PaymentActivities
    from domain import lanes
    from domain.catalogue import billable_pages, fee_vnd

SYSTEM = "system"


class Mark(StrEnum):
    WARN = "warn"
    APOLOGIZE = "apologize"
    OVERDUE = "overdue"


class LaneWorkflow:
    def __init__(self) -> None:
        self._job: LaneJob | None = None
        self._clock: ClockState | None = None
        self._marks: ClockMarks | None = None
        self._marks_due: datetime | None = None
        self._paused_at: datetime | None = None
        self._clock_version = 0
        self._status = DossierStatus.IN_PROCESSING
        self._awaiting: list[AwaitedAction] = []
        # What the dossier last told its parent it awaits: the clock's own events repeat it,
        # so a warning between an officer's step and its report does not close the task.
        self._reported: list[AwaitedAction] = []
        self._steps: dict[Action, Step] = {}
        self._withdrawal: Withdrawal | None = None
        self._decided = False
        self._finished = False
        self._lock = asyncio.Lock()
        self._clock_task: asyncio.Task[None] | None = None

    # --- the dossier this lane works on ---------------------------------------------------
    @property
    def job(self) -> LaneJob:
        assert self._job is not None
        return self._job

    @property
    def filing(self) -> DossierFiling:
        return self.job.filing

    @property
    def clock(self) -> ClockState:
        assert self._clock is not None
        return self._clock

    def _begin(self, job: LaneJob) -> None:
        self._job = job
        self._clock = job.clock
        workflow.metric_meter().create_counter(
            "dossiers_in_lane", "Dossiers that entered a processing lane"
        ).add(1, {"lane": workflow.info().task_queue, "unit": job.filing.competent_unit.code})
        self._clock_task = asyncio.create_task(self._run_clock())

    async def _finish(
        self,
        outcome: Outcome,
        *,
        reason: str | None = None,
        documents: list[IssuedDocument] | None = None,
        fee_paid_vnd: int = 0,
    ) -> LaneResult:
        self._finished = True
        if self._clock_task is not None:
            self._clock_task.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return LaneResult(
            outcome=outcome,
            clock=self.clock,
            decided_at=workflow.now(),
            reason=reason,
            documents=documents or [],
            fee_paid_vnd=fee_paid_vnd,
        )

    async def _refused(self) -> LaneResult:
        """Circular 01/2018 form 03: the refusal notice, signed, states the reason."""
        refusal = self._take(Action.REFUSE)
        assert isinstance(refusal, Refusal)
        notice = await self._issue(
            ResultKind.REFUSAL_NOTICE, refusal.officer, refusal.reason, e_sign=True
        )
        return await self._finish(Outcome.REFUSED, reason=refusal.reason, documents=[notice])

    async def _withdrawn(self) -> LaneResult:
        assert self._withdrawal is not None
        return await self._finish(Outcome.WITHDRAWN, reason=self._withdrawal.reason)

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
        parent = workflow.info().parent
        assert parent is not None, "a lane runs as a child of its dossier"
        event = ProgressEvent(
            entry=TimelineEntry(
                at=at or workflow.now(),
                status=status,
                step=step,
                actor=actor,
                note=note,
                due_at=self.clock.due_at,
                awaiting=self._reported,
            ),
            clock=self.clock,
        )
        await workflow.get_external_workflow_handle(parent.workflow_id).signal(
            PROGRESS_SIGNAL, event
        )

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
    ) -> Action:
        """Report what the dossier now waits for, then wait for one of those steps or a
        withdrawal. Returns the action taken."""
        now = workflow.now()
        self._awaiting = [
            AwaitedAction(action=action.value, role=role.value, unit=unit, since=now)
            for action, role, unit in expected
        ]
        if not self._decided:
            self._awaiting.append(
                AwaitedAction(
                    action=Action.WITHDRAW.value,
                    role=Role.COUNTER_OFFICER.value,
                    unit=self.filing.receiving_unit.code,
                    since=now,
                )
            )
        await self._report(status, step, actor, note, at)
        actions = [action for action, _, _ in expected]
        await workflow.wait_condition(
            lambda: self._withdrawal is not None or any(a in self._steps for a in actions)
        )
        self._awaiting = []
        if self._withdrawal is not None:
            return Action.WITHDRAW
        return next(a for a in actions if a in self._steps)

    def _check(self, action: Action, officer: Officer) -> None:
        """Validator core: the step must be awaited, by this role, at this unit."""
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
        if officer.role != awaited.role:
            raise ValueError(
                f"{action.value} needs role {awaited.role}; officer {officer.officer_id} "
                f"acts as {officer.role}"
            )
        if officer.unit != awaited.unit:
            raise ValueError(
                f"{action.value} is taken at unit {awaited.unit}; officer {officer.officer_id} "
                f"belongs to {officer.unit}"
            )

    def _accept(self, action: Action, step: Step) -> Acknowledgement:
        self._steps[action] = step
        return Acknowledgement(action=action, accepted_at=workflow.now(), status=self._status)

    def _take(self, action: Action) -> Step:
        return self._steps.pop(action)

    @workflow.update
    def withdraw(self, request: Withdrawal) -> Acknowledgement:
        self._withdrawal = request
        return Acknowledgement(
            action=Action.WITHDRAW, accepted_at=workflow.now(), status=self._status
        )

    @withdraw.validator
    def _validate_withdraw(self, request: Withdrawal) -> None:
        if self._decided:
            raise ValueError(
                f"withdrawal is possible only before the decision; dossier {self.filing.code} "
                "has been decided"
            )
        if self._withdrawal is not None:
            raise ValueError(f"dossier {self.filing.code} is already being withdrawn")
        self._check(Action.WITHDRAW, request.officer)

    async def _collect_fee(self) -> int:
        filing = self.filing
        pages = billable_pages(
            filing.procedure, ((d.kind, d.pages) for d in filing.submission.documents)
        )
        amount = fee_vnd(filing.procedure, pages, filing.submission.copies)
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

    @workflow.update
    def refuse(self, step: Refusal) -> Acknowledgement:
        return self._accept(Action.REFUSE, step)

    @refuse.validator
    def _validate_refuse(self, step: Refusal) -> None:
        self._check(Action.REFUSE, step.officer)

    @workflow.update
    async def claim(self, step: Claim) -> Acknowledgement:
        officer = step.officer
        for awaited in self._awaiting:
            if awaited.role == officer.role and awaited.unit == officer.unit:
                awaited.claimed_by = officer.officer_id
        await self._report(
            self._status,
            TimelineStep.CLAIMED,
            officer.officer_id,
            f"{officer.role} at {officer.unit}",
        )
        return Acknowledgement(action=Action.CLAIM, accepted_at=workflow.now(), status=self._status)

    @claim.validator
    def _validate_claim(self, step: Claim) -> None:
        officer = step.officer
        mine = [
            a
            for a in self._awaiting
            if a.action != Action.WITHDRAW.value
            and a.role == officer.role
            and a.unit == officer.unit
        ]
        if not mine:
            raise ValueError(
                f"claim: dossier {self.filing.code} awaits nothing from {officer.role} "
                f"at {officer.unit}"
            )
        taken = next((a.claimed_by for a in mine if a.claimed_by), None)
        if taken is not None and taken != officer.officer_id:
            raise ValueError(f"claim: the task is already claimed by {taken}")

    # --- documents and notices ----------------------------------------------------------------
    async def _issue(
        self, kind: ResultKind, officer: Officer, text: str, *, e_sign: bool
    ) -> IssuedDocument:
        filing = self.filing
        draft = ResultDraft(
            dossier_code=filing.code,
            kind=kind,
            procedure_code=filing.procedure.code,
            procedure_name=filing.procedure.name,
            applicant_name=filing.submission.applicant.full_name,
            competent_unit=filing.competent_unit.name,
            decided_by=officer,
            decided_at=workflow.now(),
            text=text,
        )
        return await workflow.execute_activity_method(
            DocumentActivities.issue_document,
            IssueRequest(draft=draft, e_sign=e_sign),
            task_queue=lanes.SIGNING,
            start_to_close_timeout=SIGNING_CALL,
            heartbeat_timeout=SIGNING_HEARTBEAT,
            retry_policy=TRANSIENT,
        )

    # --- the legal clock ------------------------------------------------------------------------
    async def _stop_clock(self) -> datetime:
        """Supplement requested: the clock waits for the citizen (Decree 61/2018 art. 18).
        Returns the instant it stopped."""
        async with self._lock:
            self._paused_at = workflow.now()
            self.clock.running = False
            self._clock_version += 1
            return self._paused_at

    async def _resume_clock(self) -> datetime:
        """The complete dossier is back: restart (the decree) or resume (pause rule).
        Returns the instant the clock counts from again."""
        async with self._lock:
            return await self._move_due_after_supplement()

    async def _move_due_after_supplement(self) -> datetime:
        procedure = self.filing.procedure
        now = workflow.now()
        assert self._paused_at is not None
        if procedure.supplement_rule is SupplementRule.RESTART:
            # The processing time counts again, whole, from the complete dossier.
            due = await workflow.execute_local_activity(
                clock.compute_due,
                DueRequest(received_at=now, deadline=procedure.deadline),
                start_to_close_timeout=LOCAL_CALL,
            )
        else:
            # The appointment moves back by exactly the working time spent waiting.
            waited = await workflow.execute_local_activity(
                clock.working_seconds_between,
                ShiftRequest(start=self._paused_at, end=now),
                start_to_close_timeout=LOCAL_CALL,
            )
            due = await workflow.execute_local_activity(
                clock.add_working_seconds,
                ShiftRequest(start=self.clock.due_at, working_seconds=waited),
                start_to_close_timeout=LOCAL_CALL,
            )
            self.clock.paused_working_seconds += waited
        self.clock.due_at = due
        self.clock.running = True
        self.clock.warned = False
        self.clock.overdue = False
        self._paused_at = None
        self._clock_version += 1
        return now

    async def _run_clock(self) -> None:
        """Near-due warning, the apology slip (once), then overdue, each at its time."""
        while not self._finished:
            version = self._clock_version

            def changed(version: int = version) -> bool:
                return self._clock_version != version or self._finished

            if not self.clock.running:
                await workflow.wait_condition(changed)
                continue
            marks = await self._current_marks()
            pending = [
                (at, mark)
                for at, mark, done in (
                    (marks.warn_at, Mark.WARN, self.clock.warned),
                    (marks.apologize_at, Mark.APOLOGIZE, self.clock.apologized),
                    (self.clock.due_at, Mark.OVERDUE, self.clock.overdue),
                )
                if not done
            ]
            if not pending:
                await workflow.wait_condition(changed)
                continue
            at, mark = min(pending)
            delay = (at - workflow.now()).total_seconds()
            if delay > 0:
                try:
                    await workflow.wait_condition(changed, timeout=timedelta(seconds=delay))
                    continue
                except TimeoutError:
                    pass
            async with self._lock:
                if changed():
                    continue
                await self._on_mark(mark)

    async def _current_marks(self) -> ClockMarks:
        if self._marks is None or self._marks_due != self.clock.due_at:
            self._marks = await workflow.execute_local_activity(
                clock.clock_marks,
                MarksRequest(
                    received_at=self.filing.received_at,
                    due_at=self.clock.due_at,
                    deadline=self.filing.procedure.deadline,
                ),
                start_to_close_timeout=LOCAL_CALL,
            )
            self._marks_due = self.clock.due_at
        return self._marks

    async def _on_mark(self, mark: Mark) -> None:
        code = self.filing.code
        if mark is Mark.WARN:
            self.clock.warned = True
            unit = self.filing.competent_unit
            await notices.send(
                notices.to_unit(
                    self.filing,
                    unit,
                    "near_due",
                    f"Hồ sơ {code} sắp đến hạn {self.clock.due_at:%d/%m/%Y %H:%M}",
                )
            )
            await self._send(
                self._status,
                TimelineStep.NEAR_DUE_WARNING,
                SYSTEM,
                f"due {self.clock.due_at}",
                awaiting=self._reported,
            )
            return
        if mark is Mark.OVERDUE:
            self.clock.overdue = True
            await self._send(
                self._status,
                TimelineStep.OVERDUE,
                SYSTEM,
                f"appointment {self.clock.due_at} passed",
                awaiting=self._reported,
            )
            return
        # Decree 61/2018 art. 19: at least a working day before the deadline, a dossier that
        # will be late gets one apology slip with a new appointment, and counts as late.
        new_due = await workflow.execute_local_activity(
            clock.apology_appointment,
            DueRequest(received_at=self.clock.due_at, deadline=self.filing.procedure.deadline),
            start_to_close_timeout=LOCAL_CALL,
        )
        old_due = self.clock.due_at
        self.clock.apologized = True
        self.clock.due_at = new_due
        self._clock_version += 1
        unit = self.filing.competent_unit
        slip = await self._issue(
            ResultKind.APOLOGY_SLIP,
            Officer(
                officer_id=f"unit:{unit.code}",
                full_name=unit.name,
                role=Role.LEADER,
                unit=unit.code,
            ),
            f"Xin lỗi: hồ sơ {code} chưa giải quyết xong đúng hẹn {old_due:%d/%m/%Y %H:%M}; "
            f"hẹn lại ngày {new_due:%d/%m/%Y %H:%M}.",
            e_sign=False,
        )
        await notices.send(
            notices.to_applicant(
                self.filing, "apology_slip", f"Hồ sơ {code}: hẹn lại {new_due:%d/%m/%Y}"
            )
        )
        await self._send(
            self._status,
            TimelineStep.APOLOGY_SLIP,
            SYSTEM,
            f"new appointment {new_due.isoformat()} (was {old_due.isoformat()}); "
            f"slip {slip.sha256[:12]}",
            awaiting=self._reported,
        )
