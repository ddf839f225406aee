"""The registry simulators over real HTTP, started as `python -m simulators`."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config import ROOT, SIMULATOR_PORTS, load_settings
from domain.signatures import sha256_hex, verify_signature
from schemas.citizen_id import citizen_id_problem
from simulators import EXIT_PORT_IN_USE
from simulators.process import SimulatorsFailed, SimulatorsProcess, running_simulators
from simulators.seed import (
    ENTERPRISE_CODE_PATTERN,
    PARCEL_ID_PATTERN,
    sample_citizens,
    sample_civil_packages,
    sample_enterprises,
    sample_parcels,
    unknown_citizen_id,
)


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorsProcess]:
    with running_simulators(tmp_path_factory.mktemp("sims")) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client


def url(sims: SimulatorsProcess, service: str, path: str) -> str:
    return f"{sims.urls[service]}{path}"


def assert_error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == error
    message: str = body["message"]
    assert message
    return message


# --- process and control endpoints ----------------------------------------------------


def test_every_service_is_up_on_its_own_port(sims: SimulatorsProcess, http: httpx.Client) -> None:
    assert set(sims.urls) == set(SIMULATOR_PORTS)
    assert len(set(sims.urls.values())) == len(SIMULATOR_PORTS)
    for name in SIMULATOR_PORTS:
        reply = http.get(url(sims, name, "/_sim/health"))
        assert reply.status_code == 200
        assert reply.json() == {"service": name, "ok": True}


def test_env_points_the_engine_settings_at_the_simulators(
    sims: SimulatorsProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sims.env.items():
        monkeypatch.setenv(key, value)
    assert load_settings().registry_urls == sims.urls


def test_unknown_service_name_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "simulators", "--only", "population,nosuch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "nosuch" in result.stderr


def test_a_taken_port_is_reported_with_its_variable() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "simulators", "--only", "land"],
            cwd=ROOT,
            env={**os.environ, "SIM_LAND_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == EXIT_PORT_IN_USE
    assert "SIM_LAND_PORT" in result.stderr


def test_a_failed_start_shows_the_simulators_stderr(tmp_path: Path) -> None:
    bad = {"SIM_LAND_FAILURE_RATE": "2"}
    with (
        pytest.raises(SimulatorsFailed, match="SIM_LAND_FAILURE_RATE"),
        running_simulators(tmp_path, only=["land"], extra_env=bad),
    ):
        pass


def test_injected_fault_then_recovery_and_calls_recorded(
    sims: SimulatorsProcess, http: httpx.Client
) -> None:
    citizen = sample_citizens()[0]
    body = {
        "request_id": "fault-1",
        "citizen_id": citizen.citizen_id,
        "full_name": citizen.full_name,
        "date_of_birth": citizen.date_of_birth.isoformat(),
    }
    verify = url(sims, "population", "/v1/citizens/verify")
    assert http.delete(url(sims, "population", "/_sim/calls")).status_code == 200
    faults = http.post(url(sims, "population", "/_sim/faults"), json={"fail_next": 2})
    assert faults.json()["fail_next"] == 2

    assert_error(http.post(verify, json=body), 503, "unavailable")
    assert_error(http.post(verify, json=body), 503, "unavailable")
    recovered = http.post(verify, json=body)
    assert recovered.status_code == 200
    assert recovered.json()["matched"] is True

    calls = http.get(
        url(sims, "population", "/_sim/calls"), params={"path_prefix": "/v1/citizens"}
    ).json()
    assert [c["status"] for c in calls] == [503, 503, 200]
    assert all(c["method"] == "POST" and c["path"] == "/v1/citizens/verify" for c in calls)
    assert calls[0]["body"] == body
    assert [c["seq"] for c in calls] == sorted(c["seq"] for c in calls)
    # Control calls are not business calls.
    assert (
        http.get(url(sims, "population", "/_sim/calls"), params={"path_prefix": "/_sim"}).json()
        == []
    )

    stats = http.get(url(sims, "population", "/_sim/stats")).json()
    assert stats["calls"] == 3
    assert 1 <= stats["peak_calls_per_second"] <= 3

    assert http.delete(url(sims, "population", "/_sim/calls")).json()["calls"] == 0
    assert http.get(url(sims, "population", "/_sim/calls")).json() == []


def test_failure_rate_and_custom_fault_status(sims: SimulatorsProcess, http: httpx.Client) -> None:
    parcel = sample_parcels()[0]
    target = url(sims, "land", f"/v1/parcels/{parcel.parcel_id}")
    faults = url(sims, "land", "/_sim/faults")
    try:
        http.post(faults, json={"failure_rate": 1.0})
        assert_error(http.get(target), 503, "unavailable")
        http.post(faults, json={"failure_rate": 0.0, "fail_next": 1, "status": 429})
        limited = http.get(target)
        assert_error(limited, 429, "rate_limited")
        assert limited.headers["retry-after"] == "1"
        assert http.get(target).status_code == 200
    finally:
        http.post(faults, json={"failure_rate": 0.0, "fail_next": 0})


def test_fault_request_is_validated(sims: SimulatorsProcess, http: httpx.Client) -> None:
    reply = http.post(url(sims, "land", "/_sim/faults"), json={"failure_rate": 2})
    assert "failure_rate" in assert_error(reply, 422, "invalid_request")


# --- population -----------------------------------------------------------------------


def test_identity_matches_despite_case_spacing_and_unicode_form(
    sims: SimulatorsProcess, http: httpx.Client
) -> None:
    citizen = sample_citizens()[3]
    # Decomposed (NFD), upper-case, with stray spaces: how portal forms sometimes arrive.
    typed = "  " + unicodedata.normalize("NFD", citizen.full_name.upper()).replace(" ", "   ")
    reply = http.post(
        url(sims, "population", "/v1/citizens/verify"),
        json={
            "request_id": "r-match",
            "citizen_id": citizen.citizen_id,
            "full_name": typed,
            "date_of_birth": citizen.date_of_birth.isoformat(),
        },
    )
    assert reply.status_code == 200
    assert reply.json() == {
        "request_id": "r-match",
        "citizen_id": citizen.citizen_id,
        "matched": True,
        "mismatches": [],
    }


def test_identity_mismatch_lists_the_fields(sims: SimulatorsProcess, http: httpx.Client) -> None:
    citizen = sample_citizens()[4]
    reply = http.post(
        url(sims, "population", "/v1/citizens/verify"),
        json={
            "request_id": "r-mismatch",
            "citizen_id": citizen.citizen_id,
            "full_name": "Trần Văn Khác",
            "date_of_birth": "1901-01-01",
        },
    )
    assert reply.status_code == 200
    assert reply.json()["matched"] is False
    assert reply.json()["mismatches"] == ["full_name", "date_of_birth"]


def test_identity_unknown_and_malformed(sims: SimulatorsProcess, http: httpx.Client) -> None:
    verify = url(sims, "population", "/v1/citizens/verify")
    body = {"request_id": "r", "full_name": "Nguyễn Văn A", "date_of_birth": "1990-01-01"}
    unknown = http.post(verify, json={**body, "citizen_id": unknown_citizen_id()})
    assert_error(unknown, 404, "not_found")
    malformed = http.post(verify, json={**body, "citizen_id": "12345"})
    assert "citizen_id" in assert_error(malformed, 422, "invalid_request")
    missing = http.post(verify, json={"request_id": "r"})
    assert "full_name" in assert_error(missing, 422, "invalid_request")


def test_citizen_record(sims: SimulatorsProcess, http: httpx.Client) -> None:
    citizen = sample_citizens()[0]
    reply = http.get(url(sims, "population", f"/v1/citizens/{citizen.citizen_id}"))
    assert reply.status_code == 200
    assert reply.json() == citizen.model_dump(mode="json")
    assert_error(
        http.get(url(sims, "population", f"/v1/citizens/{unknown_citizen_id()}")), 404, "not_found"
    )
    assert_error(http.get(url(sims, "population", "/v1/citizens/abc")), 422, "invalid_request")


# --- civil status, land, business -----------------------------------------------------


def test_civil_status_needs_the_bearer_token(sims: SimulatorsProcess, http: httpx.Client) -> None:
    package = sample_civil_packages()[0]
    target = url(sims, "civil_status", f"/v1/packages/{package.package_id}")
    assert_error(http.get(target), 401, "unauthorized")
    assert_error(http.get(target, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")

    auth = {"Authorization": f"Bearer {load_settings().civil_status_token}"}
    reply = http.get(target, headers=auth)
    assert reply.status_code == 200
    assert reply.json()["kind"] == package.kind
    assert reply.json()["subject_citizen_id"] == package.subject_citizen_id
    assert reply.json()["acknowledged"] is False

    for _ in range(2):  # idempotent
        ack = http.post(f"{target}/ack", headers=auth)
        assert ack.json() == {"package_id": package.package_id, "acknowledged": True}
    assert http.get(target, headers=auth).json()["acknowledged"] is True
    missing = url(sims, "civil_status", "/v1/packages/HT-2026-999999")
    assert_error(http.get(missing, headers=auth), 404, "not_found")


def test_land_parcels(sims: SimulatorsProcess, http: httpx.Client) -> None:
    parcel = sample_parcels()[0]
    reply = http.get(url(sims, "land", f"/v1/parcels/{parcel.parcel_id}"))
    assert reply.status_code == 200
    assert reply.json() == parcel.model_dump(mode="json")
    assert_error(http.get(url(sims, "land", "/v1/parcels/HN-ZZ-999999")), 404, "not_found")
    assert_error(http.get(url(sims, "land", "/v1/parcels/bad-id")), 422, "invalid_request")


def test_business_enterprises(sims: SimulatorsProcess, http: httpx.Client) -> None:
    enterprise = sample_enterprises()[0]
    reply = http.get(url(sims, "business", f"/v1/enterprises/{enterprise.enterprise_code}"))
    assert reply.json() == enterprise.model_dump(mode="json")
    assert_error(http.get(url(sims, "business", "/v1/enterprises/0199999999")), 404, "not_found")
    assert_error(http.get(url(sims, "business", "/v1/enterprises/01x")), 422, "invalid_request")


# --- payment --------------------------------------------------------------------------


def test_payment_checksum_and_idempotency(sims: SimulatorsProcess, http: httpx.Client) -> None:
    pay = url(sims, "payment", "/v1/payments")
    body = {
        "request_id": "pay-1",
        "dossier_code": "000.00.12.H26-260105-0001",
        "amount_vnd": 50_000,
        "payer_citizen_id": sample_citizens()[0].citizen_id,
        "description": "Lệ phí chứng thực hợp đồng",
    }
    first = http.post(pay, json=body)
    assert first.status_code == 200, first.text
    payment = first.json()
    assert payment["status"] == "paid"
    assert payment["amount_vnd"] == 50_000
    message = f"{payment['payment_id']}|{body['dossier_code']}|50000|paid".encode()
    secret = load_settings().payment_checksum_secret.encode()
    expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(payment["checksum"], expected)

    assert http.post(pay, json=body).json() == payment  # a retry returns the same payment
    assert http.get(f"{pay}/{payment['payment_id']}").json() == payment
    reused = http.post(pay, json={**body, "amount_vnd": 60_000})
    assert_error(reused, 409, "conflict")
    other = http.post(pay, json={**body, "request_id": "pay-2"}).json()
    assert other["payment_id"] != payment["payment_id"]


@pytest.mark.parametrize("amount", [0, -5, 10.5, "50000"])
def test_payment_amount_must_be_a_positive_integer(
    sims: SimulatorsProcess, http: httpx.Client, amount: object
) -> None:
    reply = http.post(
        url(sims, "payment", "/v1/payments"),
        json={
            "request_id": f"bad-{amount}",
            "dossier_code": "X",
            "amount_vnd": amount,
            "payer_citizen_id": sample_citizens()[0].citizen_id,
            "description": "",
        },
    )
    assert "amount_vnd" in assert_error(reply, 422, "invalid_request")


# --- portal ---------------------------------------------------------------------------


def portal_body(code: str, status: int) -> dict[str, object]:
    return {
        "MaHoSo": code,
        "MaTTHC": "1.001612",
        "TrangThaiHoSo": status,
        "NgayTiepNhan": "20260105090000",
        "NgayHenTra": "20260112170000",
        "KenhThucHien": 1,
        "DonViXuLy": "000.01.01.H26",
        "TenDonViXuLy": "UBND phường Hoàn Kiếm",
        "ChuHoSo": "Nguyễn Văn An",
        "SoGiayToChuHoSo": "001090000001",
        "LoaiDoiTuong": 1,
        "TaiLieuNop": [{"MaThanhPhanHoSo": "to_khai", "TenTepDinhKem": "to-khai.pdf"}],
        "DanhSachLePhi": [
            {"TenPhiLePhi": "Lệ phí", "MaPhiLePhi": "1.001612", "Gia": 100000, "TrangThai": 0}
        ],
        "QuaTrinhXuLy": [
            {
                "MaHoSo": code,
                "NguoiXuLy": "system",
                "ThoiDiemXuLy": "20260105090000",
                "NoiDungXuLy": f"step to {status}",
                "TrangThai": status,
            }
        ],
    }


def test_portal_keeps_the_status_sequence(sims: SimulatorsProcess, http: httpx.Client) -> None:
    code = "000.00.12.H26-260105-0042"
    for status in (2, 4, 9, 10):
        reply = http.post(url(sims, "portal", "/v1/dossiers/sync"), json=portal_body(code, status))
        assert reply.status_code == 200
        assert reply.json() == {"error_code": 0, "message": "ok"}
    statuses = http.get(url(sims, "portal", f"/_sim/dossiers/{code}/statuses"))
    assert statuses.json() == {"code": code, "statuses": [2, 4, 9, 10]}
    latest = http.get(url(sims, "portal", f"/_sim/dossiers/{code}")).json()
    assert latest["TenDonViXuLy"] == "UBND phường Hoàn Kiếm"  # extra keys kept
    rows = http.get(url(sims, "portal", f"/_sim/dossiers/{code}/progress")).json()["rows"]
    assert [r["TrangThai"] for r in rows] == [2, 4, 9, 10]  # one row per step
    never = http.get(url(sims, "portal", "/_sim/dossiers/never-synced/statuses"))
    assert never.json()["statuses"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"TrangThaiHoSo": 11}, "TrangThaiHoSo"),
        ({"TrangThaiHoSo": 0}, "TrangThaiHoSo"),
        ({"TrangThaiHoSo": "4"}, "TrangThaiHoSo"),
        ({"NgayHenTra": "2026-01-12"}, "NgayHenTra"),
        ({"NgayTiepNhan": "20261332090000"}, "NgayTiepNhan"),
        ({"NgayTra": "tomorrow"}, "NgayTra"),
        ({"MaHoSo": None}, "MaHoSo"),
        ({"DonViXuLy": "hoan-kiem"}, "DonViXuLy"),
        ({"ChuHoSo": ""}, "ChuHoSo"),
        ({"LoaiDoiTuong": 5}, "LoaiDoiTuong"),
        ({"TaiLieuNop": []}, "TaiLieuNop"),
        ({"DanhSachLePhi": [{"TenPhiLePhi": "x", "MaPhiLePhi": "y", "Gia": -1}]}, "Gia"),
        ({"QuaTrinhXuLy": []}, "QuaTrinhXuLy"),
        (
            {
                "QuaTrinhXuLy": [
                    {
                        "MaHoSo": "bad-QuaTrinhXuLy",
                        "NguoiXuLy": "system",
                        "ThoiDiemXuLy": "20260105090000",
                        "NoiDungXuLy": "transferred",
                        "TrangThai": 2,
                    }
                ]
            },
            "the last row's TrangThai 2 is not the dossier's TrangThaiHoSo 4",
        ),
    ],
)
def test_portal_refuses_a_bad_sync(
    sims: SimulatorsProcess, http: httpx.Client, change: dict[str, object], field: str
) -> None:
    code = f"bad-{field}"[:64]
    body = {**portal_body(code, 4), **change}
    if change.get("MaHoSo", "") is None:
        del body["MaHoSo"]
    reply = http.post(url(sims, "portal", "/v1/dossiers/sync"), json=body)
    assert reply.status_code == 400
    assert reply.json()["error_code"] == 1
    assert field in reply.json()["message"]
    assert http.get(url(sims, "portal", f"/_sim/dossiers/{code}/statuses")).json()["statuses"] == []


def test_portal_refuses_a_body_that_is_not_json(
    sims: SimulatorsProcess, http: httpx.Client
) -> None:
    reply = http.post(url(sims, "portal", "/v1/dossiers/sync"), content=b"not json")
    assert reply.status_code == 400
    assert reply.json()["error_code"] == 1


# --- notify ---------------------------------------------------------------------------


def test_notifications_and_post_orders(sims: SimulatorsProcess, http: httpx.Client) -> None:
    code = "000.00.12.H26-260105-0007"
    sent = http.post(
        url(sims, "notify", "/v1/notifications"),
        json={
            "dossier_code": code,
            "recipient": "0912345678",
            "channel": "sms",
            "template": "result_ready",
            "text": "Hồ sơ của ông/bà đã có kết quả.",
        },
    )
    assert sent.status_code == 200
    assert sent.json()["accepted"] is True
    listed = http.get(url(sims, "notify", "/_sim/notifications"), params={"dossier_code": code})
    assert [n["notification_id"] for n in listed.json()] == [sent.json()["notification_id"]]
    assert listed.json()[0]["channel"] == "sms"

    order = {
        "dossier_code": code,
        "recipient_name": "Nguyễn Văn An",
        "address": "12 Hàng Bạc, phường Hoàn Kiếm, Hà Nội",
        "item": "result",
    }
    first = http.post(url(sims, "notify", "/v1/post/orders"), json=order).json()
    assert first["accepted"] is True
    assert re.fullmatch(r"EMS[0-9]{9}VN", first["tracking_number"])
    assert http.post(url(sims, "notify", "/v1/post/orders"), json=order).json() == first
    other = http.post(url(sims, "notify", "/v1/post/orders"), json={**order, "item": "receipt"})
    assert other.json()["tracking_number"] != first["tracking_number"]

    bad = http.post(
        url(sims, "notify", "/v1/notifications"),
        json={
            "dossier_code": code,
            "recipient": "x",
            "channel": "fax",
            "template": "t",
            "text": "t",
        },
    )
    assert "channel" in assert_error(bad, 422, "invalid_request")


# --- signing --------------------------------------------------------------------------


def sign(
    sims: SimulatorsProcess, http: httpx.Client, document: bytes, signer_id: str = "cb-hk-001"
) -> dict[str, str]:
    reply = http.post(
        url(sims, "signing", "/v1/sign"),
        json={
            "signer_id": signer_id,
            "signer_name": "Lê Thị Hạnh",
            "unit": "HK",
            "digest_sha256_hex": sha256_hex(document),
            "document_name": "giay-khai-sinh.pdf",
        },
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, str] = reply.json()
    return body


def test_signing_round_trip(sims: SimulatorsProcess, http: httpx.Client) -> None:
    document = "Giấy khai sinh — Nguyễn Văn An".encode()
    signed = sign(sims, http, document)
    assert signed["algorithm"] == "ECDSA-P256-SHA256"
    ca_pem = http.get(url(sims, "signing", "/v1/ca")).json()["certificate_pem"]
    assert "Hanoi Dossier Engine Development CA" in _subject(ca_pem)

    check = verify_signature(document, signed["signature_b64"], signed["certificate_pem"], ca_pem)
    assert check.valid, check.reason
    assert (check.signer_id, check.signer_name, check.unit) == ("cb-hk-001", "Lê Thị Hạnh", "HK")

    tampered = verify_signature(
        document + b" ", signed["signature_b64"], signed["certificate_pem"], ca_pem
    )
    assert not tampered.valid
    assert tampered.reason == "signature does not match the document"

    cert = http.get(url(sims, "signing", "/v1/certificates/cb-hk-001")).json()
    assert cert["certificate_pem"] == signed["certificate_pem"]  # same cert until it changes


def test_signing_certificates_and_bad_input(sims: SimulatorsProcess, http: httpx.Client) -> None:
    certs = url(sims, "signing", "/v1/certificates")
    assert_error(http.get(f"{certs}/nobody-yet"), 404, "not_found")
    issued = http.get(f"{certs}/cb-city-9", params={"name": "Phạm Minh Quân", "unit": "SXD"})
    assert issued.status_code == 200
    assert "BEGIN CERTIFICATE" in issued.json()["certificate_pem"]
    bad = http.post(
        url(sims, "signing", "/v1/sign"),
        json={
            "signer_id": "cb-1",
            "signer_name": "A",
            "unit": "HK",
            "digest_sha256_hex": "abc",
            "document_name": "x.pdf",
        },
    )
    assert "digest_sha256_hex" in assert_error(bad, 422, "invalid_request")


def test_signatures_stay_verifiable_after_a_restart(tmp_path: Path) -> None:
    document = b"Quyet dinh so 123/QD-UBND"
    with running_simulators(tmp_path, only=["signing"]) as first, httpx.Client() as http:
        signed = sign(first, http, document, signer_id="cb-restart")
        ca_before = http.get(url(first, "signing", "/v1/ca")).json()["certificate_pem"]
    assert (tmp_path / "signing" / "ca.key.pem").exists()
    with running_simulators(tmp_path, only=["signing"]) as second, httpx.Client() as http:
        ca_after = http.get(url(second, "signing", "/v1/ca")).json()["certificate_pem"]
        again = sign(second, http, document, signer_id="cb-restart")
    assert ca_after == ca_before
    assert again["certificate_pem"] == signed["certificate_pem"]
    check = verify_signature(document, signed["signature_b64"], signed["certificate_pem"], ca_after)
    assert check.valid, check.reason


def sign_request(document_name: str, document: bytes) -> dict[str, str]:
    return {
        "signer_id": "cb-hk-002",
        "signer_name": "Lê Thị Hạnh",
        "unit": "HK",
        "digest_sha256_hex": sha256_hex(document),
        "document_name": document_name,
    }


def effect_counts(sims: SimulatorsProcess, service: str, kind: str) -> dict[str, int]:
    found = httpx.get(url(sims, service, "/_sim/effects"), params={"kind": kind}).json()
    return {e["key"]: e["count"] for e in found}


def test_a_repeated_idempotency_key_gets_the_first_answer_and_one_effect(
    sims: SimulatorsProcess, http: httpx.Client
) -> None:
    body = sign_request("000.00.12.H26-260105-0101/decision", b"Quyet dinh 0101")
    signing = url(sims, "signing", "/v1/sign")
    first = http.post(signing, json=body, headers={"Idempotency-Key": "sign-0101"})
    again = http.post(signing, json=body, headers={"Idempotency-Key": "sign-0101"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()  # the same signature, made once
    assert effect_counts(sims, "signing", "signature")[body["document_name"]] == 1
    # Without a key each call is a new request: a duplicate shows as a count above one.
    http.post(signing, json=body)
    assert effect_counts(sims, "signing", "signature")[body["document_name"]] == 2

    reused = http.post(
        signing,
        json={**body, "digest_sha256_hex": sha256_hex(b"another document")},
        headers={"Idempotency-Key": "sign-0101"},
    )
    assert "sign-0101" in assert_error(reused, 422, "idempotency_key_reused")
    assert effect_counts(sims, "signing", "signature")[body["document_name"]] == 2


def test_a_failed_first_call_does_not_take_its_key(
    sims: SimulatorsProcess, http: httpx.Client
) -> None:
    body = sign_request("000.00.12.H26-260105-0102/decision", b"Quyet dinh 0102")
    signing = url(sims, "signing", "/v1/sign")
    faults = url(sims, "signing", "/_sim/faults")
    http.post(faults, json={"fail_next": 1}).raise_for_status()
    headers = {"Idempotency-Key": "sign-0102"}
    assert_error(http.post(signing, json=body, headers=headers), 503, "unavailable")
    assert http.post(signing, json=body, headers=headers).status_code == 200
    assert effect_counts(sims, "signing", "signature")[body["document_name"]] == 1


async def test_an_abandoned_call_and_its_retry_with_the_same_key_sign_once(
    tmp_path: Path,
) -> None:
    """The service takes 1.5 s (SIM_SIGNING_LATENCY_MS); the first caller gives up after
    0.5 s, the retry comes while the service still works on the first: it gets that answer."""
    body = sign_request("000.00.12.H26-260105-0103/decision", b"Quyet dinh 0103")
    headers = {"Idempotency-Key": "sign-0103"}
    with running_simulators(
        tmp_path, only=["signing"], extra_env={"SIM_SIGNING_LATENCY_MS": "1500"}
    ) as slow_signing:
        signing = url(slow_signing, "signing", "/v1/sign")
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(signing, json=body, headers=headers, timeout=0.5)
            retried = await client.post(signing, json=body, headers=headers, timeout=5)
            later = await client.post(signing, json=body, headers=headers, timeout=5)
        assert retried.status_code == 200 and later.json() == retried.json()
        assert effect_counts(slow_signing, "signing", "signature") == {body["document_name"]: 1}
        calls = httpx.get(url(slow_signing, "signing", "/_sim/calls")).json()
        assert [c["status"] for c in calls] == [200, 200, 200]  # each caller's, one signature


def _subject(pem: str) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


# --- seed data ------------------------------------------------------------------------


def test_seed_is_deterministic_and_prefix_stable() -> None:
    assert sample_citizens() == sample_citizens()
    assert sample_citizens(10) == sample_citizens()[:10]
    assert sample_parcels(5) == sample_parcels()[:5]
    assert sample_enterprises(5) == sample_enterprises()[:5]
    assert sample_civil_packages(5) == sample_civil_packages()[:5]


def test_seed_citizens_are_well_formed_and_unique() -> None:
    citizens = sample_citizens()
    assert len({c.citizen_id for c in citizens}) == len(citizens) == 200
    assert sum(c.citizen_id.startswith("001") for c in citizens) > 120  # mostly Hà Nội
    for c in citizens:
        assert citizen_id_problem(c.citizen_id) is None
        century_digit = int(c.citizen_id[3])
        assert (century_digit >= 2) == (c.date_of_birth.year >= 2000)
        assert (century_digit % 2 == 1) == (c.sex == "female")
        assert c.citizen_id[4:6] == f"{c.date_of_birth.year % 100:02d}"
        assert "Hà Nội" in c.address
    assert sum(not c.full_name.isascii() for c in citizens) > 150  # names keep their diacritics


def test_seed_references_point_at_known_citizens() -> None:
    known = {c.citizen_id for c in sample_citizens()}
    parcels = sample_parcels()
    assert len({p.parcel_id for p in parcels}) == len(parcels) == 100
    assert all(re.fullmatch(PARCEL_ID_PATTERN, p.parcel_id) for p in parcels)
    assert all(p.owner_citizen_id in known for p in parcels)
    enterprises = sample_enterprises()
    assert len({e.enterprise_code for e in enterprises}) == len(enterprises) == 60
    assert all(re.fullmatch(ENTERPRISE_CODE_PATTERN, e.enterprise_code) for e in enterprises)
    assert all(e.enterprise_code.startswith("01") for e in enterprises)
    assert all(e.owner_citizen_id in known for e in enterprises)
    packages = sample_civil_packages()
    assert len({p.package_id for p in packages}) == 100
    assert all(p.subject_citizen_id in known for p in packages)


def test_unknown_citizen_ids_are_well_formed_and_unknown() -> None:
    known = {c.citizen_id for c in sample_citizens()}
    ids = [unknown_citizen_id(k) for k in range(3)]
    assert len(set(ids)) == 3
    for value in ids:
        assert citizen_id_problem(value) is None
        assert value not in known
