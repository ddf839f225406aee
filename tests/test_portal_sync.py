"""The national portal gets the dossier as the provincial one-stop systems send it: applicant,
documents, fees and payment, supplements, results, one progress row per step, and the
deciding unit by its agency code; here for a city-tier dossier filed at a branch of the city's
service centre, on the real stack."""

from __future__ import annotations

from typing import Any

import httpx

from domain.catalogue import default_catalogue
from schemas.actions import Action, HandOver, Supplement, SupplementRequest
from schemas.catalogue import DeliveryChannel
from schemas.dossier import SubmittedDocument
from schemas.lifecycle import TimelineStep
from schemas.statuses import Outcome, Role
from simulators.seed import sample_enterprises
from tests.conftest import EngineStack
from tests.driver import act, officer, portal_statuses, result, submission, submit, timeline
from tests.test_lifecycle import approve_through

PRIVATE_ENTERPRISE = "2.001610"  # doanh nghiệp tư nhân: city tier, Sở Tài chính, fee


def portal(stack: EngineStack, path: str) -> dict[str, Any]:
    reply = httpx.get(f"{stack.simulators.url('portal')}/_sim/dossiers/{path}")
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


async def test_a_city_tier_dossier_at_a_branch_reaches_the_portal_whole(
    stack: EngineStack,
) -> None:
    catalogue = default_catalogue()
    enterprise = sample_enterprises()[2].enterprise_code
    sub = submission(
        PRIVATE_ENTERPRISE,
        "chi-nhanh-2",
        citizen=12,
        subject_reference=enterprise,
        delivery=DeliveryChannel.COUNTER,
    )
    code = await submit(stack, sub)
    # The code carries the receiving counter's agency code; the department decides.
    assert code.startswith(catalogue.unit("chi-nhanh-2").agency_code + "-")
    department = "so-tai-chinh"
    first_kind = sub.documents[0].kind
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, department), missing=[first_kind]),
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, "chi-nhanh-2"),
            documents=[SubmittedDocument(kind=first_kind, title="Bản bổ sung", pages=1)],
        ),
    )
    await approve_through(stack, code, department)
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, "chi-nhanh-2"), rating=3),
    )
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED

    latest = portal(stack, code)
    assert latest["DonViXuLy"] == catalogue.unit(department).agency_code  # not the slug
    assert latest["NoiNopHoSo"] == catalogue.unit("chi-nhanh-2").agency_code
    assert latest["ChuHoSo"] == sub.applicant.full_name
    assert latest["SoGiayToChuHoSo"] == sub.applicant.citizen_id
    assert latest["LoaiDoiTuong"] == 1  # a citizen
    # What was filed at the counter (a supplement asked during processing is the lane's).
    filed = [d["MaThanhPhanHoSo"] for d in latest["TaiLieuNop"]]
    assert filed == [d.kind for d in sub.documents]
    [fee] = latest["DanhSachLePhi"]
    assert fee["MaPhiLePhi"] == PRIVATE_ENTERPRISE and fee["Gia"] > 0 and fee["TrangThai"] == 1
    assert latest["DuocThanhToanTrucTuyen"] == 1
    [asked] = latest["DanhSachHoSoBoSung"]
    assert asked["HoSoBoSungId"] == 1 and asked["TrangThaiBoSung"] == 1
    assert asked["NguoiYeuCauBoSung"] == officer(Role.SPECIALIST, department).officer_id
    results = latest["DanhSachGiayToKetQua"]
    assert [r["TenGiayTo"] for r in results] == [d.kind.value for d in outcome.documents]

    # One progress row per step the portal heard of, none twice, in the timeline's order,
    # up to the last status sent (10, returned).
    rows = portal(stack, f"{code}/progress")["rows"]
    steps = [(r["NoiDungXuLy"], r["ThoiDiemXuLy"]) for r in rows]
    assert len(steps) == len(set(steps))
    entries = await timeline(stack, code)
    returned = next(i for i, e in enumerate(entries) if e.step == TimelineStep.RESULT_RETURNED)
    assert [s for s, _ in steps] == [e.step for e in entries[: returned + 1]]
    assert [r["TrangThai"] for r in rows][-1] == 10
    assert portal_statuses(stack, code)[-1] == 10
