"""Schemathesis' stateful mode against the real stack: it follows the document's links from a
filing to every step and read of that dossier, and from each step back to the reads, and fails
on any 5xx, any answer outside the document and any status the operation does not declare."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.statuses import Action
from simulators.seed import sample_citizens
from tests.api.conftest import BIRTH, HOAN_KIEM, ApiServer, birth_submission

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SUBMIT = "POST /v1/dossiers"
READS = {"GET /v1/dossiers/{code}", "GET /v1/dossiers/{code}/timeline"}
# Bounded for a 2-core machine: about a minute with the workers filing and stepping.
SCENARIOS = 12
STEPS = 12


def _label(case: Any) -> str:
    return f"{case.method.upper()} {case.path}"


def _machine(url: str, key: str, filed: list[str], called: set[str]) -> Any:
    document = schemathesis.openapi.from_url(f"{url}/openapi.json")
    # Subscriptions would outlive the run; the dossiers' operations are what links chain.
    schema = document.include(path_regex=r"^/v1/dossiers")
    base = schema.as_state_machine()
    citizens = itertools.cycle([c for c in range(len(sample_citizens()[:30]))])
    submissions = itertools.count()

    class Dossiers(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            label = _label(case)
            if label == SUBMIT and isinstance(case.body, dict):
                # Every other filing is a complete one at the key's own counter, so the links
                # lead to a real dossier; the others keep the fuzzed body (a 4xx).
                if next(submissions) % 2 == 0:
                    case.body = birth_submission(citizen=next(citizens))
                else:
                    case.body["receiving_unit"] = HOAN_KIEM
                    case.body["procedure_code"] = BIRTH
            elif "/actions/" in case.path and isinstance(case.body, dict):
                officer = case.body.get("officer")
                if isinstance(officer, dict):
                    officer["unit"] = HOAN_KIEM  # the key's unit: the workflow decides the rest

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": url, "headers": {"Authorization": f"Bearer {key}"}, "timeout": 30}

        def after_call(self, response: Any, case: Any) -> None:
            called.add(f"{_label(case)} {response.status_code}")
            if _label(case) == SUBMIT and response.status_code == 201:
                filed.append(response.json()["code"])

        def validate_response(
            self,
            response: Any,
            case: Any,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    return Dossiers


def _links_of(machine: Any) -> dict[str, set[str]]:
    """Each operation and the operations whose answers link to it."""
    return {
        label: {link.source.label for link in operations.incoming}
        for label, operations in machine._transitions.operations.items()
    }


def _run(url: str, key: str, filed: list[str], called: set[str]) -> dict[str, set[str]]:
    machine = _machine(url, key, filed, called)
    machine.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    return _links_of(machine)


async def test_submit_act_read_chains_never_leave_the_document(api: ApiServer) -> None:
    filed: list[str] = []
    called: set[str] = set()
    try:
        # Schemathesis calls synchronously; the server runs on this loop: call from a thread.
        links = await asyncio.to_thread(_run, api.url, api.hoan_kiem_key, filed, called)
    finally:
        api.stack.started.extend(filed)  # their histories are replayed too
    # The links reach every step and read of a filed dossier, and each step leads back.
    for action in Action:
        step = f"POST /v1/dossiers/{{code}}/actions/{action.value}"
        assert SUBMIT in links[step], step
        for read in READS:
            assert step in links[read], (step, read)
    for read in READS:
        assert SUBMIT in links[read]
    # And the run followed them: dossiers filed, steps taken on them, read back.
    assert filed, called
    assert any(c.startswith(SUBMIT) for c in called)
    assert any("/actions/" in c for c in called), called
    assert any(c.startswith(tuple(READS)) and c.endswith(" 200") for c in called), " | ".join(
        sorted(called)
    )
