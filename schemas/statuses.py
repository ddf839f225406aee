"""Dossier statuses and the national portal's status codes (TrangThaiHoSo).

The numeric codes follow the mapping a provincial one-stop system uses for its DVCQG sync
(HuanVu201/DichVuCong_KhoaLuan_PASETO, HoSoEventUtils.cs). Whether the official appendix uses
the same numbers is unconfirmed, so this table is the only place that knows them.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    INTAKE = "intake"
    PROCESSING = "processing"
    RETURN = "return"
    CLOSED = "closed"


class DossierStatus(StrEnum):
    SUBMITTED = "submitted"
    RECEIVED = "received"
    REJECTED_AT_INTAKE = "rejected_at_intake"
    IN_PROCESSING = "in_processing"
    SUPPLEMENT_REQUESTED = "supplement_requested"
    FEES_REQUESTED = "fees_requested"
    WITHDRAWN = "withdrawn"
    STOPPED = "stopped"
    REFUSED = "refused"
    RESULT_READY = "result_ready"
    RETURNED = "returned"


PORTAL_STATUS_CODES: dict[DossierStatus, int] = {
    DossierStatus.SUBMITTED: 1,  # Mới đăng ký
    DossierStatus.RECEIVED: 2,  # Được tiếp nhận
    DossierStatus.REJECTED_AT_INTAKE: 3,  # Không được tiếp nhận
    DossierStatus.IN_PROCESSING: 4,  # Đang xử lý
    DossierStatus.SUPPLEMENT_REQUESTED: 5,  # Yêu cầu bổ sung giấy tờ
    DossierStatus.FEES_REQUESTED: 6,  # Yêu cầu thực hiện nghĩa vụ tài chính
    DossierStatus.WITHDRAWN: 7,  # Công dân yêu cầu rút hồ sơ
    DossierStatus.STOPPED: 8,  # Dừng xử lý
    # A refusal during processing is a finished processing whose result is the refusal
    # notice; it is returned like any result.
    DossierStatus.REFUSED: 9,  # Đã xử lý xong
    DossierStatus.RESULT_READY: 9,  # Đã xử lý xong
    DossierStatus.RETURNED: 10,  # Đã trả kết quả
}


def portal_code(status: DossierStatus) -> int:
    return PORTAL_STATUS_CODES[status]


class Outcome(StrEnum):
    """How a dossier ended: each a first-class ending with its own status."""

    APPROVED = "approved"
    REFUSED = "refused"
    REJECTED_AT_INTAKE = "rejected_at_intake"
    WITHDRAWN = "withdrawn"
    STOPPED = "stopped"


FINAL_STATUS: dict[Outcome, DossierStatus] = {
    Outcome.APPROVED: DossierStatus.RETURNED,
    Outcome.REFUSED: DossierStatus.RETURNED,
    Outcome.REJECTED_AT_INTAKE: DossierStatus.REJECTED_AT_INTAKE,
    Outcome.WITHDRAWN: DossierStatus.WITHDRAWN,
    Outcome.STOPPED: DossierStatus.STOPPED,
}


class Action(StrEnum):
    """A human step of a dossier: each is a Temporal Update and an API operation."""

    WITHDRAW = "withdraw"
    APPRAISE = "appraise"
    REQUEST_SUPPLEMENT = "request_supplement"
    PROVIDE_SUPPLEMENT = "provide_supplement"
    APPROVE = "approve"
    REFUSE = "refuse"
    CERTIFY = "certify"
    HAND_OVER = "hand_over"
    CLAIM = "claim"
    RELEASE = "release"
    REASSIGN = "reassign"
    DELEGATE = "delegate"
    RECORD_WET_SIGNATURE = "record_wet_signature"
    CHECK_IDENTITY_IN_PERSON = "check_identity_in_person"


class Lane(StrEnum):
    """Which workflow holds an open dossier (domain.lanes names their task queues alike)."""

    INTAKE = "intake"
    CERTIFICATION = "certification"
    WARD_PROCESSING = "ward-processing"
    CITY_PROCESSING = "city-processing"


class Role(StrEnum):
    COUNTER_OFFICER = "counter_officer"  # cán bộ một cửa at the receiving unit
    SPECIALIST = "specialist"  # chuyên viên who appraises and drafts
    LEADER = "leader"  # lãnh đạo who approves, refuses and signs
    CERTIFIER = "certifier"  # người có thẩm quyền chứng thực
