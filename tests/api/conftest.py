"""The HTTP API on the session's real stack: uvicorn in-process on a free port, serving
create_app(stack.client, stack.settings), with keys for two wards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from domain.catalogue import default_catalogue
from schemas.catalogue import Procedure
from schemas.statuses import Role
from simulators.seed import sample_citizens, sample_civil_packages
from store import api_keys
from store.api_keys import ApiKeyError
from tests.conftest import EngineStack, serving_api

BIRTH = "1.001193"  # khai sinh: ward tier, decided at the receiving ward
HOAN_KIEM = "hoan-kiem"
BA_DINH = "ba-dinh"


@dataclass(frozen=True)
class ApiServer:
    url: str
    hoan_kiem_key: str  # units hoan-kiem, every role
    ba_dinh_key: str  # units ba-dinh, counter_officer and specialist only
    stack: EngineStack

    def client(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60)


async def issue_key(database_url: str, system: str, units: list[str], roles: list[str]) -> str:
    """A fresh key; a key left by an earlier run on the same database is revoked first."""
    try:
        issued = await api_keys.issue(database_url, system, units, roles)
    except ApiKeyError:
        await api_keys.revoke(database_url, system)
        issued = await api_keys.issue(database_url, system, units, roles)
    return issued.key


@pytest.fixture(scope="session")
async def api(stack: EngineStack) -> AsyncIterator[ApiServer]:
    async with serving_api(stack) as url:
        yield await _keys(stack, url)


async def _keys(stack: EngineStack, url: str) -> ApiServer:
    database_url = stack.settings.database_url
    every_role = [role.value for role in Role]
    keys = ApiServer(
        url=url,
        hoan_kiem_key=await issue_key(database_url, "counter-hoan-kiem", [HOAN_KIEM], every_role),
        ba_dinh_key=await issue_key(
            database_url,
            "counter-ba-dinh",
            [BA_DINH],
            [Role.COUNTER_OFFICER.value, Role.SPECIALIST.value],
        ),
        stack=stack,
    )
    return keys


@pytest.fixture
async def hoan_kiem(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(api.hoan_kiem_key) as client:
        yield client


@pytest.fixture
async def ba_dinh(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(api.ba_dinh_key) as client:
        yield client


def procedure(code: str) -> Procedure:
    return default_catalogue().procedure(code)


def birth_submission(
    receiving_unit: str = HOAN_KIEM, *, citizen: int, **overrides: Any
) -> dict[str, Any]:
    """A complete birth-registration dossier as the counter software sends it (JSON)."""
    person = sample_citizens()[citizen]
    body: dict[str, Any] = {
        "procedure_code": BIRTH,
        "receiving_unit": receiving_unit,
        "applicant": {
            "citizen_id": person.citizen_id,
            "full_name": person.full_name,
            "date_of_birth": person.date_of_birth.isoformat(),
            "phone": person.phone,
            "address": person.address,
        },
        "documents": [
            {"kind": d.kind, "title": d.name, "pages": 2}
            for d in procedure(BIRTH).required_documents
        ],
        "subject_reference": sample_civil_packages()[citizen].package_id,
    }
    body.update(overrides)
    return body


def officer(role: Role, unit: str, number: int = 1) -> dict[str, str]:
    return {
        "officer_id": f"{unit}.{role.value}.{number}",
        "full_name": f"Cán bộ {role.value} {number}",
        "role": role.value,
        "unit": unit,
    }


async def eventually(check: Any, timeout: float = 15) -> Any:
    """Poll `check()` (async, returns a truthy value when done) until it holds: the read model
    and visibility trail the workflow by design."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never held within {timeout}s: {check.__name__}")
        await asyncio.sleep(0.1)


async def awaiting(client: httpx.AsyncClient, code: str, action: str, timeout: float = 30) -> None:
    async def awaits() -> bool:
        response = await client.get(f"/v1/dossiers/{code}")
        assert response.status_code == 200, response.text
        return any(a["action"] == action for a in response.json()["awaiting"])

    awaits.__name__ = f"{code} awaits {action}"
    await eventually(awaits, timeout)
