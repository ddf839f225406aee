"""Documents a lane issues (the decision, a certified copy, a refusal notice, an apology
slip), made and, where the procedure says so, e-signed on the signing lane."""

from __future__ import annotations

from temporalio import workflow

from schemas.dossier import DossierFiling, Officer
from schemas.exchanges import IssuedDocument, IssueRequest, ResultDraft, ResultKind
from workflows.policies import SIGNING_CALL, SIGNING_HEARTBEAT, TRANSIENT

with workflow.unsafe.imports_passed_through():
    from activities.documents import DocumentActivities
    from domain import lanes


async def issue(
    filing: DossierFiling, kind: ResultKind, officer: Officer, text: str, *, e_sign: bool
) -> IssuedDocument:
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
        # A signing attempt lost with its worker is retried within this, not SIGNING_CALL.
        heartbeat_timeout=SIGNING_HEARTBEAT,
        retry_policy=TRANSIENT,
    )
