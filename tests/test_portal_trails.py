"""The national portal hears, through the outbox, exactly what it heard when each sync was an
activity the dossier waited for: the same syncs (status codes) and the same progress rows
(steps and their status codes), in the same order, for the same routes.

tests/data/portal_trails_pre_outbox.json holds what the pre-outbox engine sent for these
routes (recorded on that engine with PORTAL_TRAILS_RECORD=<file>); times are left out, they
follow the run's clock."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from schemas.actions import (
    Action,
    Appraisal,
    HandOver,
    Recommendation,
    Refusal,
    Supplement,
    SupplementRequest,
)
from schemas.catalogue import DeliveryChannel
from schemas.dossier import SubmittedDocument
from schemas.statuses import Role
from simulators.seed import sample_civil_packages, sample_enterprises
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit
from tests.test_lifecycle import approve_through

TRAILS = Path(__file__).parent / "data" / "portal_trails_pre_outbox.json"
BIRTH = "1.001193"
BUSINESS_HOUSEHOLD = "1.001612"
PRIVATE_ENTERPRISE = "2.001610"

Route = Callable[[EngineStack], Awaitable[str]]


async def birth_at_the_counter(stack: EngineStack) -> str:
    package = sample_civil_packages()[57].package_id
    code = await submit(
        stack, submission(BIRTH, "tuong-mai", citizen=57, subject_reference=package)
    )
    await approve_through(stack, code, "tuong-mai")
    await act(
        stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, "tuong-mai"))
    )
    return code


async def city_tier_with_a_supplement(stack: EngineStack) -> str:
    sub = submission(
        PRIVATE_ENTERPRISE,
        "chi-nhanh-2",
        citizen=58,
        subject_reference=sample_enterprises()[41].enterprise_code,
        delivery=DeliveryChannel.COUNTER,
    )
    code = await submit(stack, sub)
    department = "so-tai-chinh"
    kind = sub.documents[0].kind
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, department), missing=[kind]),
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, "chi-nhanh-2"),
            documents=[SubmittedDocument(kind=kind, title="Bản bổ sung", pages=1)],
        ),
    )
    await approve_through(stack, code, department)
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, "chi-nhanh-2"), rating=3),
    )
    return code


async def refused_and_returned_online(stack: EngineStack) -> str:
    code = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            "dong-da",
            citizen=56,
            subject_reference=sample_enterprises()[42].enterprise_code,
            delivery=DeliveryChannel.ONLINE,
        ),
    )
    await act(
        stack,
        code,
        Action.APPRAISE,
        Appraisal(
            officer=officer(Role.SPECIALIST, "dong-da"),
            recommendation=Recommendation.REFUSE,
            note="ngành nghề cấm",
        ),
    )
    await act(
        stack,
        code,
        Action.REFUSE,
        Refusal(
            officer=officer(Role.LEADER, "dong-da"),
            reason="Ngành nghề kinh doanh bị cấm theo Luật Đầu tư",
        ),
    )
    return code


async def refused_at_intake(stack: EngineStack) -> str:
    return await submit(stack, submission(BIRTH, "tay-tuu", citizen=55, full_name="Tên Khác Hẳn"))


ROUTES: dict[str, Route] = {
    "birth_at_the_counter": birth_at_the_counter,
    "city_tier_with_a_supplement": city_tier_with_a_supplement,
    "refused_and_returned_online": refused_and_returned_online,
    "refused_at_intake": refused_at_intake,
}


def trail(stack: EngineStack, code: str) -> dict[str, list[object]]:
    base = f"{stack.simulators.url('portal')}/_sim/dossiers/{code}"
    statuses = httpx.get(f"{base}/statuses").json()["statuses"]
    rows = httpx.get(f"{base}/progress").json()["rows"]
    return {
        "statuses": statuses,
        "progress": [[r["NoiDungXuLy"], r["TrangThai"]] for r in rows],
    }


async def test_the_portal_hears_through_the_outbox_what_it_heard_before(
    stack: EngineStack,
) -> None:
    trails = {}
    for name, route in ROUTES.items():
        code = await route(stack)
        await result(stack, code)  # the workflow's end, then its syncs out of the outbox
        trails[name] = trail(stack, code)
    record = os.environ.get("PORTAL_TRAILS_RECORD")
    if record:
        Path(record).write_text(json.dumps(trails, indent=1, ensure_ascii=False) + "\n")
        return
    assert trails == json.loads(TRAILS.read_text())
