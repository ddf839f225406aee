"""The life of one dossier, from the counter to the return of its result.

One workflow per dossier; its id is the dossier code. Intake and return happen here, at the
receiving unit; processing happens on the competent unit's lane (certification,
ward-processing or city-processing): inside this workflow, which then takes the lane's steps,
or, for dossiers begun before `lane-in-dossier`, in a child workflow on the lane's task queue
that reports its progress back by signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ChildWorkflowError, FailureError

from domain.catalogue import billable_pages, fee_vnd, missing_documents
from domain.routing import Route, route
from schemas.actions import (
    Acknowledgement,
    Action,
    HandOver,
    InPersonIdentityCheck,
    Supplement,
    Withdrawal,
)
from schemas.catalogue import DeliveryChannel, Registry, RequiredDocument
from schemas.citizen_id import masked
from schemas.dossier import (
    AwaitedAction,
    ClockState,
    DossierFiling,
    DossierView,
    IntakeChannel,
    TimelineEntry,
)
from schemas.exchanges import (
    DueRequest,
    IdentityCheck,
    IdentityResult,
    IssuedDocument,
    Notification,
    OutboxMessages,
    PortalDocument,
    PortalFee,
    PortalProgress,
    PortalResult,
    PortalSupplement,
    PortalSync,
    PostOrder,
    ProjectionRecord,
    WebhookEvent,
)
from schemas.lanes import DossierResult, LaneJob, LaneResult, ProgressEvent
from schemas.lifecycle import (
    PROGRESS_SIGNAL,
    PortalState,
    TimelineStep,
    closed_step,
    event_type_of,
    portal_sync_needed,
)
from schemas.statuses import (
    FINAL_STATUS,
    DossierStatus,
    Outcome,
    Role,
    Stage,
    portal_code,
)
from workflows import notices
from workflows import search_attributes as sa
from workflows.certification import CERTIFICATION_BOOKS, CertificationWorkflow
from workflows.lane import (
    CLOCK_MARKS_FIRST,
    ONLINE_FEE_EXEMPTION,
    TASK_ESCALATION,
    WET_INK_SIGNATURE,
    waived_online,
)
from workflows.policies import (
    IDENTITY_PATIENCE,
    LOCAL_CALL,
    REGISTRY_CALL,
    TRANSIENT,
    WEBHOOK_RETRY,
    WEBHOOK_WINDOW,
    is_rejection,
    rejection_message,
    root_cause_message,
)
from workflows.processing import SUPPLEMENT_WINDOW, ProcessingWorkflow
from workflows.steps import HumanSteps

with workflow.unsafe.imports_passed_through():
    from activities import clock
    from activities.notify import NotifyActivities
    from activities.portal import PortalActivities
    from activities.projection import ProjectionActivities
    from activities.registries import RegistryActivities
    from activities.webhooks import WebhookActivities
    from domain import lanes

SYSTEM = "system"
UPSERT_ONLY_CHANGES = "upsert-only-changes"
INTAKE_CHANNEL_CODES = {"counter": 1, "online": 2, "post": 3}
# LoaiDoiTuong: 1 citizen, 2 business (the OpenCPS DVCQG integration sends these two); 3 and
# 4 as the provincial systems' applicant types list them (unconfirmed).
APPLICANT_TYPE_CODES = {"citizen": 1, "business": 2, "state_body": 3, "other": 4}
SUPPLEMENT_ASKED = (TimelineStep.INTAKE_SUPPLEMENT_REQUESTED, TimelineStep.SUPPLEMENT_REQUESTED)
SUPPLEMENT_GIVEN = (TimelineStep.INTAKE_SUPPLEMENT_RECEIVED, TimelineStep.SUPPLEMENT_RECEIVED)
# An incomplete dossier at intake is asked for what is missing (form 02), not refused.
INTAKE_SUPPLEMENT = "intake-supplement-form-02"
# Counter filings whose identity check may be done in person when the registry is down.
IDENTITY_IN_PERSON = "identity-check-in-person"
# Portal syncs, webhooks and the dossier's notices leave through the outbox, written with
# the step that causes them; before, each was an activity and the dossier waited for them.
OUTBOX = "outbox"
# The lane runs inside this workflow instead of as a child that signals each step: no child
# start and close, no signal per step.
LANE_IN_DOSSIER = "lane-in-dossier"
# The rules a dossier with its lane inside follows, decided with it before its first command:
# a rule first asked just after a local activity whose answer came back in a later workflow
# task would be asked before its marker on replay, and the replay would take the old path.
RULES_OF_THE_LANE_IN_DOSSIER = (
    INTAKE_SUPPLEMENT,
    IDENTITY_IN_PERSON,
    UPSERT_ONLY_CHANGES,
    TASK_ESCALATION,
    WET_INK_SIGNATURE,
    ONLINE_FEE_EXEMPTION,
    CERTIFICATION_BOOKS,
    SUPPLEMENT_WINDOW,
    CLOCK_MARKS_FIRST,
)


@workflow.defn(name="Dossier")
class DossierWorkflow(HumanSteps):
    @workflow.init
    def __init__(self, filing: DossierFiling) -> None:
        self.filing = filing
        self._stage = Stage.INTAKE
        self._status = DossierStatus.SUBMITTED
        self._timeline: list[TimelineEntry] = []
        self._clock: ClockState | None = None
        self._route: Route | None = None
        self._awaiting: list[AwaitedAction] = []
        # The workflow that takes the dossier's human steps now: this one, or its lane's.
        self._handled_by = workflow.info().workflow_id
        self._withdrawal: Withdrawal | None = None
        self._hand_over: HandOver | None = None
        self._result_ready_at: datetime | None = None
        self._outcome: Outcome | None = None
        self._reason: str | None = None
        self._closed_at: datetime | None = None
        self._synced: PortalState | None = None
        # The first timeline step the portal has not had as a progress row yet.
        self._portal_rows_from = 0
        self._result_documents: list[IssuedDocument] = []
        self._lock = asyncio.Lock()
        self._deliveries: list[asyncio.Future[int]] = []
        # An incomplete dossier at intake: what form 02 asked for, and the supplement.
        self._missing_at_intake: list[str] = []
        self._intake_supplement: Supplement | None = None
        self._withdrawn_at_intake = False
        # The registry does not answer: the chip ID card checked in person at the counter,
        # and the registry's own check, which still runs when it is back.
        self._in_person_check: InPersonIdentityCheck | None = None
        self._late_identity: asyncio.Task[None] | None = None

    @workflow.run
    async def run(self, filing: DossierFiling) -> DossierResult:
        # Decided once, before the first command: the whole run takes one path for its
        # portal syncs, notices and webhooks, and the marker's place never moves.
        self._outbox()
        # Likewise where its lane runs (dossiers begun before run it as a child), and with it
        # every rule the dossier follows.
        if workflow.patched(LANE_IN_DOSSIER):
            for rule in RULES_OF_THE_LANE_IN_DOSSIER:
                workflow.patched(rule)
        # Intake at the receiving unit (Decree 61/2018 arts. 17-18): completeness and
        # identity, then the receipt with its appointment.
        refusal = await self._intake()
        if refusal is not None:
            return await self._close(Outcome.REJECTED_AT_INTAKE, refusal)
        if self._withdrawn_at_intake:
            assert self._withdrawal is not None
            return await self._close(Outcome.WITHDRAWN, self._withdrawal.reason)
        receipt = await self._receipt()
        if self._withdrawal is not None:
            return await self._close(Outcome.WITHDRAWN, self._withdrawal.reason)

        # Routing and processing at the competent unit, on its lane (Decree 118/2025 art. 4).
        lane = await self._process(receipt)
        if lane.outcome in (Outcome.WITHDRAWN, Outcome.STOPPED):
            return await self._close(lane.outcome, lane.reason)

        # The result is back at the receiving unit (electronic transfer, at once): return it
        # (art. 20), then close.
        self._result_ready_at = lane.decided_at
        await self._return_result(lane)
        return await self._close(lane.outcome, lane.reason, lane.documents)

    # --- intake --------------------------------------------------------------------------------
    async def _intake(self) -> str | None:
        """Completeness and identity. Returns the refusal reason (Circular 01/2018 form 03,
        for a dossier that is not eligible), if any."""
        filing = self.filing
        missing = missing_documents(filing.procedure, (d.kind for d in filing.submission.documents))
        if missing:
            if not workflow.patched(INTAKE_SUPPLEMENT):
                return "incomplete dossier, missing: " + ", ".join(d.name for d in missing)
            if not await self._supplement_at_intake(missing):
                self._withdrawn_at_intake = True
                return None
            filing = self.filing
        submission = filing.submission
        applicant = submission.applicant
        check = IdentityCheck(
            dossier_code=filing.code,
            citizen_id=applicant.citizen_id,
            full_name=applicant.full_name,
            date_of_birth=applicant.date_of_birth,
        )
        at_counter = submission.intake_channel is IntakeChannel.COUNTER
        if at_counter and workflow.patched(IDENTITY_IN_PERSON):
            return await self._check_identity_at_counter(check)
        # Online and post filings wait for the registry, however long it is down.
        try:
            identity = await workflow.execute_activity_method(
                RegistryActivities.check_identity,
                check,
                task_queue=lanes.REGISTRY_QUEUES[Registry.POPULATION],
                start_to_close_timeout=REGISTRY_CALL,
                retry_policy=TRANSIENT,
            )
        except ActivityError as err:
            if is_rejection(err):
                return f"identity check refused: {rejection_message(err)}"
            raise
        return _identity_problem(identity)

    async def _check_identity_at_counter(self, check: IdentityCheck) -> str | None:
        """The registry's check, or, when it has not answered for IDENTITY_PATIENCE, the
        applicant's chip ID card checked in person by a counter officer: the dossier is
        received and the registry's check goes on until the registry is back."""
        handle = workflow.start_activity_method(
            RegistryActivities.check_identity,
            check,
            task_queue=lanes.REGISTRY_QUEUES[Registry.POPULATION],
            start_to_close_timeout=REGISTRY_CALL,
            retry_policy=TRANSIENT,
        )
        try:
            await workflow.wait_condition(handle.done, timeout=IDENTITY_PATIENCE)
        except TimeoutError:
            unit = self.filing.receiving_unit.code
            now = workflow.now()
            awaited = [
                AwaitedAction(
                    action=Action.CHECK_IDENTITY_IN_PERSON.value,
                    role=Role.COUNTER_OFFICER.value,
                    unit=unit,
                    since=now,
                ),
                self._withdrawal_awaited(since=now),
            ]
            await self._record(
                DossierStatus.SUBMITTED,
                TimelineStep.IDENTITY_REGISTRY_UNANSWERED,
                SYSTEM,
                f"population registry silent for {int(IDENTITY_PATIENCE.total_seconds() // 60)} "
                "min; the chip ID card may be checked in person",
                awaiting=awaited,
            )
            await workflow.wait_condition(
                lambda: (
                    handle.done()
                    or self._in_person_check is not None
                    or self._withdrawal is not None
                )
            )
            self._awaiting = []
            if not handle.done():
                if self._withdrawal is not None:
                    handle.cancel()
                    self._withdrawn_at_intake = True
                    return None
                step = self._in_person_check
                assert step is not None
                await self._record(
                    DossierStatus.SUBMITTED,
                    TimelineStep.IDENTITY_CHECKED_IN_PERSON,
                    step.officer.officer_id,
                    f"{step.document.value}, {step.method.value}"
                    + (f": {step.note}" if step.note else "")
                    + "; the registry's check follows when it answers",
                )
                self._late_identity = asyncio.create_task(self._registry_check_after(handle))
                return None
        try:
            return _identity_problem(await handle)
        except ActivityError as err:
            if is_rejection(err):
                return f"identity check refused: {rejection_message(err)}"
            raise

    async def _registry_check_after(self, handle: workflow.ActivityHandle[IdentityResult]) -> None:
        """The registry is back: its answer on an identity checked in person. A mismatch does
        not undo the receipt; it goes to the receiving unit's leader, who decides."""
        try:
            problem = _identity_problem(await handle)
        except ActivityError as err:
            if not is_rejection(err):
                raise
            problem = f"identity check refused: {rejection_message(err)}"
        filing = self.filing
        if problem is None:
            await self._note(
                TimelineStep.IDENTITY_CONFIRMED_BY_REGISTRY,
                SYSTEM,
                "the population registry confirms the identity checked in person",
            )
            return
        unit = filing.receiving_unit
        await self._note(
            TimelineStep.IDENTITY_MISMATCH_FLAGGED,
            SYSTEM,
            f"leader of {unit.code}: {problem}",
            tell=[
                notices.to_unit(
                    filing,
                    unit,
                    "identity_mismatch",
                    f"Hồ sơ {filing.code}: thông tin nhân thân được kiểm tra trực tiếp bằng "
                    f"thẻ căn cước không khớp Cơ sở dữ liệu quốc gia về dân cư ({problem})",
                )
            ],
        )

    @workflow.update
    def check_identity_in_person(self, step: InPersonIdentityCheck) -> Acknowledgement:
        self._in_person_check = step
        return self._acknowledge(Action.CHECK_IDENTITY_IN_PERSON)

    @check_identity_in_person.validator
    def _validate_check_identity_in_person(self, step: InPersonIdentityCheck) -> None:
        self._check(Action.CHECK_IDENTITY_IN_PERSON, step.officer)

    async def _supplement_at_intake(self, missing: list[RequiredDocument]) -> bool:
        """Decree 61/2018 art. 17 (intake), Circular 01/2018 form 02: an
        incomplete dossier is not refused; the counter asks for everything missing at once (by
        notice for an online filing) and the dossier waits for the citizen, without a receipt
        and without a clock. It is received when complete. False when the citizen withdrew."""
        filing = self.filing
        unit = filing.receiving_unit.code
        names = ", ".join(d.name for d in missing)
        self._missing_at_intake = [d.kind for d in missing]
        now = workflow.now()
        awaited = [
            AwaitedAction(
                action=Action.PROVIDE_SUPPLEMENT.value,
                role=Role.COUNTER_OFFICER.value,
                unit=unit,
                since=now,
            ),
            self._withdrawal_awaited(since=now),
        ]
        await self._record(
            DossierStatus.SUPPLEMENT_REQUESTED,
            TimelineStep.INTAKE_SUPPLEMENT_REQUESTED,
            f"counter:{unit}",
            f"form 02, missing: {names}",
            awaiting=awaited,
            tell=[
                notices.to_applicant(
                    filing,
                    "intake_supplement",
                    f"Hồ sơ {filing.code} chưa đủ thành phần; đề nghị bổ sung: {names}",
                )
            ],
        )
        await workflow.wait_condition(
            lambda: self._intake_supplement is not None or self._withdrawal is not None
        )
        self._awaiting = []
        if self._withdrawal is not None:
            return False
        supplement = self._intake_supplement
        assert supplement is not None
        submission = filing.submission
        complete = submission.model_copy(
            update={"documents": [*submission.documents, *supplement.documents]}
        )
        # Received when complete: the appointment counts from now.
        self.filing = filing.model_copy(
            update={"submission": complete, "received_at": workflow.now()}
        )
        self._missing_at_intake = []
        await self._record(
            DossierStatus.SUPPLEMENT_REQUESTED,
            TimelineStep.INTAKE_SUPPLEMENT_RECEIVED,
            supplement.officer.officer_id,
            ", ".join(d.kind for d in supplement.documents),
        )
        return True

    @workflow.update
    def provide_supplement(self, step: Supplement) -> Acknowledgement:
        self._intake_supplement = step
        return self._acknowledge(Action.PROVIDE_SUPPLEMENT)

    @provide_supplement.validator
    def _validate_provide_supplement(self, step: Supplement) -> None:
        self._check(Action.PROVIDE_SUPPLEMENT, step.officer)
        given = {document.kind for document in step.documents}
        still_missing = [kind for kind in self._missing_at_intake if kind not in given]
        if still_missing:
            raise ValueError(
                f"documents: the supplement must include every document form 02 asked for; "
                f"missing {', '.join(still_missing)}"
            )

    async def _receipt(self) -> ClockState:
        """The receipt and appointment slip (Circular 01/2018 form 01): the legal clock starts."""
        filing = self.filing
        due_at = await workflow.execute_local_activity(
            clock.compute_due,
            DueRequest(received_at=filing.received_at, deadline=filing.procedure.deadline),
            start_to_close_timeout=LOCAL_CALL,
        )
        receipt = ClockState(due_at=due_at)
        self._clock = receipt
        await self._record(
            DossierStatus.RECEIVED,
            TimelineStep.RECEIPT,
            f"counter:{filing.receiving_unit.code}",
            f"appointment {due_at.isoformat()}",
            tell=[
                notices.to_applicant(
                    filing,
                    "receipt",
                    f"Hồ sơ {filing.code} đã được tiếp nhận; hẹn trả {due_at:%d/%m/%Y %H:%M}",
                )
            ],
        )
        return receipt

    # --- processing on the competent unit's lane -----------------------------------------------
    async def _process(self, receipt: ClockState) -> LaneResult:
        filing = self.filing
        self._route = route(filing.procedure, filing.receiving_unit, filing.competent_unit)
        self._stage = Stage.PROCESSING
        certification = self._route.lane == lanes.CERTIFICATION
        child_id = lanes.lane_workflow_id(filing.code, self._route.lane)
        await self._record(
            DossierStatus.IN_PROCESSING,
            TimelineStep.TRANSFERRED,
            SYSTEM,
            f"to {filing.competent_unit.code} on {self._route.lane}",
        )
        if workflow.patched(LANE_IN_DOSSIER):
            return await self._process_inside(LaneJob(filing=filing, clock=receipt.model_copy()))
        self._handled_by = child_id
        job = LaneJob(filing=filing, clock=receipt)
        try:
            if certification:
                result = await workflow.execute_child_workflow(
                    CertificationWorkflow.run, job, id=child_id, task_queue=self._route.lane
                )
            else:
                result = await workflow.execute_child_workflow(
                    ProcessingWorkflow.run, job, id=child_id, task_queue=self._route.lane
                )
        except ChildWorkflowError as err:
            # A lane that cannot go on (for example a refused signature) stops the dossier
            # with its reason instead of leaving it half-done; the appointment stays as the
            # lane last reported it.
            reason = f"processing stopped: {root_cause_message(err)}"
            result = LaneResult(
                outcome=Outcome.STOPPED,
                clock=self._clock or receipt,
                decided_at=workflow.now(),
                reason=reason,
            )
        # After the lane's last reports, which may still wait for the lock.
        async with self._lock:
            self._handled_by = workflow.info().workflow_id
            self._awaiting = []
            self._clock = result.clock
        return result

    async def _process_inside(self, job: LaneJob) -> LaneResult:
        """The lane runs here, its activities on their own lanes' queues: while it holds the
        dossier, this workflow takes the lane's steps (the dossier stays `handled_by` itself)
        with the lane's validators, and the lane's reports go straight into the timeline."""
        assert self._route is not None
        lane: CertificationWorkflow | ProcessingWorkflow = (
            CertificationWorkflow(job)
            if self._route.lane == lanes.CERTIFICATION
            else ProcessingWorkflow(job)
        )
        lane.run_inside(self._route.lane, self._lock, self._progress_locked)
        taken = lane.updates()
        for name, handler, validator in taken:
            workflow.set_update_handler(name, handler, validator=validator)
        try:
            result = await lane.run(job)
        except FailureError as err:
            # As for a lane child that fails: the dossier stops with the reason, the
            # appointment as the lane last reported it.
            lane.clock.close()
            result = LaneResult(
                outcome=Outcome.STOPPED,
                clock=self._clock or job.clock,
                decided_at=workflow.now(),
                reason=f"processing stopped: {root_cause_message(err)}",
            )
        async with self._lock:
            # The dossier's own steps again: the ones it shares with the lane are its own,
            # the others are no step of the dossier past the decision.
            own = self._own_updates()
            for name, _, _ in taken:
                if name in own:
                    handler, validator = own[name]
                    workflow.set_update_handler(name, handler, validator=validator)
                else:
                    workflow.set_update_handler(name, None)
            self._awaiting = []
            self._clock = result.clock.model_copy()
        return result

    def _own_updates(self) -> dict[str, tuple[Callable[..., Any], Callable[..., None]]]:
        """The dossier's steps whose names a lane takes too (the citizen's withdrawal, the
        supplement at the counter)."""
        return {
            Action.WITHDRAW.value: (self.withdraw, self._validate_withdraw),
            Action.PROVIDE_SUPPLEMENT.value: (
                self.provide_supplement,
                self._validate_provide_supplement,
            ),
        }

    @workflow.signal(name=PROGRESS_SIGNAL)
    async def progress(self, event: ProgressEvent) -> None:
        """A lane's report: status, appointment and what it awaits now. Applied under the
        lock, in the order the lane sent them."""
        async with self._lock:
            await self._progress_locked(event)

    async def _progress_locked(self, event: ProgressEvent) -> None:
        entry = event.entry
        self._clock = event.clock
        self._awaiting = entry.awaiting
        await self._record_locked(entry.status, entry.step, entry.actor, entry.note, entry.at)

    # --- return of the result ---------------------------------------------------------------------
    async def _return_result(self, lane: LaneResult) -> None:
        filing = self.filing
        documents = lane.documents
        self._result_documents = list(documents)
        self._stage = Stage.RETURN
        channel = filing.submission.delivery_channel
        applicant = filing.submission.applicant
        hand_over = [
            AwaitedAction(
                action=Action.HAND_OVER.value,
                role=Role.COUNTER_OFFICER.value,
                unit=filing.receiving_unit.code,
                # Since the result reached the receiving unit: the lane's decision time, the
                # same however the workflow task that records it is replayed.
                since=lane.decided_at,
            )
        ]
        ready = (
            DossierStatus.REFUSED if lane.outcome is Outcome.REFUSED else DossierStatus.RESULT_READY
        )
        at_counter = channel is DeliveryChannel.COUNTER
        await self._record(
            ready,
            TimelineStep.RESULT_AT_RECEIVING_UNIT,
            SYSTEM,
            lane.reason or "",
            awaiting=hand_over if at_counter else [],
            tell=[
                notices.to_applicant(
                    filing,
                    "result_ready",
                    f"Hồ sơ {filing.code}: mời nhận kết quả tại {filing.receiving_unit.name}",
                )
            ]
            if at_counter
            else [],
        )
        told: list[Notification] = []
        if channel is DeliveryChannel.COUNTER:
            await workflow.wait_condition(lambda: self._hand_over is not None)
            assert self._hand_over is not None
            self._awaiting = []
            actor = self._hand_over.officer.officer_id
            note = "handed over at the counter"
            if self._hand_over.rating is not None:
                note += f"; rating {self._hand_over.rating}"
        elif channel is DeliveryChannel.POST:
            receipt = await workflow.execute_activity_method(
                NotifyActivities.send_by_post,
                PostOrder(
                    dossier_code=filing.code,
                    recipient_name=applicant.full_name,
                    address=applicant.address or filing.receiving_unit.name,
                    item=", ".join(d.kind.value for d in documents) or "result",
                ),
                task_queue=lanes.NOTIFY,
                start_to_close_timeout=REGISTRY_CALL,
                retry_policy=TRANSIENT,
            )
            actor, note = SYSTEM, f"sent by post, tracking {receipt.tracking_number}"
        else:
            online = notices.to_applicant(
                filing,
                "result_online",
                f"Hồ sơ {filing.code}: kết quả điện tử đã có trên Cổng dịch vụ công",
            )
            if self._outbox():
                told = [online]
            else:
                await notices.send(online)
            actor, note = SYSTEM, "delivered online"
        await self._record(
            DossierStatus.RETURNED, TimelineStep.RESULT_RETURNED, actor, note, tell=told
        )

    @workflow.update
    def hand_over(self, step: HandOver) -> Acknowledgement:
        self._hand_over = step
        return self._acknowledge(Action.HAND_OVER)

    @hand_over.validator
    def _validate_hand_over(self, step: HandOver) -> None:
        self._check(Action.HAND_OVER, step.officer)

    def _awaited(self, action: Action) -> AwaitedAction:
        if action is Action.WITHDRAW:
            # While the competent unit holds the dossier, its lane takes the withdrawal.
            if self._stage is not Stage.INTAKE or self._withdrawal is not None:
                raise ValueError(
                    f"withdraw: dossier {self.filing.code} is past intake; a withdrawal goes "
                    f"to {self._handled_by} while the competent unit holds it, and is "
                    "impossible after the decision"
                )
            return self._withdrawal_awaited(since=self.filing.received_at)
        awaited = next((a for a in self._awaiting if a.action == action.value), None)
        # The dossier workflow takes the intake supplement and the hand-over; while a lane
        # holds the dossier, what it awaits is the lane's to take.
        at_intake = action in (Action.PROVIDE_SUPPLEMENT, Action.CHECK_IDENTITY_IN_PERSON)
        stage = Stage.INTAKE if at_intake else Stage.RETURN
        if awaited is None or self._stage is not stage:
            raise ValueError(
                f"{action.value} is not possible now: dossier {self.filing.code} is "
                f"{self._status.value} at stage {self._stage.value}"
            )
        return awaited

    # --- closing -------------------------------------------------------------------------------
    async def _close(
        self, outcome: Outcome, reason: str | None, documents: list[IssuedDocument] | None = None
    ) -> DossierResult:
        if self._late_identity is not None:
            # An identity checked in person: the registry's own check is part of the record.
            await self._late_identity
        self._outcome = outcome
        self._reason = reason
        self._stage = Stage.CLOSED
        self._closed_at = workflow.now()
        workflow.metric_meter().create_counter(
            "dossiers_closed", "Dossiers closed, per lane, outcome and timeliness"
        ).add(
            1,
            {
                "lane": self._route.lane if self._route else lanes.INTAKE,
                "outcome": outcome.value,
                "on_time": str(self._on_time()).lower(),
            },
        )
        await self._record(FINAL_STATUS[outcome], closed_step(outcome), SYSTEM, reason or "")
        # Dossiers opened before the outbox stay open until their last status change reached
        # the webhooks (or the retry window ran out); with the outbox there is nothing to wait
        # for: the messages are in the outbox with the closing step.
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return DossierResult(
            code=self.filing.code,
            outcome=outcome,
            status=self._status,
            received_at=self.filing.received_at,
            due_at=self._clock.due_at if self._clock else None,
            result_ready_at=self._result_ready_at,
            closed_at=self._closed_at,
            on_time=self._on_time(),
            apologized=bool(self._clock and self._clock.apologized),
            reason=reason,
            documents=documents or [],
        )

    def _on_time(self) -> bool | None:
        """On time when the result reached the receiving unit by the appointment and no apology
        slip was needed; a citizen's late pick-up does not make the unit late."""
        if self._result_ready_at is None or self._clock is None:
            return None
        return not self._clock.apologized and self._result_ready_at <= self._clock.due_at

    # --- status, timeline, portal and search attributes -----------------------------------------
    async def _record(
        self,
        status: DossierStatus,
        step: str,
        actor: str,
        note: str = "",
        at: datetime | None = None,
        awaiting: list[AwaitedAction] | None = None,
        tell: Sequence[Notification] = (),
    ) -> None:
        """One step in the timeline; the portal and the search attributes follow the status
        and the appointment. Serialised, so the portal sees statuses in order; `awaiting`
        replaces what the dossier awaits, under the same lock. `tell` are the notices that
        tell the step to the applicant or a unit."""
        outboxed = self._outbox()
        async with self._lock:
            if awaiting is not None:
                self._awaiting = awaiting
            await self._record_locked(status, step, actor, note, at, tell if outboxed else ())
        await self._send_notices(() if outboxed else tell)

    async def _note(
        self, step: str, actor: str, note: str, tell: Sequence[Notification] = ()
    ) -> None:
        """A step that does not change the status, whichever status the dossier has by the
        time the lock is taken (a lane's report may be ahead of it)."""
        outboxed = self._outbox()
        async with self._lock:
            await self._record_locked(
                self._status, step, actor, note, None, tell if outboxed else ()
            )
        await self._send_notices(() if outboxed else tell)

    async def _send_notices(self, tell: Sequence[Notification]) -> None:
        """Dossiers opened before the outbox: each notice an activity, after the step."""
        for notification in tell:
            await notices.send(notification)

    def _outbox(self) -> bool:
        """Whether this dossier's messages leave through the outbox (asked first at the start
        of the run; the SDK remembers the answer, so every step takes the same path)."""
        return workflow.patched(OUTBOX)

    async def _record_locked(
        self,
        status: DossierStatus,
        step: str,
        actor: str,
        note: str,
        at: datetime | None,
        told: Sequence[Notification] = (),
    ) -> None:
        self._status = status
        due_at = self._clock.due_at if self._clock else None
        entry = TimelineEntry(
            at=at or workflow.now(),
            status=status,
            step=step,
            actor=actor,
            note=note,
            due_at=due_at,
            awaiting=list(self._awaiting),
        )
        sync = portal_sync_needed(step, status, due_at, self._synced)
        if sync:
            self._synced = (status, due_at)
        if self._outbox():
            await self._append(entry, sync_portal=sync, told=told)
            self._upsert_search_attributes()
            return
        await self._append(entry)
        self._upsert_search_attributes()
        if sync:
            await self._sync_portal(entry)

    async def _append(
        self, entry: TimelineEntry, sync_portal: bool = False, told: Sequence[Notification] = ()
    ) -> None:
        """Into the timeline, then into the audit log and the read model, keyed by run and
        position so a retry never writes twice and a reset's re-run steps are new events.
        With the outbox, what the step sends out (its portal sync, its notices, its webhooks
        when the status changed) is written in the same transaction."""
        self._timeline.append(entry)
        workflow.logger.info(
            "dossier %s: %s (%s)",
            self.filing.code,
            entry.step,
            entry.status.value,
            extra={"dossier_code": self.filing.code, "status": entry.status.value},
        )
        event_key = f"{workflow.info().run_id}:{len(self._timeline) - 1}"
        view = self.status()
        previous = self._timeline[-2].status if len(self._timeline) > 1 else None
        outbox = OutboxMessages()
        outboxed = self._outbox()
        if outboxed:
            outbox = OutboxMessages(
                portal_sync=self._portal_sync(entry) if sync_portal else None,
                notifications=tuple(told),
                webhooks=entry.status is not previous,
            )
        receipt = await workflow.execute_local_activity_method(
            ProjectionActivities.project,
            ProjectionRecord(
                event_key=event_key,
                event_type=event_type_of(entry.step),
                view=view,
                timeline=self._timeline,
                outbox=outbox,
            ),
            start_to_close_timeout=LOCAL_CALL,
        )
        if receipt.at is not None:  # the audit log's time for the step, the same on replay
            entry = self._timeline[-1] = entry.model_copy(update={"at": receipt.at})
        if not outboxed and receipt.subscribers and entry.status is not previous:
            # Not awaited: a receiver that is down must not hold the dossier.
            self._deliveries.append(
                workflow.start_activity_method(
                    WebhookActivities.deliver_webhooks,
                    WebhookEvent(
                        event_id=event_key,
                        dossier_code=view.code,
                        procedure_code=view.procedure_code,
                        status=entry.status.value,
                        portal_status_code=portal_code(entry.status),
                        step=entry.step,
                        at=entry.at,
                        due_at=entry.due_at,
                        receiving_unit=view.receiving_unit,
                        competent_unit=view.competent_unit,
                    ),
                    task_queue=lanes.NOTIFY,
                    start_to_close_timeout=REGISTRY_CALL,
                    schedule_to_close_timeout=WEBHOOK_WINDOW,
                    retry_policy=WEBHOOK_RETRY,
                )
            )

    def _portal_sync(self, entry: TimelineEntry) -> PortalSync:
        filing = self.filing
        return PortalSync(
            dossier_code=filing.code,
            procedure_code=filing.procedure.code,
            status_code=portal_code(entry.status),
            received_at=filing.received_at,
            due_at=entry.due_at,
            processing_unit=filing.competent_unit.code,
            intake_channel=INTAKE_CHANNEL_CODES[filing.submission.intake_channel.value],
            step=entry.step,
            actor=entry.actor,
            at=entry.at,
            returned_at=entry.at if entry.status is DossierStatus.RETURNED else None,
            **self._portal_record(),
        )

    async def _sync_portal(self, entry: TimelineEntry) -> None:
        """Dossiers opened before the outbox: the sync as an activity the dossier waits for;
        a refusal is a timeline step."""
        try:
            await workflow.execute_activity_method(
                PortalActivities.sync_portal,
                self._portal_sync(entry),
                task_queue=lanes.PORTAL,
                start_to_close_timeout=REGISTRY_CALL,
                retry_policy=TRANSIENT,
            )
        except ActivityError as err:
            if not is_rejection(err):
                raise
            # The portal mirrors the dossier; its refusal must not hold the citizen's dossier.
            await self._append(
                TimelineEntry(
                    at=workflow.now(),
                    status=entry.status,
                    step=TimelineStep.PORTAL_SYNC_REFUSED,
                    actor=SYSTEM,
                    note=rejection_message(err),
                    due_at=entry.due_at,
                    awaiting=entry.awaiting,
                )
            )

    def _portal_record(self) -> dict[str, Any]:
        """What the portal reads besides the status: applicant, documents, fees and payment,
        supplements, results, and the steps since the last sync as progress rows."""
        filing = self.filing
        procedure = filing.procedure
        submission = filing.submission
        applicant = submission.applicant
        rows = self._timeline[self._portal_rows_from :]
        self._portal_rows_from = len(self._timeline)
        steps = [e.step for e in self._timeline]
        fees: list[PortalFee] = []
        amount = fee_vnd(
            procedure,
            billable_pages(procedure, ((d.kind, d.pages) for d in submission.documents)),
            submission.copies,
            online=waived_online(filing),
        )
        if amount:
            fees.append(
                PortalFee(
                    name=f"Phí, lệ phí: {procedure.name}",
                    code=procedure.code,
                    amount_vnd=amount,
                    paid=TimelineStep.FEES_PAID in steps,
                )
            )
        return {
            "procedure_name": procedure.name,
            "procedure_field": procedure.field,
            "agency_code": filing.competent_unit.agency_code,
            "receiving_agency_code": filing.receiving_unit.agency_code,
            "applicant_name": applicant.full_name,
            "applicant_id": applicant.citizen_id,
            "applicant_type": APPLICANT_TYPE_CODES[applicant.kind.value],
            "applicant_phone": applicant.phone,
            "applicant_email": applicant.email,
            "documents": tuple(
                PortalDocument(kind=d.kind, title=d.title, sha256=d.sha256)
                for d in submission.documents
            ),
            "fees": tuple(fees),
            "supplements": tuple(_supplements(self._timeline)),
            "results": tuple(
                PortalResult(kind=d.kind.value, sha256=d.sha256) for d in self._result_documents
            ),
            "progress": tuple(
                PortalProgress(
                    actor=e.actor,
                    at=e.at,
                    step=e.step,
                    status_code=portal_code(e.status),
                    due_at=e.due_at,
                )
                for e in rows
            ),
        }

    def _upsert_search_attributes(self) -> None:
        """Only what changed: each upsert is a visibility write on the server, and a step
        that keeps the status (a claim, a warning already shown) needs none."""
        current = workflow.info().typed_search_attributes
        wanted: list[SearchAttributeUpdate[Any]] = [sa.STATUS.value_set(self._status.value)]
        if self._clock is not None:
            wanted += [
                sa.DUE_AT.value_set(self._clock.due_at),
                sa.OVERDUE.value_set(self._clock.overdue),
            ]
        # Dossiers opened before this rule upserted at every step: they keep doing so.
        if workflow.patched(UPSERT_ONLY_CHANGES):
            wanted = [u for u in wanted if current.get(u.key) != u.value]
            if not wanted:
                return
        workflow.upsert_search_attributes(wanted)

    # --- queries -------------------------------------------------------------------------------
    @workflow.query
    def status(self) -> DossierView:
        filing = self.filing
        return DossierView(
            code=filing.code,
            procedure_code=filing.procedure.code,
            procedure_version=filing.procedure.version,
            receiving_unit=filing.receiving_unit.code,
            competent_unit=filing.competent_unit.code,
            tier=filing.procedure.tier.value,
            lane=self._route.lane if self._route else lanes.INTAKE,
            stage=self._stage,
            status=self._status,
            portal_status_code=portal_code(self._status),
            received_at=filing.received_at,
            applicant_ref=masked(filing.submission.applicant.citizen_id),
            intake_channel=filing.submission.intake_channel,
            # A closed dossier's clock no longer runs, whatever it last did.
            clock=(
                self._clock.model_copy(update={"running": False})
                if self._clock is not None and self._stage is Stage.CLOSED
                else self._clock
            ),
            awaiting=self._awaiting,
            handled_by=self._handled_by,
            outcome=self._outcome,
            result_ready_at=self._result_ready_at,
            closed_at=self._closed_at,
            on_time=self._on_time() if self._stage is Stage.CLOSED else None,
            reason=self._reason,
        )

    @workflow.query
    def timeline(self) -> list[TimelineEntry]:
        return self._timeline


def _identity_problem(identity: IdentityResult) -> str | None:
    if identity.matched:
        return None
    return "identity does not match the population registry: " + ", ".join(identity.mismatches)


def _supplements(timeline: list[TimelineEntry]) -> list[PortalSupplement]:
    """Each return for a supplement with its answer, from the timeline."""
    found: list[PortalSupplement] = []
    for entry in timeline:
        if entry.step in SUPPLEMENT_ASKED:
            found.append(
                PortalSupplement(
                    number=len(found) + 1,
                    requested_by=entry.actor,
                    content=entry.note,
                    requested_at=entry.at,
                    due_before=entry.due_at,
                )
            )
        elif entry.step in SUPPLEMENT_GIVEN and found and found[-1].received_at is None:
            found[-1] = found[-1].model_copy(
                update={
                    "received_by": entry.actor,
                    "received_at": entry.at,
                    "due_after": entry.due_at,
                }
            )
    return found
