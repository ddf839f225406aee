"""`python -m ops keys`, `python -m api` on its own, and webhook subscriptions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import httpx

from config import ROOT
from simulators.process import free_ports
from store.db import engine_for
from store.tables import api_keys, webhook_subscriptions
from tests.api.conftest import HOAN_KIEM, ApiServer, birth_submission, issue_key
from tests.api.test_dossiers import file
from tests.conftest import EngineStack

# No dossier of the suite is filed here: a subscription on it cannot hold up another test's
# dossier (a dossier's workflow ends only once its status changes are delivered).
QUIET_UNIT = "kim-anh"


async def ops(stack: EngineStack, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ops",
        "keys",
        *args,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": stack.settings.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ops_keys_issue_and_revoke(stack: EngineStack, api: ApiServer) -> None:
    system = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, err = await ops(
        stack, "issue", "--name", system, "--units", "cau-giay,nghia-do", "--roles", "leader"
    )
    assert code == 0, err
    said, key = out.splitlines()
    assert said.startswith(f"keys: issued to {system}") and "on the next line" in said
    # The key alone on the last line: `| tail -n1` gives it to a script.
    assert key.startswith("dk_") and " " not in key
    async with api.client(key) as client:
        assert (await client.get("/v1/inbox", params={"unit": "nghia-do"})).status_code == 200
        assert (await client.get("/v1/inbox", params={"unit": HOAN_KIEM})).status_code == 403
    # Only the hash is stored.
    async with engine_for(stack.settings.database_url).connect() as conn:
        stored = (await conn.execute(api_keys.select().where(api_keys.c.system == system))).one()
    assert key not in str(tuple(stored)) and len(stored.key_hash) == 64

    code, _, err = await ops(
        stack, "issue", "--name", system, "--units", "cau-giay", "--roles", "leader"
    )
    assert code == 1 and "already has an active key" in err
    code, _, err = await ops(
        stack, "issue", "--name", "cli-x", "--units", "atlantis", "--roles", "leader"
    )
    assert code == 1 and "unknown unit code atlantis" in err
    code, _, err = await ops(
        stack, "issue", "--name", "cli-x", "--units", "cau-giay", "--roles", "mayor"
    )
    assert code == 1 and "unknown role mayor" in err

    code, out, err = await ops(stack, "revoke", system)
    assert code == 0, err
    assert out.startswith(f"keys: revoked the key of {system}") and len(out.splitlines()) == 1
    async with api.client(key) as client:
        assert (await client.get("/v1/inbox", params={"unit": "nghia-do"})).status_code == 401

    # Once revoked, the name may be issued again; --json for scripts.
    code, out, err = await ops(
        stack, "issue", "--name", system, "--units", "cau-giay", "--roles", "leader", "--json"
    )
    assert code == 0, err
    issued = json.loads(out)
    assert issued["system"] == system and issued["units"] == ["cau-giay"]
    assert issued["key"].startswith(f"dk_{issued['key_prefix']}_") and issued["revoked_at"] is None
    code, out, _ = await ops(stack, "revoke", system, "--json")
    assert code == 0 and json.loads(out)["revoked_at"] is not None


async def test_python_m_api_connects_and_migrates_by_itself(
    stack: EngineStack, api: ApiServer
) -> None:
    [port] = free_ports(1)
    target = stack.client.service_client.config.target_host
    # A plain child process, not asyncio's: the stack's workers share this event loop, and a
    # long-running asyncio subprocess terminated under it was seen to leave the loop deaf.
    process = subprocess.Popen(  # noqa: ASYNC220 (Popen returns at once)
        [sys.executable, "-m", "api"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": stack.settings.database_url,
            "DATA_DIR": str(stack.settings.data_dir),
            "TEMPORAL_ADDRESS": target,
            "API_PORT": str(port),
            "LOG_LEVEL": "WARNING",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                try:
                    ready = await client.get("/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, "python -m api exited"
                assert time.monotonic() < deadline, "python -m api never became ready"
                await asyncio.sleep(0.2)
            assert ready.json() == {"status": "ready", "temporal": "ok", "database": "ok"}
            headers = {"Authorization": f"Bearer {api.hoan_kiem_key}"}
            listed = await client.get("/v1/dossiers", headers=headers)
            assert listed.status_code == 200
            # It reads the workflows too: the same payload keys as the workers.
            code = await file(client, stack, birth_submission(citizen=91), headers)
            view = await client.get(f"/v1/dossiers/{code}", headers=headers)
            assert view.status_code == 200, view.text
            assert view.json()["receiving_unit"] == HOAN_KIEM
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 15)


async def test_webhook_subscriptions_belong_to_their_key(
    stack: EngineStack, api: ApiServer
) -> None:
    database_url = stack.settings.database_url
    mine = await issue_key(database_url, "portal-kim-anh", [QUIET_UNIT], ["counter_officer"])
    theirs = await issue_key(database_url, "portal-kim-anh-2", [QUIET_UNIT], ["counter_officer"])
    async with api.client(mine) as client, api.client(theirs) as other:
        created = await client.post(
            "/v1/webhooks", json={"unit": QUIET_UNIT, "url": "https://hooks.example/dossiers"}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert set(hook) == {"id", "unit", "url", "secret", "created_at"}
        assert len(hook["secret"]) >= 43  # 32 random bytes, urlsafe
        async with engine_for(database_url).connect() as conn:
            row = (
                await conn.execute(
                    webhook_subscriptions.select().where(webhook_subscriptions.c.id == hook["id"])
                )
            ).one()
        assert (row.system, row.unit, row.secret, row.active) == (
            "portal-kim-anh",
            QUIET_UNIT,
            hook["secret"],
            True,
        )

        listed = (await client.get("/v1/webhooks")).json()["items"]
        assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
        assert (await other.get("/v1/webhooks")).json()["items"] == []
        # Another system's subscription is as unknown as one that never existed.
        assert (await other.delete(f"/v1/webhooks/{hook['id']}")).status_code == 404

        refused = await client.post(
            "/v1/webhooks", json={"unit": HOAN_KIEM, "url": "https://hooks.example/x"}
        )
        assert refused.status_code == 403 and refused.json()["errors"][0]["field"] == "unit"
        ftp = await client.post("/v1/webhooks", json={"unit": QUIET_UNIT, "url": "ftp://x/y"})
        assert ftp.status_code == 422 and ftp.json()["errors"][0]["field"] == "url"

        assert (await client.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
        assert (await client.get("/v1/webhooks")).json()["items"] == []
        gone = await client.delete(f"/v1/webhooks/{hook['id']}")
        assert gone.status_code == 404 and gone.headers["content-type"] == (
            "application/problem+json"
        )
