"""Schemathesis against the live server's /openapi.json: whatever a client sends, the answer is
never a 5xx and always matches the document (problem+json 4xx included)."""

from __future__ import annotations

import asyncio
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.actions import Action
from simulators.seed import sample_citizens
from tests.api.conftest import BIRTH, HOAN_KIEM, ApiServer

# Enough to walk every operation's rules, bounded for a 2-core machine.
EXAMPLES = 25
# Any status the operation does not declare fails too: the document lists them all.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SUBMIT = ("POST", "/v1/dossiers")
# Real procedures, so some fuzzed filings get past the catalogue into the rest of the rules.
PROCEDURES = [BIRTH, "2.000815", "1.001612"]


def _at_our_counter(strategy: Any) -> Any:
    """Filings at the key's own counter by known citizens: a random receiving unit or citizen
    ID would stop every one at the 403 or the ID check, before the filing rules."""

    def place(drawn: tuple[Any, str | None, str]) -> Any:
        case, procedure, citizen_id = drawn
        if isinstance(case.body, dict):
            case.body["receiving_unit"] = HOAN_KIEM
            if procedure is not None:
                case.body["procedure_code"] = procedure
            if isinstance(case.body.get("applicant"), dict):
                case.body["applicant"]["citizen_id"] = citizen_id
        return case

    citizen_ids = st.sampled_from([c.citizen_id for c in sample_citizens()[:20]])
    return st.tuples(strategy, st.none() | st.sampled_from(PROCEDURES), citizen_ids).map(place)


def _fuzz(url: str, key: str, filed: list[str]) -> list[str]:
    auth = {"Authorization": f"Bearer {key}"}
    document = schemathesis.openapi.from_url(f"{url}/openapi.json")
    # Subscriptions would outlive the run (and deletes are not safe to fuzz): reads, filing
    # and the human steps only. A fuzzed step never reaches a real dossier: 403, 404 or 422.
    schema = document.exclude(path_regex=r"^/v1/webhooks")
    fuzzed: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the document does not load: {result.err()}")
        operation = result.ok()
        submit = (operation.method.upper(), operation.path) == SUBMIT
        modes = [GenerationMode.POSITIVE]
        if submit:
            modes.append(GenerationMode.NEGATIVE)  # invalid bodies must be 4xx, never 5xx
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode)
            if submit:
                strategy = _at_our_counter(strategy)

            @given(case=strategy)
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=url, headers=auth, checks=CHECKS, timeout=30
                )
                if (case.method.upper(), case.path) == SUBMIT and response.status_code == 201:
                    filed.append(response.json()["code"])

            run()
            fuzzed.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    return fuzzed


async def test_no_input_gets_a_5xx_and_every_answer_matches_the_document(api: ApiServer) -> None:
    # Schemathesis calls synchronously; the server runs on this event loop, so the calls go
    # from a thread while the loop keeps serving.
    filed: list[str] = []
    try:
        fuzzed = await asyncio.to_thread(_fuzz, api.url, api.hoan_kiem_key, filed)
    finally:
        api.stack.started.extend(filed)  # fuzzed dossiers' histories are replayed too
    assert "POST /v1/dossiers negative" in fuzzed
    assert "GET /v1/dossiers/{code}/timeline positive" in fuzzed
    assert len([f for f in fuzzed if "/actions/" in f]) == len(Action)
    assert "POST /v1/units/{unit}/certification-sharing positive" in fuzzed
