"""Only the engine acts on dossiers: an Update sent straight to Temporal, as the Temporal CLI
or a client without the deployment's payload keys would send it, is refused by the workers
and leaves the dossier as it was."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import FailureError

from schemas.actions import Action, Appraisal, Recommendation
from schemas.statuses import Role
from simulators.seed import sample_civil_packages
from tests.conftest import EngineStack
from tests.driver import act, officer, submission, submit, timeline, wait_for

BIRTH = "1.001193"


async def test_an_update_without_the_deployments_encryption_is_refused(
    stack: EngineStack,
) -> None:
    package = sample_civil_packages()[80].package_id
    code = await submit(
        stack, submission(BIRTH, "hoan-kiem", citizen=80, subject_reference=package)
    )
    before = await wait_for(stack, code, Action.APPRAISE)
    steps = await timeline(stack, code)
    lane = before.handled_by

    # The same server, the SDK's default converter: JSON payloads, no encryption.
    outsider = Client(stack.client.service_client, namespace=stack.client.namespace)
    step = Appraisal(
        officer=officer(Role.SPECIALIST, "hoan-kiem"), recommendation=Recommendation.APPROVE
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await outsider.get_workflow_handle(lane).execute_update(
            Action.APPRAISE.value, step.model_dump(mode="json")
        )
    # The outsider reads no reason (failures are encrypted too); the deployment does.
    cause = refused.value.cause
    assert isinstance(cause, FailureError) and cause.failure is not None
    assert "Encoded failure" in str(cause)
    reason = await stack.client.data_converter.decode_failure(cause.failure)
    chain = [reason, reason.__cause__]
    assert any("not encrypted with this deployment" in str(e) for e in chain), chain

    after = await wait_for(stack, code, Action.APPRAISE)
    assert after == before
    assert await timeline(stack, code) == steps
    # Through the engine, the same step is taken.
    await act(stack, code, Action.APPRAISE, step)
    await wait_for(stack, code, Action.APPROVE)
