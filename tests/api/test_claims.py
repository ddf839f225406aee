"""Who holds a task, through the HTTP API on the real stack: a claim reserves it, its holder
releases it, the unit's leader reassigns it or delegates their own, and a ward in a surge
shares its certification with a neighbour's certifiers for a while."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from domain.calendar import HANOI
from schemas.statuses import Role
from store.db import engine_for
from store.tables import audit_events
from tests.api.conftest import (
    HOAN_KIEM,
    ApiServer,
    awaiting,
    birth_submission,
    eventually,
    issue_key,
    officer,
)
from tests.api.test_dossiers import file
from tests.conftest import EngineStack
from tests.driver import submission

CERTIFIED_COPY = "2.000815"  # chứng thực bản sao từ bản chính: same day, at the ward
CUA_NAM = "cua-nam"


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    return problem


async def steps_of(client: httpx.AsyncClient, code: str) -> list[dict[str, Any]]:
    timeline = await client.get(f"/v1/dossiers/{code}/timeline")
    assert timeline.status_code == 200, timeline.text
    entries: list[dict[str, Any]] = timeline.json()["entries"]
    return entries


async def audited(stack: EngineStack, code: str, event_type: str) -> list[str]:
    """The actors of the dossier's audit events of this type, once the projection wrote them."""

    async def written() -> list[str]:
        async with engine_for(stack.settings.database_url).connect() as conn:
            rows = await conn.execute(
                audit_events.select().where(
                    audit_events.c.dossier_code == code, audit_events.c.event_type == event_type
                )
            )
            return [str(row.actor) for row in rows]

    written.__name__ = f"{code} audited {event_type}"
    actors: list[str] = await eventually(written)
    return actors


async def test_a_claim_reserves_the_task_until_released_or_reassigned(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=61))
    act = f"/v1/dossiers/{code}/actions"
    await awaiting(hoan_kiem, code, "appraise")
    first = officer(Role.SPECIALIST, HOAN_KIEM, 1)
    second = officer(Role.SPECIALIST, HOAN_KIEM, 2)
    appraisal = {"recommendation": "approve", "note": "đủ điều kiện"}

    claimed = await hoan_kiem.post(f"{act}/claim", json={"officer": first})
    assert claimed.status_code == 200, claimed.text

    # Another specialist of the unit can neither take the step nor claim the task.
    refused = problem_of(
        await hoan_kiem.post(f"{act}/appraise", json={"officer": second, **appraisal}), 409
    )
    assert refused["type"] == "/problems/action-refused"
    detail = refused["detail"]
    assert f"held by {first['officer_id']} since " in detail
    assert f"freed when {first['officer_id']} releases it or the leader of {HOAN_KIEM}" in detail
    problem_of(await hoan_kiem.post(f"{act}/claim", json={"officer": second}), 409)
    # Nor release what they do not hold.
    not_held = problem_of(
        await hoan_kiem.post(f"{act}/release", json={"officer": second, "reason": "workload"}),
        409,
    )
    assert "holds no task" in not_held["detail"]
    # A reason outside the named ones is refused before it reaches the dossier.
    bad_reason = problem_of(
        await hoan_kiem.post(f"{act}/release", json={"officer": first, "reason": "bored"}), 422
    )
    assert bad_reason["errors"][0]["field"] == "reason"

    # The holder releases it: the other specialist may claim it now.
    released = await hoan_kiem.post(
        f"{act}/release", json={"officer": first, "reason": "absent", "note": "đi công tác"}
    )
    assert released.status_code == 200, released.text
    view = (await hoan_kiem.get(f"/v1/dossiers/{code}")).json()
    assert [a["claimed_by"] for a in view["awaiting"] if a["action"] == "appraise"] == [None]
    claimed = await hoan_kiem.post(f"{act}/claim", json={"officer": second})
    assert claimed.status_code == 200, claimed.text

    # A specialist may not reassign: only the unit's leader.
    not_leader = problem_of(
        await hoan_kiem.post(
            f"{act}/reassign",
            json={
                "officer": second,
                "task": "appraise",
                "to": first["officer_id"],
                "reason": "workload",
            },
        ),
        409,
    )
    assert f"only the leader of {HOAN_KIEM} may reassign" in not_leader["detail"]

    # The leader gives it back to the first specialist, who appraises; the second cannot.
    leader = officer(Role.LEADER, HOAN_KIEM)
    reassigned = await hoan_kiem.post(
        f"{act}/reassign",
        json={
            "officer": leader,
            "task": "appraise",
            "to": first["officer_id"],
            "reason": "conflict_of_interest",
            "note": "người thân của đương sự",
        },
    )
    assert reassigned.status_code == 200, reassigned.text
    problem_of(await hoan_kiem.post(f"{act}/appraise", json={"officer": second, **appraisal}), 409)
    appraised = await hoan_kiem.post(f"{act}/appraise", json={"officer": first, **appraisal})
    assert appraised.status_code == 200, appraised.text

    entries = await steps_of(hoan_kiem, code)
    [released_entry] = [e for e in entries if e["step"] == "released"]
    assert released_entry["actor"] == first["officer_id"]
    assert released_entry["note"] == "appraise/request_supplement: absent. đi công tác"
    [moved] = [e for e in entries if e["step"] == "reassigned"]
    assert moved["actor"] == leader["officer_id"]
    assert moved["note"] == (
        f"appraise/request_supplement to {first['officer_id']} (held by {second['officer_id']}): "
        "conflict_of_interest. người thân của đương sự"
    )
    assert await audited(stack, code, "reassigned") == [leader["officer_id"]]
    assert await audited(stack, code, "released") == [first["officer_id"]]


async def test_a_leader_delegates_the_approval_to_a_deputy(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    code = await file(hoan_kiem, stack, birth_submission(citizen=62))
    act = f"/v1/dossiers/{code}/actions"
    specialist = officer(Role.SPECIALIST, HOAN_KIEM)
    await awaiting(hoan_kiem, code, "appraise")

    # Only a task awaiting the leader is delegated; the specialist's is reassigned instead.
    leader = officer(Role.LEADER, HOAN_KIEM)
    deputy = officer(Role.LEADER, HOAN_KIEM, 2)
    wrong = problem_of(
        await hoan_kiem.post(
            f"{act}/delegate",
            json={"officer": leader, "task": "appraise", "to": "x.1", "reason": "absent"},
        ),
        409,
    )
    assert "appraise awaits specialist" in wrong["detail"]

    appraised = await hoan_kiem.post(
        f"{act}/appraise", json={"officer": specialist, "recommendation": "approve"}
    )
    assert appraised.status_code == 200, appraised.text
    await awaiting(hoan_kiem, code, "approve")
    # A specialist does not delegate the leader's task.
    problem_of(
        await hoan_kiem.post(
            f"{act}/delegate",
            json={
                "officer": specialist,
                "task": "approve",
                "to": specialist["officer_id"],
                "reason": "absent",
            },
        ),
        409,
    )
    # The deputy chairs a unit's People's Committee in the chairman's place (ký thay); here a
    # specialist-turned-deputy shows the rule is the delegation, not the role.
    acting = officer(Role.SPECIALIST, HOAN_KIEM, 7)
    delegated = await hoan_kiem.post(
        f"{act}/delegate",
        json={
            "officer": leader,
            "task": "approve",
            "to": acting["officer_id"],
            "reason": "absent",
            "note": "nghỉ phép",
        },
    )
    assert delegated.status_code == 200, delegated.text
    view = (await hoan_kiem.get(f"/v1/dossiers/{code}")).json()
    assert {
        (a["action"], a["delegated_to"]) for a in view["awaiting"] if a["role"] == "leader"
    } == {
        ("approve", acting["officer_id"]),
        ("refuse", acting["officer_id"]),
    }
    # The delegation is the deputy's: another leader (or the leader, until reassigning it
    # back) is refused, and another specialist is not a leader.
    problem_of(await hoan_kiem.post(f"{act}/approve", json={"officer": deputy}), 409)
    problem_of(
        await hoan_kiem.post(
            f"{act}/approve", json={"officer": officer(Role.SPECIALIST, HOAN_KIEM, 3)}
        ),
        409,
    )
    approved = await hoan_kiem.post(f"{act}/approve", json={"officer": acting})
    assert approved.status_code == 200, approved.text

    entries = await steps_of(hoan_kiem, code)
    [handed] = [e for e in entries if e["step"] == "delegated"]
    assert handed["actor"] == leader["officer_id"]
    assert handed["note"] == (
        f"approve/refuse to {acting['officer_id']}, in the leader's place: absent. nghỉ phép"
    )
    [decision] = [e for e in entries if e["step"] == "approved"]
    assert decision["actor"] == acting["officer_id"]
    assert await audited(stack, code, "delegated") == [leader["officer_id"]]


async def test_surge_sharing_lets_a_neighbour_certify_until_it_closes(
    stack: EngineStack, api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    database_url = stack.settings.database_url
    neighbour_key = await issue_key(
        database_url, "certifiers-cua-nam", [CUA_NAM], [Role.CERTIFIER.value]
    )
    body = submission(CERTIFIED_COPY, HOAN_KIEM, citizen=151).model_dump(
        mode="json", exclude_none=True
    )
    shared = await file(hoan_kiem, stack, body)
    unshared = await file(
        hoan_kiem,
        stack,
        submission(CERTIFIED_COPY, HOAN_KIEM, citizen=152).model_dump(
            mode="json", exclude_none=True
        ),
    )
    await awaiting(hoan_kiem, shared, "certify")
    await awaiting(hoan_kiem, unshared, "certify")
    helper = officer(Role.CERTIFIER, CUA_NAM)
    leader = officer(Role.LEADER, HOAN_KIEM)
    sharing = f"/v1/units/{HOAN_KIEM}/certification-sharing"

    async with api.client(neighbour_key) as cua_nam:
        # Before any sharing, hoan-kiem's dossier is not cua-nam's to see, whatever grant the
        # client makes up: acting_for is the engine's to set from its record.
        forged = {
            "grant_id": 1,
            "unit": HOAN_KIEM,
            "neighbour": CUA_NAM,
            "opened_by": "hoan-kiem.leader.1",
            "opened_at": "2020-01-01T00:00:00+07:00",
            "until": "2099-01-01T00:00:00+07:00",
        }
        problem_of(
            await cua_nam.post(
                f"/v1/dossiers/{shared}/actions/claim",
                json={"officer": helper, "acting_for": forged},
            ),
            404,
        )
        # Only hoan-kiem's leader opens it, to certifying units, for a bounded period.
        until = (datetime.now(HANOI) + timedelta(hours=4)).isoformat()
        opening = {"neighbours": [CUA_NAM], "until": until, "reason": "đợt cao điểm chứng thực"}
        not_leader = problem_of(
            await hoan_kiem.post(
                sharing, json={**opening, "officer": officer(Role.CERTIFIER, HOAN_KIEM)}
            ),
            422,
        )
        assert not_leader["errors"][0]["field"] == "officer"
        department = problem_of(
            await hoan_kiem.post(
                sharing, json={**opening, "officer": leader, "neighbours": ["so-tu-phap"]}
            ),
            422,
        )
        assert department["errors"] == [
            {
                "field": "neighbours[0]",
                "rule": "so-tu-phap is a city_department; wards and communes certify",
            }
        ]
        too_long = (datetime.now(HANOI) + timedelta(days=40)).isoformat()
        problem_of(
            await hoan_kiem.post(sharing, json={**opening, "officer": leader, "until": too_long}),
            422,
        )
        opened = await hoan_kiem.post(sharing, json={**opening, "officer": leader})
        assert opened.status_code == 201, opened.text
        [grant] = opened.json()["items"]
        assert (grant["unit"], grant["neighbour"], grant["opened_by"]) == (
            HOAN_KIEM,
            CUA_NAM,
            leader["officer_id"],
        )
        assert grant["recorded_by"] == "api:counter-hoan-kiem"

        # cua-nam's certifiers see hoan-kiem's certification tasks in their inbox.
        async def in_inbox() -> dict[str, Any] | None:
            inbox = await cua_nam.get("/v1/inbox", params={"unit": CUA_NAM, "role": "certifier"})
            assert inbox.status_code == 200, inbox.text
            answer: dict[str, Any] = inbox.json()
            codes = {t["dossier_code"] for t in answer["items"]}
            return answer if {shared, unshared} <= codes else None

        inbox = await eventually(in_inbox)
        assert inbox["shared_from"] == [HOAN_KIEM]

        claimed = await cua_nam.post(
            f"/v1/dossiers/{shared}/actions/claim", json={"officer": helper}
        )
        assert claimed.status_code == 200, claimed.text
        # hoan-kiem's own certifier now finds the task held by the neighbour.
        problem_of(
            await hoan_kiem.post(
                f"/v1/dossiers/{shared}/actions/certify",
                json={"officer": officer(Role.CERTIFIER, HOAN_KIEM)},
            ),
            409,
        )
        certified = await cua_nam.post(
            f"/v1/dossiers/{shared}/actions/certify", json={"officer": helper}
        )
        assert certified.status_code == 200, certified.text

        # Closed: cua-nam's certifier is refused the other dossier, and its inbox forgets it.
        closed = await hoan_kiem.post(
            f"{sharing}/close", json={"officer": leader, "reason": "hết cao điểm"}
        )
        assert closed.status_code == 200, closed.text
        assert [g["closed_by"] for g in closed.json()["items"]] == [leader["officer_id"]]
        problem_of(
            await hoan_kiem.post(f"{sharing}/close", json={"officer": leader, "reason": "lại"}),
            409,
        )
        problem_of(
            await cua_nam.post(
                f"/v1/dossiers/{unshared}/actions/certify", json={"officer": helper}
            ),
            404,
        )
        inbox_after = await cua_nam.get("/v1/inbox", params={"unit": CUA_NAM, "role": "certifier"})
        assert inbox_after.json()["shared_from"] == []
        assert unshared not in {t["dossier_code"] for t in inbox_after.json()["items"]}

    # A key that covers both wards reaches the dossier, and the lane itself refuses the step:
    # the sharing the engine found no longer open, nothing is carried.
    both = await issue_key(database_url, "both-wards", [HOAN_KIEM, CUA_NAM], [Role.CERTIFIER.value])
    async with api.client(both) as client:
        refused = problem_of(
            await client.post(f"/v1/dossiers/{unshared}/actions/certify", json={"officer": helper}),
            409,
        )
        assert f"no open sharing of {HOAN_KIEM}'s certification with {CUA_NAM}" in refused["detail"]

    entries = await steps_of(hoan_kiem, shared)
    [claim] = [e for e in entries if e["step"] == "claimed"]
    assert claim["actor"] == helper["officer_id"]
    assert f"for {HOAN_KIEM} under its certification sharing #{grant['id']}" in claim["note"]
    [certify] = [e for e in entries if e["step"] == "certified"]
    assert certify["actor"] == helper["officer_id"]
    assert f"opened by {leader['officer_id']}" in certify["note"]
    assert await audited(stack, shared, "certified") == [helper["officer_id"]]


async def test_reassign_names_the_field_it_refuses(
    api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    """`to` is an officer id, as the signing service accepts it: a name is refused with 422."""
    response = await hoan_kiem.post(
        "/v1/dossiers/000.01.01.H26-261127-9999/actions/reassign",
        json={
            "officer": officer(Role.LEADER, HOAN_KIEM),
            "task": "appraise",
            "to": "Lê Hoa",
            "reason": "workload",
        },
    )
    problem = problem_of(response, 422)
    assert [e["field"] for e in problem["errors"]] == ["to"]
