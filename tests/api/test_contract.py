"""The API's contract as a client reads it: every operation documents every problem it can
answer, every 4xx names the field and the rule, codes and text have stated formats, instants
are UTC, and the docs page needs no internet."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from api.app import create_app
from api.contract import MAX_JSON_DEPTH, ContractRoute, expected_statuses, json_depth
from api.problems import operations
from config import load_settings
from domain.calendar import HANOI
from domain.codes import dossier_code, is_dossier_code
from schemas.actions import Refusal, SupplementRequest
from schemas.citizen_id import CITIZEN_ID_PATTERN, citizen_id_problem
from schemas.dossier import Applicant, Officer
from schemas.formats import DOSSIER_CODE_PATTERN, FreeText, Name
from schemas.statuses import Role
from tests.api.conftest import HOAN_KIEM, ApiServer, birth_submission, eventually, officer

PROBLEM = "application/problem+json"


def _app() -> FastAPI:
    return create_app(None, load_settings())


# --- the document -------------------------------------------------------------------------------
def test_every_operation_documents_every_problem_it_can_answer() -> None:
    app = _app()
    document = app.openapi()
    walked = [route for route in operations(app.routes) if route.include_in_schema]
    assert len(walked) >= 19
    for route in walked:
        # Whoever adds an operation gets the contract: the route class of every router.
        assert isinstance(route, ContractRoute), f"{route.path} is not a ContractRoute"
        for method in route.methods or ():
            operation = document["paths"][route.path][method.lower()]
            declared = {int(status) for status in operation["responses"]}
            missing = expected_statuses(route) - declared
            assert not missing, f"{method} {route.path} does not declare {sorted(missing)}"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == [PROBLEM], (route.path, status)
                    schema = response["content"][PROBLEM]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}
    paths = document["paths"]
    for path, method in [
        ("/v1/dossiers/{code}/actions/approve", "post"),
        ("/v1/webhooks", "post"),
        ("/v1/dossiers", "post"),
    ]:
        assert {"400", "401", "403", "413", "415", "422"} <= set(paths[path][method]["responses"])
    assert {"401", "404", "422"} <= set(paths["/v1/dossiers/{code}"]["get"]["responses"])


def test_formats_and_enums_are_in_the_document() -> None:
    schemas = _app().openapi()["components"]["schemas"]
    submission = schemas["DossierSubmission"]["properties"]
    assert submission["procedure_code"]["pattern"] == r"^[0-9]\.[0-9]{6}$"
    assert "pattern" in submission["receiving_unit"]
    assert schemas["Applicant"]["properties"]["citizen_id"]["pattern"] == CITIZEN_ID_PATTERN
    assert "pattern" in schemas["Applicant"]["properties"]["full_name"]
    view = schemas["DossierView"]["properties"]
    assert view["tier"] == {"$ref": "#/components/schemas/Tier"}
    assert view["lane"] == {"$ref": "#/components/schemas/Lane"}
    awaited = schemas["AwaitedAction"]["properties"]
    assert awaited["action"] == {"$ref": "#/components/schemas/Action"}
    assert awaited["role"] == {"$ref": "#/components/schemas/Role"}
    task = schemas["InboxTask"]["properties"]
    assert task["actions"]["items"] == {"$ref": "#/components/schemas/Action"}
    assert schemas["WebhookEvent"]["properties"]["status"] == {
        "$ref": "#/components/schemas/DossierStatus"
    }


def test_links_chain_a_filing_to_every_operation_on_it() -> None:
    paths = _app().openapi()["paths"]
    on_dossier = {
        operation["operationId"]
        for path, item in paths.items()
        if path.startswith("/v1/dossiers/{code}")
        for operation in item.values()
    }
    filed = paths["/v1/dossiers"]["post"]["responses"]["201"]["links"]
    assert set(filed) == on_dossier
    assert filed["get_dossier"]["parameters"] == {"code": "$response.body#/code"}
    approved = paths["/v1/dossiers/{code}/actions/approve"]["post"]["responses"]["200"]["links"]
    assert set(approved) == {"get_dossier", "get_timeline"}
    assert approved["get_dossier"]["parameters"] == {"code": "$request.path.code"}


def test_the_webhook_integrators_receive_is_described() -> None:
    webhook = _app().openapi()["webhooks"]["dossier-status"]["post"]
    headers = {p["name"] for p in webhook["parameters"] if p["in"] == "header"}
    assert headers == {"X-Webhook-Event-Id", "X-Webhook-Signature"}
    body = webhook["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/WebhookEvent"}


# --- formats --------------------------------------------------------------------------------------
@given(
    agency=st.from_regex(r"\A[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[A-Z][0-9]{2}\Z"),
    day=st.dates(),
    sequence=st.integers(1, 9999),
)
def test_the_dossier_code_pattern_is_the_one_codes_are_built_with(
    agency: str, day: Any, sequence: int
) -> None:
    code = dossier_code(agency, day, sequence)
    assert re.fullmatch(DOSSIER_CODE_PATTERN, code) and is_dossier_code(code)
    broken = code[:-1]
    assert not re.fullmatch(DOSSIER_CODE_PATTERN, broken) and not is_dossier_code(broken)


@given(st.from_regex(r"\A[0-9]{12}\Z") | st.text(max_size=14))
def test_the_citizen_id_pattern_says_what_the_rule_checks(value: str) -> None:
    assert (re.fullmatch(CITIZEN_ID_PATTERN, value) is not None) == (
        citizen_id_problem(value) is None
    )


class _Typed(BaseModel):
    name: Name
    note: FreeText


@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("Nguyễn\u0085Văn", "ok"),  # C1: NEXT LINE
        ("Nguyễn\u202eVăn", "ok"),  # RIGHT-TO-LEFT OVERRIDE
        ("Nguyễn\u2066Văn", "ok"),  # LEFT-TO-RIGHT ISOLATE
        ("Nguyễn\nVăn", "ok"),  # a name is one line
        ("Nguyễn Văn", "a\x00b"),
        ("Nguyễn Văn", "a\u009bb"),
    ],
)
def test_text_refuses_controls_and_bidirectional_overrides(name: str, note: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _Typed(name=name, note=note)
    [error] = refused.value.errors()
    assert "bidirectional overrides" in error["msg"] and "U+" in error["msg"]
    assert (
        re.search(
            _Typed.model_json_schema()["properties"][str(error["loc"][0])]["pattern"],
            name if error["loc"][0] == "name" else note,
        )
        is None
    )


def test_free_text_keeps_line_breaks_and_tabs() -> None:
    assert _Typed(name="Trần Thị Hoa", note="dòng 1\r\n\tdòng 2").note.endswith("dòng 2")
    assert Refusal(officer=_officer(), reason="Thiếu giấy tờ:\n- bản sao").reason
    with pytest.raises(ValidationError):
        SupplementRequest(officer=_officer(), missing=["giấy khai sinh\u202e"])
    with pytest.raises(ValidationError):
        Applicant(
            citizen_id="001203004005",
            full_name="A\u0085B",
            date_of_birth="1990-01-01",
        )


def _officer() -> Officer:
    return Officer(officer_id="hk.leader.1", full_name="Lê Hoa", role=Role.LEADER, unit=HOAN_KIEM)


def test_json_depth_is_counted_without_parsing() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * 100) == 100


# --- the live API -------------------------------------------------------------------------------
def _problem(response: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert [e["field"] for e in problem["errors"]] == [field], problem
    return problem


async def test_every_4xx_names_the_field_and_the_rule(
    api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    async with api.client(None) as anonymous:
        _problem(await anonymous.get("/v1/dossiers"), 401, "Authorization")
    unknown = _problem(await hoan_kiem.get("/v1/nowhere"), 404, "path")
    assert "/v1/nowhere" in unknown["errors"][0]["rule"]
    wrong = _problem(await hoan_kiem.delete("/v1/dossiers"), 405, "method")
    assert "DELETE" in wrong["errors"][0]["rule"] and "POST" in wrong["errors"][0]["rule"]
    assert {"GET", "POST"} <= set(
        (await hoan_kiem.delete("/v1/dossiers")).headers["Allow"].split(", ")
    )
    big = _problem(await hoan_kiem.post("/v1/webhooks", content=b"x" * (1024 * 1024)), 413, "body")
    assert "bytes" in big["errors"][0]["rule"]
    plain = _problem(
        await hoan_kiem.post(
            "/v1/webhooks",
            content=b'{"unit": "hoan-kiem", "url": "http://x.invalid/"}',
            headers={"Content-Type": "text/plain"},
        ),
        415,
        "Content-Type",
    )
    assert "application/json" in plain["errors"][0]["rule"]
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    nested = _problem(
        await hoan_kiem.post(
            "/v1/dossiers", content=deep, headers={"Idempotency-Key": "deep", **_json()}
        ),
        400,
        "body",
    )
    assert str(MAX_JSON_DEPTH) in nested["errors"][0]["rule"]
    overridden = birth_submission(citizen=3)
    overridden["applicant"]["full_name"] = "Nguyễn\u202eVăn"
    bidi = _problem(
        await hoan_kiem.post("/v1/dossiers", json=overridden, headers={"Idempotency-Key": "b"}),
        422,
        "applicant.full_name",
    )
    assert "bidirectional" in bidi["errors"][0]["rule"]
    first = await hoan_kiem.post(
        "/v1/dossiers", json=birth_submission(citizen=4), headers={"Idempotency-Key": "c-409"}
    )
    assert first.status_code in (200, 201), first.text
    api.stack.started.append(first.json()["code"])
    _problem(
        await hoan_kiem.post(
            "/v1/dossiers",
            json=birth_submission(citizen=5),
            headers={"Idempotency-Key": "c-409"},
        ),
        409,
        "Idempotency-Key",
    )
    code = first.json()["code"]
    early = await hoan_kiem.post(
        f"/v1/dossiers/{code}/actions/approve", json={"officer": officer(Role.LEADER, HOAN_KIEM)}
    )
    _problem(early, 409, "action")


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _instants(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _instants(item)
    elif isinstance(value, list):
        for item in value:
            yield from _instants(item)
    elif isinstance(value, str) and _INSTANT.match(value):
        yield value


async def test_every_instant_in_an_answer_is_utc(
    api: ApiServer, hoan_kiem: httpx.AsyncClient
) -> None:
    # Filed with Hanoi's offset, as the counter software may send it.
    received = datetime.now(HANOI).replace(microsecond=0) - timedelta(hours=2)
    filing = birth_submission(citizen=6, received_at=received.isoformat())
    receipt = await hoan_kiem.post(
        "/v1/dossiers", json=filing, headers={"Idempotency-Key": f"utc-{uuid.uuid4()}"}
    )
    assert receipt.status_code in (200, 201), receipt.text
    code = receipt.json()["code"]
    api.stack.started.append(code)

    async def in_the_inbox() -> httpx.Response | None:
        inbox = await hoan_kiem.get("/v1/inbox", params={"unit": HOAN_KIEM})
        codes = {item["dossier_code"] for item in inbox.json()["items"]}
        return inbox if code in codes else None

    inbox = await eventually(in_the_inbox, timeout=30)
    answers = [
        receipt,
        inbox,
        await hoan_kiem.get(f"/v1/dossiers/{code}"),
        await hoan_kiem.get(f"/v1/dossiers/{code}/timeline"),
        await hoan_kiem.get("/v1/dossiers", params={"unit": HOAN_KIEM}),
    ]
    seen: list[str] = []
    for answer in answers:
        assert answer.status_code == 200 or answer is receipt, answer.text
        seen.extend(_instants(answer.json()))
    assert len(seen) >= 8
    assert [s for s in seen if not s.endswith("Z")] == []
    view = answers[2].json()
    assert datetime.fromisoformat(view["received_at"]) == received
    task = next(i for i in inbox.json()["items"] if i["dossier_code"] == code)
    assert task["actions"] == task["action"].split("/") and task["role"] in set(Role)


async def test_the_docs_page_needs_no_internet(api: ApiServer) -> None:
    async with api.client(None) as anonymous:
        page = await anonymous.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert not re.search(r"https?://", html), re.findall(r"https?://[^\"' ]+", html)
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert len(assets) >= 3
        for asset in assets:
            loaded = await anonymous.get(asset)
            assert loaded.status_code == 200 and len(loaded.content) > 100, asset
        assert "validatorUrl" in html and "/openapi.json" in html
