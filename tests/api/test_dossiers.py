"""Dossiers through the HTTP API alone: idempotent filing, a whole life, scoping between two
wards, refused steps."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType

from domain.catalogue import default_catalogue
from domain.codes import sequence_scope
from schemas.statuses import Role
from services import dossiers
from services.dossiers import IdempotencyKey
from simulators.seed import sample_civil_packages
from store.db import engine_for
from store.tables import sequences
from tests.api.conftest import (
    BA_DINH,
    HOAN_KIEM,
    ApiServer,
    awaiting,
    birth_submission,
    eventually,
    officer,
)
from tests.conftest import EngineStack
from tests.driver import submission as driver_submission


async def sequence_value(stack: EngineStack, unit: str) -> int:
    """Codes the unit's agency has drawn, every receipt day together: a count that does not
    depend on the day (or the hour) the test runs."""
    agency = default_catalogue().unit(unit).agency_code
    prefix = sequence_scope(agency, date.min).removesuffix(f"{date.min:%Y%m%d}")
    async with engine_for(stack.settings.database_url).connect() as conn:
        value = (
            await conn.execute(
                select(func.sum(sequences.c.last_value)).where(
                    sequences.c.scope.startswith(prefix, autoescape=True)
                )
            )
        ).scalar()
    return int(value or 0)


async def started_runs(stack: EngineStack, code: str) -> int:
    """Runs with this workflow id (visibility is eventual: wait for the first one)."""

    async def listed() -> list[object]:
        return [w async for w in stack.client.list_workflows(f"WorkflowId = '{code}'")]

    runs = await eventually(listed)
    await asyncio.sleep(0.5)  # a second run, had there been one, is listed by now
    runs = await listed()
    history = await stack.client.get_workflow_handle(code).fetch_history()
    started = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    ]
    assert len(started) == 1
    return len(runs)


async def file(
    client: httpx.AsyncClient,
    stack: EngineStack,
    body: dict[str, object],
    headers: dict[str, str] | None = None,
) -> str:
    response = await client.post(
        "/v1/dossiers",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4()), **(headers or {})},
    )
    assert response.status_code == 201, response.text
    code = str(response.json()["code"])
    stack.started.append(code)
    return code


async def test_concurrent_retries_file_one_dossier_and_another_body_conflicts(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    body = birth_submission(citizen=80)
    key = f"counter-retry-{uuid.uuid4()}"
    before = await sequence_value(stack, HOAN_KIEM)

    responses = await asyncio.gather(
        *(
            hoan_kiem.post("/v1/dossiers", json=body, headers={"Idempotency-Key": key})
            for _ in range(20)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({r.text for r in responses}) == 1  # the same answer, byte for byte
    receipt = responses[0].json()
    code = receipt["code"]
    stack.started.append(code)
    assert set(receipt) == {"code", "received_at", "due_at", "status"}
    assert receipt["status"] == "submitted"
    assert all(r.headers["location"] == f"/v1/dossiers/{code}" for r in responses)
    assert await sequence_value(stack, HOAN_KIEM) == before + 1  # one code allocated
    assert await started_runs(stack, code) == 1

    # Whitespace and key order are not a different body.
    spaced = json.dumps(dict(reversed(list(body.items()))), indent=4)
    again = await hoan_kiem.post(
        "/v1/dossiers",
        content=spaced,
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert (again.status_code, again.json()) == (200, receipt)

    other = await hoan_kiem.post(
        "/v1/dossiers",
        json={**body, "copies": 2},
        headers={"Idempotency-Key": key},
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert problem["type"] == "/problems/idempotency-conflict"
    assert problem["errors"] == [
        {"field": "Idempotency-Key", "rule": "already used with another body"}
    ]
    assert code in problem["detail"]
    assert await sequence_value(stack, HOAN_KIEM) == before + 1


async def test_concurrent_submits_in_the_service_start_one_workflow(stack: EngineStack) -> None:
    """What the API relies on across processes: the service alone, with no API lock."""
    sub = driver_submission(
        "1.001193", HOAN_KIEM, citizen=83, subject_reference=sample_civil_packages()[83].package_id
    )
    key = IdempotencyKey(system="service-test", key=str(uuid.uuid4()), body_digest="d" * 64)
    receipts = await asyncio.gather(
        *(
            dossiers.submit(
                stack.client, sub, default_catalogue(), stack.settings.database_url, key
            )
            for _ in range(10)
        )
    )
    codes = {r.code for r in receipts}
    assert len(codes) == 1
    [code] = codes
    stack.started.append(code)
    assert await started_runs(stack, code) == 1


async def test_a_dossier_from_submission_to_return_through_the_api_alone(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=81))
    act = f"/v1/dossiers/{code}/actions"

    await awaiting(hoan_kiem, code, "appraise")
    specialist = officer(Role.SPECIALIST, HOAN_KIEM)
    claimed = await hoan_kiem.post(f"{act}/claim", json={"officer": specialist})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["action"] == "claim"
    view = (await hoan_kiem.get(f"/v1/dossiers/{code}")).json()
    assert [a["claimed_by"] for a in view["awaiting"] if a["action"] == "appraise"] == [
        specialist["officer_id"]
    ]

    appraised = await hoan_kiem.post(
        f"{act}/appraise",
        json={"officer": specialist, "recommendation": "approve", "note": "đủ điều kiện"},
    )
    assert appraised.status_code == 200, appraised.text
    await awaiting(hoan_kiem, code, "approve")
    approved = await hoan_kiem.post(
        f"{act}/approve", json={"officer": officer(Role.LEADER, HOAN_KIEM)}
    )
    assert approved.status_code == 200, approved.text
    await awaiting(hoan_kiem, code, "hand_over")
    handed = await hoan_kiem.post(
        f"{act}/hand_over", json={"officer": officer(Role.COUNTER_OFFICER, HOAN_KIEM), "rating": 3}
    )
    assert handed.status_code == 200, handed.text

    async def returned() -> dict[str, object] | None:
        view = (await hoan_kiem.get(f"/v1/dossiers/{code}")).json()
        return view if view["stage"] == "closed" else None

    final = await eventually(returned)
    assert final["status"] == "returned" and final["portal_status_code"] == 10
    assert final["outcome"] == "approved"
    assert final["clock"]["due_at"] and final["awaiting"] == []

    timeline = (await hoan_kiem.get(f"/v1/dossiers/{code}/timeline")).json()
    assert timeline["code"] == code
    steps = [entry["step"] for entry in timeline["entries"]]
    assert steps[0] == "receipt and appointment slip" and steps[-1] == "closed: approved"
    assert "claimed" in steps
    # The officers' identities came with the steps and are in the timeline.
    assert {specialist["officer_id"], f"{HOAN_KIEM}.leader.1"} <= {
        entry["actor"] for entry in timeline["entries"]
    }

    async def out_of_inbox() -> bool:
        inbox = await hoan_kiem.get("/v1/inbox", params={"unit": HOAN_KIEM})
        assert inbox.status_code == 200, inbox.text
        return all(task["dossier_code"] != code for task in inbox.json()["items"])

    await eventually(out_of_inbox)

    async def listed_as_returned() -> dict[str, object] | None:
        page = await hoan_kiem.get("/v1/dossiers", params={"status": "returned", "limit": 200})
        assert page.status_code == 200, page.text
        return next((d for d in page.json()["items"] if d["code"] == code), None)

    row = await eventually(listed_as_returned)
    citizen_id = birth_submission(citizen=81)["applicant"]["citizen_id"]
    assert row["applicant_ref"] != citizen_id and "*" in row["applicant_ref"]
    assert "applicant" not in row and citizen_id not in json.dumps(row)
    assert row["on_time"] is True and row["receiving_unit"] == HOAN_KIEM


async def test_the_inbox_lists_a_units_open_tasks_until_they_are_done(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=84))
    await awaiting(hoan_kiem, code, "appraise")

    async def listed() -> list[dict[str, object]] | None:
        inbox = await hoan_kiem.get("/v1/inbox", params={"unit": HOAN_KIEM, "role": "specialist"})
        assert inbox.status_code == 200, inbox.text
        items: list[dict[str, object]] = inbox.json()["items"]
        return items if any(t["dossier_code"] == code for t in items) else None

    items = await eventually(listed)
    assert all(t["unit"] == HOAN_KIEM and t["role"] == "specialist" for t in items)
    dues = [t["due_at"] for t in items if t["due_at"] is not None]
    assert dues == sorted(dues)

    # The citizen withdraws before the decision: the task leaves the inbox.
    withdrawn = await hoan_kiem.post(
        f"/v1/dossiers/{code}/actions/withdraw",
        json={"officer": officer(Role.COUNTER_OFFICER, HOAN_KIEM), "reason": "công dân rút"},
    )
    assert withdrawn.status_code == 200, withdrawn.text

    async def gone() -> bool:
        inbox = await hoan_kiem.get("/v1/inbox", params={"unit": HOAN_KIEM})
        return code not in inbox.text

    await eventually(gone)
    assert (await hoan_kiem.get(f"/v1/dossiers/{code}")).json()["status"] == "withdrawn"


async def test_list_pages_with_an_opaque_cursor(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    codes = [await file(hoan_kiem, stack, birth_submission(citizen=c)) for c in (85, 86, 87)]

    async def all_listed() -> bool:
        page = (await hoan_kiem.get("/v1/dossiers", params={"limit": 200})).json()
        return set(codes) <= {d["code"] for d in page["items"]}

    await eventually(all_listed)
    seen: list[dict[str, str]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "procedure": "1.001193"}
        if cursor:
            params["cursor"] = cursor
        response = await hoan_kiem.get("/v1/dossiers", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    keys = [(d["received_at"], d["code"]) for d in seen]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    assert set(codes) <= {d["code"] for d in seen}
    # Newest received first.
    assert [d["code"] for d in seen if d["code"] in codes] == list(reversed(codes))

    bad = await hoan_kiem.get("/v1/dossiers", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"


def not_found(code: str) -> dict[str, object]:
    return {
        "type": "/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": f"code: no dossier {code}",
        "errors": [{"field": "code", "rule": f"no dossier {code}"}],
    }


async def test_a_key_sees_and_touches_only_its_units_dossiers(
    stack: EngineStack,
    api: ApiServer,
    hoan_kiem: httpx.AsyncClient,
    ba_dinh: httpx.AsyncClient,
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=82))
    await awaiting(hoan_kiem, code, "appraise")
    unknown = code[:-4] + "9999"

    for path in (f"/v1/dossiers/{code}", f"/v1/dossiers/{code}/timeline"):
        response = await ba_dinh.get(path)
        assert (response.status_code, response.json()) == (404, not_found(code))
    truly_unknown = await hoan_kiem.get(f"/v1/dossiers/{unknown}")
    assert (truly_unknown.status_code, truly_unknown.json()) == (404, not_found(unknown))
    # Acting with its own officer on another ward's dossier: the same 404, nothing happens.
    appraise = await ba_dinh.post(
        f"/v1/dossiers/{code}/actions/appraise",
        json={"officer": officer(Role.SPECIALIST, BA_DINH), "recommendation": "refuse"},
    )
    assert (appraise.status_code, appraise.json()) == (404, not_found(code))
    # Speaking for an officer of a unit (or in a role) the key does not hold: 403.
    foreign_officer = await ba_dinh.post(
        f"/v1/dossiers/{code}/actions/appraise",
        json={"officer": officer(Role.SPECIALIST, HOAN_KIEM), "recommendation": "refuse"},
    )
    assert foreign_officer.status_code == 403
    assert foreign_officer.json()["errors"][0]["field"] == "officer.unit"
    leader = await ba_dinh.post(
        f"/v1/dossiers/{code}/actions/approve", json={"officer": officer(Role.LEADER, BA_DINH)}
    )
    assert leader.status_code == 403 and leader.json()["errors"][0]["field"] == "officer.role"
    assert (await hoan_kiem.get(f"/v1/dossiers/{code}")).json()["status"] == "in_processing"

    # Lists: hoan-kiem's shows it once projected, ba-dinh's never.
    async def in_hoan_kiem_list() -> bool:
        page = (await hoan_kiem.get("/v1/dossiers", params={"limit": 200})).json()
        return any(d["code"] == code for d in page["items"])

    await eventually(in_hoan_kiem_list)
    page = await ba_dinh.get("/v1/dossiers", params={"limit": 200})
    assert page.status_code == 200
    assert all(BA_DINH in (d["receiving_unit"], d["competent_unit"]) for d in page.json()["items"])
    assert code not in page.text
    for path, params in (
        ("/v1/dossiers", {"unit": HOAN_KIEM}),
        ("/v1/inbox", {"unit": HOAN_KIEM}),
    ):
        response = await ba_dinh.get(path, params=params)
        assert response.status_code == 403 and response.json()["errors"][0]["field"] == "unit"

    # Filing for a counter that is not the key's: 403, and no code is used up.
    before = await sequence_value(stack, HOAN_KIEM)
    response = await ba_dinh.post(
        "/v1/dossiers",
        json=birth_submission(HOAN_KIEM, citizen=82),
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["field"] == "receiving_unit"
    assert await sequence_value(stack, HOAN_KIEM) == before


async def test_a_dossier_decided_at_another_ward_is_visible_to_both(
    stack: EngineStack,
    api: ApiServer,
    hoan_kiem: httpx.AsyncClient,
    ba_dinh: httpx.AsyncClient,
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=88, competent_unit=BA_DINH))
    await awaiting(ba_dinh, code, "appraise")
    view = (await ba_dinh.get(f"/v1/dossiers/{code}")).json()
    assert (view["receiving_unit"], view["competent_unit"]) == (HOAN_KIEM, BA_DINH)
    claimed = await ba_dinh.post(
        f"/v1/dossiers/{code}/actions/claim", json={"officer": officer(Role.SPECIALIST, BA_DINH)}
    )
    assert claimed.status_code == 200, claimed.text


async def test_a_refused_step_answers_409_with_the_validators_reason(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=89))
    await awaiting(hoan_kiem, code, "appraise")

    early = await hoan_kiem.post(
        f"/v1/dossiers/{code}/actions/approve", json={"officer": officer(Role.LEADER, HOAN_KIEM)}
    )
    assert early.status_code == 409
    assert early.headers["content-type"] == "application/problem+json"
    problem = early.json()
    assert problem["type"] == "/problems/action-refused"
    assert problem["detail"].startswith(f"approve is not possible now: dossier {code}")
    assert "appraise by specialist at hoan-kiem" in problem["detail"]

    # A role the key holds, but not the one the step needs: the workflow refuses it.
    wrong_role = await hoan_kiem.post(
        f"/v1/dossiers/{code}/actions/appraise",
        json={"officer": officer(Role.COUNTER_OFFICER, HOAN_KIEM), "recommendation": "approve"},
    )
    assert wrong_role.status_code == 409
    assert wrong_role.json()["detail"].startswith("appraise needs role specialist")
    # A role that does not exist: the schema's enum refuses it.
    bogus = await hoan_kiem.post(
        f"/v1/dossiers/{code}/actions/appraise",
        json={
            "officer": {**officer(Role.SPECIALIST, HOAN_KIEM), "role": "mayor"},
            "recommendation": "approve",
        },
    )
    assert bogus.status_code == 422 and bogus.json()["errors"][0]["field"] == "officer.role"
    # A step of another lane: the dossier's own terms, not the SDK's.
    certify = await hoan_kiem.post(
        f"/v1/dossiers/{code}/actions/certify", json={"officer": officer(Role.CERTIFIER, HOAN_KIEM)}
    )
    assert certify.status_code == 409, certify.text
    detail = certify.json()["detail"]
    assert detail.startswith(f"certify is not a step of dossier {code} in lane ward-processing")
    assert "awaiting appraise" in detail
    assert "handler" not in detail and "Update" not in detail
    timeline = (await hoan_kiem.get(f"/v1/dossiers/{code}/timeline")).json()
    assert not any("approv" in e["step"] for e in timeline["entries"])
