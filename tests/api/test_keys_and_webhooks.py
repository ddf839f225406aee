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

from api.routes.webhooks import refused_address
from config import ROOT
from simulators.process import free_ports
from store import audit, outbox
from store.db import engine_for
from store.tables import api_keys, webhook_subscriptions
from tests.api.conftest import HOAN_KIEM, ApiServer, birth_submission, issue_key
from tests.api.test_dossiers import file
from tests.conftest import EngineStack
from tests.driver import sent_out
from tests.test_webhooks import Receiver
from tests.test_webhooks import receiver as receiver  # the fixture

# No dossier of the suite is filed here: a subscription on it receives nothing.
QUIET_UNIT = "kim-anh"
# A public address: subscriptions must point outside the engine's own network.
PUBLIC_HOOK = "https://93.184.215.14"


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
            "/v1/webhooks", json={"unit": QUIET_UNIT, "url": f"{PUBLIC_HOOK}/dossiers"}
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
            "/v1/webhooks", json={"unit": HOAN_KIEM, "url": f"{PUBLIC_HOOK}/x"}
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


async def test_webhooks_refuse_addresses_inside_the_network_unless_allowed(
    stack: EngineStack, api: ApiServer
) -> None:
    key = await issue_key(
        stack.settings.database_url, "portal-kim-anh-3", [QUIET_UNIT], ["counter_officer"]
    )
    async with api.client(key) as client:
        for url in (
            "http://10.1.2.3/hook",
            "http://172.16.0.9/hook",
            "http://192.168.1.1/hook",
            "http://127.0.0.2:8080/hook",  # loopback, and not the allowed 127.0.0.1
            "http://169.254.169.254/latest/meta-data/",  # cloud metadata
            "http://0.0.0.0/hook",
            "http://[::1]/hook",
            "http://[fd00::1]/hook",
            "http://[::ffff:10.0.0.1]/hook",
        ):
            refused = await client.post("/v1/webhooks", json={"unit": QUIET_UNIT, "url": url})
            assert refused.status_code == 400, (url, refused.text)
            [error] = refused.json()["errors"]
            assert error["field"] == "url" and "WEBHOOK_ALLOWED_HOSTS" in error["rule"], url
        unknown = await client.post(
            "/v1/webhooks", json={"unit": QUIET_UNIT, "url": "https://no-such-host.invalid/x"}
        )
        assert unknown.status_code == 400 and "does not resolve" in unknown.text
        # The test stack allows its own receivers' host (WEBHOOK_ALLOWED_HOSTS).
        allowed = await client.post(
            "/v1/webhooks", json={"unit": QUIET_UNIT, "url": "http://127.0.0.1:9/hook"}
        )
        assert allowed.status_code == 201, allowed.text
        assert (await client.delete(f"/v1/webhooks/{allowed.json()['id']}")).status_code == 204
    # A name is resolved: localhost is loopback unless listed.
    assert await refused_address("http://localhost:9/hook", ()) is not None
    assert await refused_address("http://LOCALHOST:9/hook", ("localhost",)) is None
    assert await refused_address(f"{PUBLIC_HOOK}/x", ()) is None


async def test_a_subscriptions_deliveries_and_a_redelivered_range(
    stack: EngineStack, api: ApiServer, receiver: Receiver
) -> None:
    receiver.up = True
    database_url = stack.settings.database_url
    key = await issue_key(database_url, "portal-hoan-kiem-hooks", [HOAN_KIEM], ["counter_officer"])
    async with api.client(key) as client, api.client(api.ba_dinh_key) as other:
        created = await client.post("/v1/webhooks", json={"unit": HOAN_KIEM, "url": receiver.url})
        assert created.status_code == 201, created.text
        hook = created.json()["id"]
        code = await file(client, stack, birth_submission(citizen=92))
        # The receipt's status change, written with the step and then delivered.
        for _ in range(300):
            page = (
                await client.get(f"/v1/webhooks/{hook}/deliveries", params={"limit": 200})
            ).json()
            mine = [d for d in page["items"] if d["dossier_code"] == code]
            if mine and all(d["state"] == "delivered" for d in mine):
                break
            await asyncio.sleep(0.1)
        assert mine and page["next_cursor"] is None
        first = mine[0]
        assert first["state"] == "delivered" and first["attempts"] == 1
        assert first["status"] == "received" and first["delivered_at"] is not None
        assert first["status_code"] == 204 and first["last_error"] is None
        # Paginated like the other lists.
        one = (await client.get(f"/v1/webhooks/{hook}/deliveries", params={"limit": 1})).json()
        assert len(one["items"]) == 1
        if len(page["items"]) > 1:
            after = await client.get(
                f"/v1/webhooks/{hook}/deliveries", params={"cursor": one["next_cursor"]}
            )
            assert after.json()["items"][0] == page["items"][1]
        bad = await client.get(f"/v1/webhooks/{hook}/deliveries", params={"cursor": "x!"})
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"
        # Another system's subscription is unknown to this key.
        assert (await other.get(f"/v1/webhooks/{hook}/deliveries")).status_code == 404

        # The first event once more: the receiver gets it again under the same event id.
        before = len(receiver.received)
        again = await client.post(
            f"/v1/webhooks/{hook}/redeliver",
            json={
                "dossier_code": code,
                "from_sequence": first["sequence"],
                "to_sequence": first["sequence"],
            },
        )
        assert again.status_code == 202 and again.json() == {"requeued": 1}, again.text
        await until_delivered(stack, code)
        [(headers, _)] = receiver.received[before:]
        assert headers["x-webhook-event-id"] == first["event_id"]
        assert headers["x-webhook-sequence"] == str(first["sequence"])
        everything = await client.post(f"/v1/webhooks/{hook}/redeliver", json={})
        assert everything.status_code == 422 and "range" in everything.text
        backwards = await client.post(
            f"/v1/webhooks/{hook}/redeliver", json={"from_sequence": 5, "to_sequence": 2}
        )
        assert backwards.status_code == 422
        assert (
            await other.post(f"/v1/webhooks/{hook}/redeliver", json={"dossier_code": code})
        ).status_code == 404
        assert (await client.delete(f"/v1/webhooks/{hook}")).status_code == 204

    # The redelivery is in the dossier's audit chain, with who asked.
    async with engine_for(database_url).connect() as conn:
        events = await audit.events(conn, code)
    [asked] = [e for e in events if e.event_type == "webhook_redelivery"]
    assert asked.actor == "api:portal-hoan-kiem-hooks"
    assert json.loads(asked.payload)["requeued"] == 1


async def until_delivered(stack: EngineStack, code: str) -> None:
    await sent_out(stack, code, (outbox.MessageKind.WEBHOOK,))
