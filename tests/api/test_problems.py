"""Every refusal is a problem+json naming the field and the rule, and nothing is allocated or
started for a request that is refused."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx

from api.app import create_app
from domain.calendar import HANOI
from schemas.actions import Action
from schemas.statuses import Role
from store import api_keys
from tests.api.conftest import HOAN_KIEM, ApiServer, birth_submission, issue_key, officer
from tests.api.test_dossiers import sequence_value
from tests.conftest import EngineStack

PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == PROBLEM_KEYS and body["status"] == status
    return body


def fields(body: dict[str, Any]) -> list[str]:
    return [error["field"] for error in body["errors"]]


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = "fresh"
) -> httpx.Response:
    headers = {"Idempotency-Key": str(uuid.uuid4())} if key == "fresh" else {}
    return await client.post("/v1/dossiers", json=body, headers=headers)


async def test_bad_submissions_are_named_by_field_and_rule_and_allocate_nothing(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    good = birth_submission(citizen=90)
    before = await sequence_value(stack, HOAN_KIEM)

    missing_key = problem(await post(hoan_kiem, good, key=None), 400)
    assert fields(missing_key) == ["Idempotency-Key"]
    assert "Idempotency-Key" in missing_key["detail"]
    too_long = await hoan_kiem.post(
        "/v1/dossiers", json=good, headers={"Idempotency-Key": "k" * 201}
    )
    assert fields(problem(too_long, 400)) == ["Idempotency-Key"]

    bad_id = {**good, "applicant": {**good["applicant"], "citizen_id": "12345"}}
    body = problem(await post(hoan_kiem, bad_id), 422)
    assert fields(body) == ["applicant.citizen_id"]
    assert body["errors"][0]["rule"] and not body["errors"][0]["rule"].startswith("Value error")

    unknown = problem(await post(hoan_kiem, {**good, "procedure_code": "9.999999"}), 422)
    assert unknown["errors"] == [
        {"field": "procedure_code", "rule": "unknown procedure code 9.999999"}
    ]
    assert unknown["type"] == "/problems/filing-refused"

    future = (datetime.now(HANOI) + timedelta(days=2)).isoformat()
    late = problem(await post(hoan_kiem, {**good, "received_at": future}), 422)
    assert late["errors"] == [{"field": "received_at", "rule": "must not be in the future"}]
    old = (datetime.now(HANOI) - timedelta(days=90)).isoformat()
    assert fields(problem(await post(hoan_kiem, {**good, "received_at": old}), 422)) == [
        "received_at"
    ]
    naive = problem(await post(hoan_kiem, {**good, "received_at": "2026-01-01T08:00:00"}), 422)
    assert fields(naive) == ["received_at"]

    nested = {**good, "documents": [{"kind": "Bad Kind!", "title": ""}]}
    assert set(fields(problem(await post(hoan_kiem, nested), 422))) == {
        "documents.0.kind",
        "documents.0.title",
    }
    assert fields(problem(await post(hoan_kiem, {**good, "colour": "red"}), 422)) == ["colour"]
    not_json = await hoan_kiem.post(
        "/v1/dossiers",
        content=b"{not json",
        headers={"Idempotency-Key": "x", "Content-Type": "application/json"},
    )
    assert problem(not_json, 422)["errors"][0]["rule"].startswith("not valid JSON")
    surrogate = await hoan_kiem.post(
        "/v1/dossiers",
        content=b'{"procedure_code": "1.001193", "receiving_unit": "hoan-kiem", '
        b'"applicant": {"citizen_id": "' + good["applicant"]["citizen_id"].encode() + b'", '
        b'"full_name": "A \\ud800 B", "date_of_birth": "1990-01-01"}, '
        b'"documents": [{"kind": "to_khai", "title": "x"}]}',
        headers={"Idempotency-Key": "surrogate", "Content-Type": "application/json"},
    )
    assert fields(problem(surrogate, 422)) == ["applicant.full_name"]

    assert await sequence_value(stack, HOAN_KIEM) == before


async def test_oversized_bodies_are_refused_before_parsing(
    api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    padding = "x" * (300 * 1024)
    declared = await hoan_kiem.post(
        "/v1/dossiers",
        json={**birth_submission(citizen=90), "subject_reference": padding},
        headers={"Idempotency-Key": "big"},
    )
    assert "body" in problem(declared, 413)["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit holds on what arrives.
        for _ in range(30):
            yield b" " * (10 * 1024)

    streamed = await hoan_kiem.post(
        "/v1/dossiers",
        content=chunks(),
        headers={"Idempotency-Key": "big", "Content-Type": "application/json"},
    )
    problem(streamed, 413)
    # Answered at once, not after the server gave up waiting for the rest of the body.
    assert declared.elapsed.total_seconds() < 3 and streamed.elapsed.total_seconds() < 3


async def test_requests_without_an_active_key_are_401(stack: EngineStack, api: ApiServer) -> None:
    async with api.client(None) as anonymous:
        body = problem(await anonymous.get("/v1/dossiers"), 401)
        assert body["type"] == "/problems/unauthorized"
        response = await anonymous.post("/v1/dossiers", content=b"{not json")
        problem(response, 401)  # the key is checked before the body is read
        bulky = await anonymous.post("/v1/dossiers", content=b" " * (200 * 1024))
        problem(bulky, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    async with api.client("dk_000000000000_" + "A" * 43) as unknown:
        problem(await unknown.get("/v1/inbox", params={"unit": HOAN_KIEM}), 401)
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Basic {api.hoan_kiem_key}"}
    ) as basic:
        problem(await basic.get("/v1/dossiers"), 401)

    database_url = stack.settings.database_url
    key = await issue_key(database_url, "counter-revoked", [HOAN_KIEM], [Role.LEADER.value])
    async with api.client(key) as client:
        assert (await client.get("/v1/webhooks")).status_code == 200
        await api_keys.revoke(database_url, "counter-revoked")
        problem(await client.get("/v1/webhooks"), 401)
        # A key with another secret but the same prefix is not the key.
        forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    async with api.client(forged) as client:
        problem(await client.get("/v1/webhooks"), 401)


async def test_unknown_routes_and_methods_are_problems_too(
    api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    assert problem(await hoan_kiem.get("/v1/nothing-here"), 404)["type"] == "/problems/not-found"
    problem(await hoan_kiem.post("/v1/dossiers/000.01.01.H26-261127-0001/actions/dance"), 404)
    problem(await hoan_kiem.delete("/v1/dossiers"), 405)
    bad_code = problem(await hoan_kiem.get("/v1/dossiers/not-a-code"), 422)
    assert fields(bad_code) == ["code"]
    bad_query = problem(await hoan_kiem.get("/v1/dossiers", params={"limit": 0}), 422)
    assert fields(bad_query) == ["limit"]
    assert fields(problem(await hoan_kiem.get("/v1/inbox"), 422)) == ["unit"]
    assert fields(problem(await hoan_kiem.delete("/v1/webhooks/%00"), 422)) == ["webhook_id"]
    forged = base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+23:59","x"]').decode()
    assert fields(problem(await hoan_kiem.get("/v1/dossiers", params={"cursor": forged}), 422)) == [
        "cursor"
    ]
    step = {"officer": {**officer(Role.SPECIALIST, HOAN_KIEM), "officer_id": "a\x00b"}}
    nul = await hoan_kiem.post("/v1/dossiers/000.01.01.H26-261127-0001/actions/claim", json=step)
    assert fields(problem(nul, 422)) == ["officer.officer_id"]
    # One officer identity: what the signing service accepts as a signer. A name is not an id,
    # and is refused here instead of stopping the dossier at signing.
    named = {"officer": {**officer(Role.LEADER, HOAN_KIEM), "officer_id": "Lê Hoa"}}
    refused = await hoan_kiem.post(
        "/v1/dossiers/000.01.01.H26-261127-0001/actions/approve", json=named
    )
    body = problem(refused, 422)
    assert fields(body) == ["officer.officer_id"]
    assert "[A-Za-z0-9][A-Za-z0-9._-]{0,63}" in json.dumps(body, ensure_ascii=False)


async def test_health_readiness_and_the_openapi_document(
    stack: EngineStack, api: ApiServer
) -> None:
    async with api.client(None) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        document = (await client.get("/openapi.json")).json()
    submit = document["paths"]["/v1/dossiers"]["post"]
    assert {"200", "201", "400", "401", "403", "409", "413", "422"} <= set(submit["responses"])
    assert "application/problem+json" in submit["responses"]["422"]["content"]
    actions = [p for p in document["paths"] if "/actions/" in p]
    assert len(actions) == len(Action)

    # A database that does not answer: not ready, and says which.
    broken = stack.settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    app = create_app(stack.client, broken)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        body = problem(await client.get("/readyz"), 503)
        assert fields(body) == ["database"]
        assert (await client.get("/healthz")).status_code == 200
