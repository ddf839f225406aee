"""The certification fast lane (chứng thực): its own queue, so a surge of copies at one ward's
counter scales on its own workers. Decree 23/2015 as amended: certify, number in the
certification book, sign, collect the fee, hand back the same day."""

from __future__ import annotations

from temporalio import workflow

from domain.catalogue import book_entry as catalogue_book_entry
from domain.catalogue import book_scope
from schemas.actions import Acknowledgement, Action, Certification
from schemas.exchanges import ResultKind
from schemas.lanes import LaneJob, LaneResult
from schemas.lifecycle import TimelineStep
from schemas.statuses import DossierStatus, Outcome, Role
from workflows.lane import LaneUpdate, LaneWorkflow
from workflows.policies import LOCAL_CALL

with workflow.unsafe.imports_passed_through():
    from activities.books import BookActivities


CERTIFICATION_BOOKS = "certification-books"


@workflow.defn(name="Certification")
class CertificationWorkflow(LaneWorkflow):
    @workflow.run
    async def run(self, job: LaneJob) -> LaneResult:
        await self._begin()
        filing = self.filing
        unit = filing.competent_unit.code
        action = await self._await_step(
            [(Action.CERTIFY, Role.CERTIFIER, unit), (Action.REFUSE, Role.CERTIFIER, unit)],
            status=DossierStatus.IN_PROCESSING,
            step=TimelineStep.AWAITING_CERTIFICATION,
            note=f"{filing.submission.copies} copies, due {self.clock.state.due_at.isoformat()}",
        )
        if action is Action.WITHDRAW:
            return await self._withdrawn()
        self._decided = True
        if action is Action.REFUSE:
            return await self._refused()

        certification = self._take(Action.CERTIFY)
        assert isinstance(certification, Certification)
        year = workflow.now().year
        # Circular 01/2020/TT-BTP: copies, signatures and transactions each have their own
        # book and number series. A filing from before the books were split names none.
        procedure = filing.procedure
        own_book = procedure.certification_book is not None and workflow.patched(
            CERTIFICATION_BOOKS
        )
        number = await workflow.execute_local_activity_method(
            BookActivities.next_book_number,
            book_scope(procedure, unit, year) if own_book else f"certbook:{unit}:{year}",
            start_to_close_timeout=LOCAL_CALL,
        )
        book_entry = (
            catalogue_book_entry(procedure, number, year)
            if own_book
            else f"Số chứng thực {number}, quyển số 01/{year}-SCT/BS"
        )
        await self._report(
            DossierStatus.IN_PROCESSING,
            TimelineStep.CERTIFIED,
            certification.officer.officer_id,
            f"{book_entry}{self._on_behalf(certification.acting_for)}",
        )
        copy = await self._issue_signed(
            ResultKind.CERTIFIED_COPY,
            certification.officer,
            f"Chứng thực: {filing.procedure.name}. {book_entry}. {certification.note}".strip(),
            e_sign=filing.procedure.e_signed,
        )
        paid = await self._collect_fee()
        return await self._finish(Outcome.APPROVED, documents=[copy], fee_paid_vnd=paid)

    def updates(self) -> list[LaneUpdate]:
        return [
            *super().updates(),
            (Action.CERTIFY.value, self.certify, self._validate_certify),
        ]

    @workflow.update
    def certify(self, step: Certification) -> Acknowledgement:
        return self._accept(Action.CERTIFY, step)

    @certify.validator
    def _validate_certify(self, step: Certification) -> None:
        self._check(Action.CERTIFY, step.officer, step.acting_for)
