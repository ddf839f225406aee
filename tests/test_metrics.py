"""Workers serve Prometheus metrics: the SDK's runtime metrics and the per-lane dossier counters."""

from __future__ import annotations

import httpx

from tests.conftest import EngineStack
from tests.driver import result, submission, submit


async def test_runtime_and_dossier_metrics_are_served(stack: EngineStack) -> None:
    # A dossier that ends at intake still counts as closed, in the intake lane.
    code = await submit(stack, submission("1.001193", "tay-tuu", citizen=70, full_name="Tên Sai"))
    await result(stack, code)
    async with httpx.AsyncClient() as http:
        text = (await http.get(stack.metrics_url)).text
    assert "temporal_workflow_completed" in text or "temporal_request" in text
    closed = [line for line in text.splitlines() if line.startswith("dossiers_closed_total{")]
    assert any(
        'outcome="rejected_at_intake"' in line and 'lane="intake"' in line for line in closed
    )
