"""Reset a dossier's workflow to an earlier workflow task, as an audited operator action.

Temporal's reset has no high-level client method in this SDK: this wraps the service call.
The reset is recorded in the dossier's audit chain (who, why, from which run to which); the
steps that run again afterwards are written as new events of the new run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client

from ops.audit import OPERATOR_KEY_PREFIX
from store import audit


class OperatorReset(BaseModel):
    """The audit payload of a reset."""

    model_config = ConfigDict(frozen=True)

    operator: str
    reason: str
    workflow_id: str
    run_id_before: str
    workflow_task_finish_event_id: int


async def reset_dossier(
    client: Client,
    conn: AsyncConnection,
    *,
    code: str,
    workflow_task_finish_event_id: int,
    operator: str,
    reason: str,
) -> str:
    """Returns the new run's id."""
    if not reason.strip():
        raise ValueError("reason: a reset needs a reason for the audit log")
    handle = client.get_workflow_handle(code)
    before = (await handle.describe()).run_id
    action = OperatorReset(
        operator=operator,
        reason=reason,
        workflow_id=code,
        run_id_before=before,
        workflow_task_finish_event_id=workflow_task_finish_event_id,
    )
    # Written first, inside the caller's transaction: the event precedes every step the new
    # run writes, and a reset the server refuses leaves no event (the transaction rolls back).
    await audit.append(
        conn,
        dossier_code=code,
        event_key=f"{OPERATOR_KEY_PREFIX}{uuid.uuid4()}",
        event_type="operator_reset",
        actor=operator,
        at=datetime.now(UTC),
        payload=audit.canonical(action),
    )
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=code, run_id=before),
            reason=f"{operator}: {reason}",
            workflow_task_finish_event_id=workflow_task_finish_event_id,
            request_id=str(uuid.uuid4()),
        )
    )
    return response.run_id
