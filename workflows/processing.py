"""Processing at the competent unit: a ward, or a city department on the city lane.

Decree 61/2018 art. 19: the unit consults the registries, a specialist appraises (or, once and
within 3 working days of receipt, returns the dossier for a supplement listing everything
missing: art. 19(4)), the leader approves or refuses, the result is signed and fees are paid.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

from schemas.actions import (
    Acknowledgement,
    Action,
    Appraisal,
    Approval,
    Supplement,
    SupplementRequest,
)
from schemas.exchanges import RegistryConsultation, RegistryFinding, ResultKind
from schemas.lanes import LaneJob, LaneResult
from schemas.lifecycle import TimelineStep
from schemas.statuses import DossierStatus, Outcome, Role
from workflows import notices
from workflows.lane import SYSTEM, LaneUpdate, LaneWorkflow
from workflows.policies import REGISTRY_CALL, TRANSIENT, is_rejection, rejection_message

with workflow.unsafe.imports_passed_through():
    from activities.registries import RegistryActivities
    from domain import lanes
    from domain.calendar import HANOI

# Art. 19(4): the supplement request window is kept from receipt.
SUPPLEMENT_WINDOW = "supplement-window-art-19-4"


@workflow.defn(name="Processing")
class ProcessingWorkflow(LaneWorkflow):
    @workflow.init
    def __init__(self, job: LaneJob) -> None:
        super().__init__(job)
        self._missing: list[str] = []
        # Art. 19(4): how many times the dossier went back for a supplement, and until when it
        # may (None: dossiers begun before the window was kept, or a text without a window).
        self._supplements = 0
        self._supplement_by: datetime | None = None

    @workflow.run
    async def run(self, job: LaneJob) -> LaneResult:
        await self._begin()
        filing = self.filing
        unit = filing.competent_unit.code
        window = filing.procedure.supplement_window_days
        if workflow.patched(SUPPLEMENT_WINDOW) and window is not None:
            self._supplement_by = await self.clock.supplement_window_end(window)
        findings = await self._consult_registries()

        # Appraisal by a specialist; a supplement request sends the dossier back to the citizen.
        note = "; ".join(
            f"{f.registry.value}: {'found' if f.found else f.summary}" for f in findings
        )
        step, actor = TimelineStep.REGISTRIES_CONSULTED, SYSTEM
        since: datetime | None = None
        while True:
            expected = [(Action.APPRAISE, Role.SPECIALIST, unit)]
            if self._supplements < filing.procedure.supplement_requests:
                expected.append((Action.REQUEST_SUPPLEMENT, Role.SPECIALIST, unit))
            action = await self._await_step(
                expected,
                status=DossierStatus.IN_PROCESSING,
                step=step,
                actor=actor,
                note=note,
                at=since,
            )
            if action is Action.WITHDRAW:
                return await self._withdrawn()
            if action is Action.APPRAISE:
                break
            supplied = await self._supplement_round()
            if supplied is None:
                return await self._withdrawn()
            supplement, since = supplied
            step, actor = TimelineStep.SUPPLEMENT_RECEIVED, supplement.officer.officer_id
            note = f"appointment now {self.clock.state.due_at.isoformat()}"

        appraisal = self._take(Action.APPRAISE)
        assert isinstance(appraisal, Appraisal)
        action = await self._await_step(
            [(Action.APPROVE, Role.LEADER, unit), (Action.REFUSE, Role.LEADER, unit)],
            status=DossierStatus.IN_PROCESSING,
            step=TimelineStep.APPRAISED,
            actor=appraisal.officer.officer_id,
            note=f"recommends {appraisal.recommendation.value}. {appraisal.note}".strip(),
        )
        if action is Action.WITHDRAW:
            return await self._withdrawn()
        self._decided = True
        if action is Action.REFUSE:
            return await self._refused()

        approval = self._take(Action.APPROVE)
        assert isinstance(approval, Approval)
        await self._report(
            DossierStatus.IN_PROCESSING,
            TimelineStep.APPROVED,
            approval.officer.officer_id,
            approval.note,
        )
        decision = await self._issue_signed(
            ResultKind.DECISION,
            approval.officer,
            f"Phê duyệt: {filing.procedure.name}. {approval.note}".strip(),
            e_sign=filing.procedure.e_signed,
        )
        paid = await self._collect_fee()
        return await self._finish(Outcome.APPROVED, documents=[decision], fee_paid_vnd=paid)

    async def _consult_registries(self) -> list[RegistryFinding]:
        """The control sheet's consultations: every registry the procedure names, at once."""
        filing = self.filing
        registries = filing.procedure.registries
        results = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    RegistryActivities.consult_registry,
                    RegistryConsultation(
                        dossier_code=filing.code,
                        registry=registry,
                        subject_reference=filing.submission.subject_reference,
                        citizen_id=filing.submission.applicant.citizen_id,
                    ),
                    task_queue=lanes.REGISTRY_QUEUES[registry],
                    start_to_close_timeout=REGISTRY_CALL,
                    retry_policy=TRANSIENT,
                )
                for registry in registries
            ),
            return_exceptions=True,
        )
        findings: list[RegistryFinding] = []
        for registry, result in zip(registries, results, strict=True):
            if not isinstance(result, BaseException):
                findings.append(result)
            elif isinstance(result, ActivityError) and is_rejection(result):
                # A registry's refusal is a finding for the specialist to weigh, not a fault.
                findings.append(
                    RegistryFinding(
                        registry=registry, found=False, summary=rejection_message(result)
                    )
                )
            else:
                raise result
        return findings

    async def _supplement_round(self) -> tuple[Supplement, datetime] | None:
        """Returns the supplement and the instant the clock counts from again, or None when
        the citizen withdrew instead."""
        request = self._take(Action.REQUEST_SUPPLEMENT)
        assert isinstance(request, SupplementRequest)
        self._missing = list(request.missing)
        stopped_at = await self.clock.stop()
        await notices.send(
            notices.to_applicant(
                self.filing,
                "supplement_requested",
                f"Hồ sơ {self.filing.code} cần bổ sung: {', '.join(request.missing)}",
            )
        )
        action = await self._await_step(
            [(Action.PROVIDE_SUPPLEMENT, Role.COUNTER_OFFICER, self.filing.receiving_unit.code)],
            status=DossierStatus.SUPPLEMENT_REQUESTED,
            step=TimelineStep.SUPPLEMENT_REQUESTED,
            actor=request.officer.officer_id,
            note=f"missing: {', '.join(request.missing)}. {request.note}".strip(),
            at=stopped_at,
            # The wait is the citizen's, not an officer's.
            escalate=False,
        )
        if action is Action.WITHDRAW:
            return None
        supplement = self._take(Action.PROVIDE_SUPPLEMENT)
        assert isinstance(supplement, Supplement)
        self._missing = []
        resumed_at = await self.clock.resume()
        return supplement, resumed_at

    # --- human steps -----------------------------------------------------------------------
    def updates(self) -> list[LaneUpdate]:
        return [
            *super().updates(),
            (Action.APPRAISE.value, self.appraise, self._validate_appraise),
            (
                Action.REQUEST_SUPPLEMENT.value,
                self.request_supplement,
                self._validate_request_supplement,
            ),
            (
                Action.PROVIDE_SUPPLEMENT.value,
                self.provide_supplement,
                self._validate_provide_supplement,
            ),
            (Action.APPROVE.value, self.approve, self._validate_approve),
        ]

    @workflow.update
    def appraise(self, step: Appraisal) -> Acknowledgement:
        return self._accept(Action.APPRAISE, step)

    @appraise.validator
    def _validate_appraise(self, step: Appraisal) -> None:
        self._check(Action.APPRAISE, step.officer)

    @workflow.update
    def request_supplement(self, step: SupplementRequest) -> Acknowledgement:
        self._supplements += 1
        return self._accept(Action.REQUEST_SUPPLEMENT, step)

    @request_supplement.validator
    def _validate_request_supplement(self, step: SupplementRequest) -> None:
        if any(a.action == Action.APPRAISE.value for a in self._awaiting):
            refusal = self._supplement_refusal()
            if refusal is not None:
                raise ValueError(refusal)
        self._check(Action.REQUEST_SUPPLEMENT, step.officer)

    def _supplement_refusal(self) -> str | None:
        """Why the dossier may not go back for a supplement now (Decree 61/2018 art. 19(4):
        once, within 3 working days of receipt, listing everything; the procedure's own text,
        named in the catalogue, may say otherwise)."""
        procedure = self.filing.procedure
        basis = procedure.supplement_text or "Decree 61/2018 art. 19(4)"
        code = self.filing.code
        if self._supplements >= procedure.supplement_requests:
            allowed = (
                "once"
                if procedure.supplement_requests == 1
                else (f"{procedure.supplement_requests} times")
            )
            return (
                f"request_supplement: dossier {code} was already returned for a supplement; "
                f"{basis} allows it {allowed}, listing everything missing at once"
            )
        if self._supplement_by is not None and workflow.now() > self._supplement_by:
            return (
                f"request_supplement: too late for dossier {code}; {basis} allows it within "
                f"{procedure.supplement_window_days} working days of receipt, until "
                f"{self._supplement_by.astimezone(HANOI):%d/%m/%Y %H:%M}"
            )
        return None

    @workflow.update
    def provide_supplement(self, step: Supplement) -> Acknowledgement:
        return self._accept(Action.PROVIDE_SUPPLEMENT, step)

    @provide_supplement.validator
    def _validate_provide_supplement(self, step: Supplement) -> None:
        self._check(Action.PROVIDE_SUPPLEMENT, step.officer)
        given = {document.kind for document in step.documents}
        still_missing = [kind for kind in self._missing if kind not in given]
        if still_missing:
            raise ValueError(
                f"documents: the supplement must include every requested document; "
                f"missing {', '.join(still_missing)}"
            )

    @workflow.update
    def approve(self, step: Approval) -> Acknowledgement:
        return self._accept(Action.APPROVE, step)

    @approve.validator
    def _validate_approve(self, step: Approval) -> None:
        self._check(Action.APPROVE, step.officer)
