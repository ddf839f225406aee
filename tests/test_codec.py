"""Payload encryption: the codec, its keys, the codec server over HTTP, and one run on a real
Temporal dev server proving the server stores no plain personal data."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import History
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from codec import (
    ENCODING,
    KEY_ID_KEY,
    EncryptionCodec,
    KeyConfigError,
    KeyRing,
    PayloadDecodeError,
    PlaintextRefused,
    UnknownKeyError,
    data_converter,
    generate_key,
    load_keys,
)
from codec.server import create_app
from schemas.dossier import Applicant, DossierSubmission, SubmittedDocument
from simulators.seed import sample_citizens

CITIZEN = sample_citizens()[0]
UI_ORIGIN = "http://localhost:8233"
TOKEN = "test-token-" + secrets.token_hex(8)


def ring(*key_ids: str) -> KeyRing:
    return KeyRing((k, _secret(k)) for k in key_ids)


_SECRETS: dict[str, bytes] = {}


def _secret(key_id: str) -> bytes:
    # One secret per id for the whole module, so ring("b", "a") holds the "a" of ring("a").
    return _SECRETS.setdefault(key_id, os.urandom(32))


def submission() -> DossierSubmission:
    return DossierSubmission(
        procedure_code="1.001193",
        receiving_unit="hoan-kiem",
        applicant=Applicant(
            citizen_id=CITIZEN.citizen_id,
            full_name=CITIZEN.full_name,
            date_of_birth=CITIZEN.date_of_birth,
            phone=CITIZEN.phone,
            address=CITIZEN.address,
        ),
        documents=[SubmittedDocument(kind="to_khai", title="Tờ khai đăng ký khai sinh")],
    )


def personal_data_forms() -> list[bytes]:
    """The citizen's ID, name, phone and address as they would appear in plain payloads."""
    values = [CITIZEN.citizen_id, CITIZEN.full_name, CITIZEN.phone, CITIZEN.address]
    return [v.encode() for v in values] + [json.dumps(v)[1:-1].encode() for v in values]


def assert_no_personal_data(blob: bytes) -> None:
    for form in personal_data_forms():
        assert form not in blob, f"{form!r} found in plain"


# -- the codec ---------------------------------------------------------------------------


async def test_pydantic_models_round_trip_and_hide_personal_data() -> None:
    converter = data_converter(ring("a"))
    sub = submission()
    # The control: without the codec the payload does hold the citizen's data.
    plain = converter.payload_converter.to_payloads([sub])[0].SerializeToString()
    assert CITIZEN.citizen_id.encode() in plain

    encoded = await converter.encode([sub])
    assert encoded[0].metadata["encoding"] == ENCODING
    assert encoded[0].metadata[KEY_ID_KEY] == b"a"
    assert_no_personal_data(b"".join(p.SerializeToString() for p in encoded))
    assert await converter.decode(encoded, [DossierSubmission]) == [sub]


async def test_decode_restores_the_original_payload_exactly() -> None:
    codec = data_converter(ring("a")).payload_codec
    assert codec is not None
    original = Payload(metadata={"encoding": b"json/plain", "messageType": b"x.Y"}, data=b'{"a":1}')
    assert await codec.decode(await codec.encode([original])) == [original]


async def test_each_encode_uses_a_fresh_nonce() -> None:
    codec = data_converter(ring("a")).payload_codec
    assert codec is not None
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    encoded = await codec.encode([payload] * 50)
    assert len({p.data[:12] for p in encoded}) == 50
    assert len({p.data for p in encoded}) == 50


async def test_rotation_decodes_old_keys_and_encodes_with_the_new_one() -> None:
    old = data_converter(ring("a"))
    rotated = data_converter(ring("b", "a"))
    sub = submission()
    sealed_by_a = await old.encode([sub])
    assert await rotated.decode(sealed_by_a, [DossierSubmission]) == [sub]
    assert (await rotated.encode([sub]))[0].metadata[KEY_ID_KEY] == b"b"

    retired = data_converter(ring("b"))  # key a dropped too early
    with pytest.raises(UnknownKeyError, match="'a'") as caught:
        await retired.decode(sealed_by_a, [DossierSubmission])
    assert caught.value.key_id == "a"


async def test_tampered_payloads_are_refused() -> None:
    codec = data_converter(ring("a", "b")).payload_codec
    assert codec is not None
    [sealed] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])

    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    relabelled = Payload()  # ciphertext of key a presented as key b: the key id is bound in
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_KEY] = b"b"
    truncated = Payload(metadata=dict(sealed.metadata), data=sealed.data[:20])
    for bad in (flipped, relabelled, truncated):
        with pytest.raises(PayloadDecodeError):
            await codec.decode([bad])


async def test_unencrypted_payloads_are_refused_and_shown_only_by_the_codec_server() -> None:
    converter = data_converter(ring("a"))
    sub = submission()
    unencrypted = converter.payload_converter.to_payloads([sub])
    with pytest.raises(PlaintextRefused, match="not encrypted with this deployment's"):
        await converter.decode(unencrypted, [DossierSubmission])
    # The Web UI's codec server shows what it is given.
    shown = await EncryptionCodec(ring("a"), refuse_plaintext=False).decode(unencrypted)
    assert shown == unencrypted


async def test_failure_messages_are_encrypted_too() -> None:
    converter = data_converter(ring("a"))
    message = f"population refused GET /v1/citizens/{CITIZEN.citizen_id}: 404"
    failure = Failure()
    await converter.encode_failure(ApplicationError(message, type="RegistryRejected"), failure)
    assert failure.message == "Encoded failure"
    assert CITIZEN.citizen_id.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and decoded.message == message


# -- keys --------------------------------------------------------------------------------


def test_development_key_file_is_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYLOAD_KEYS", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    first = load_keys()  # DATA_DIR from config.load_settings()
    path = tmp_path / "keys" / "payload.keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip().startswith(first.active_id + ":")
    assert load_keys(data_dir=tmp_path).active_id == first.active_id
    assert [p.name for p in path.parent.iterdir()] == ["payload.keys"]  # no temporary left

    path.chmod(0o644)
    with pytest.raises(KeyConfigError, match="chmod 600"):
        load_keys(data_dir=tmp_path)


async def test_payloads_sealed_before_a_restart_still_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAYLOAD_KEYS", raising=False)
    sub = submission()
    sealed = await data_converter(load_keys(data_dir=tmp_path)).encode([sub])
    reopened = data_converter(load_keys(data_dir=tmp_path))  # the next `make run`
    assert await reopened.decode(sealed, [DossierSubmission]) == [sub]


def test_payload_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    new, old = generate_key(), generate_key()
    monkeypatch.setenv("PAYLOAD_KEYS", f"{new}, {old}")
    keys = load_keys()
    assert keys.active_id == new.split(":")[0]
    assert keys.key_ids == (new.split(":")[0], old.split(":")[0])
    assert "KeyRing(" in repr(keys) and new.split(":")[1] not in repr(keys)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD = "good:" + _b64(bytes(range(32)))
SECRET_SHORT = _b64(b"0123456789abcdef")


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("nokeyid", "entry 1: expected keyid"),
        (f"{GOOD},k2:{SECRET_SHORT}", "entry 2 ('k2'): 16 bytes"),
        (f"{GOOD},k3:not*base64", "entry 2 ('k3'): the key is not valid base64url"),
        (f"{GOOD},{GOOD}", "entry 2 ('good'): duplicate key id"),
        (f"bad id:{_b64(bytes(32))}", "entry 1 ('bad id'): the id must be"),
        (" , ", "no key given"),
    ],
)
def test_payload_keys_errors_name_the_entry(
    spec: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYLOAD_KEYS", spec)
    with pytest.raises(KeyConfigError) as caught:
        load_keys()
    assert named in str(caught.value) and str(caught.value).startswith("PAYLOAD_KEYS")
    assert SECRET_SHORT not in str(caught.value)  # the message never repeats a secret


def test_a_blank_payload_keys_is_an_error_not_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAYLOAD_KEYS", "  ")
    with pytest.raises(KeyConfigError, match="set but empty"):
        load_keys()


def test_new_key_command_prints_a_usable_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "codec", "new-key"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.strip()
    assert KeyRing.parse(out).active_id == out.split(":")[0]


# -- the codec server over HTTP ----------------------------------------------------------


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # leave pytest's signal handlers alone

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, held from the start: no race
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait_for(server.ready.wait(), timeout=10)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def as_json(payloads: list[Payload]) -> dict[str, object]:
    return {"payloads": [json_format.MessageToDict(p) for p in payloads]}


def from_json(body: dict[str, list[dict[str, object]]]) -> list[Payload]:
    return [json_format.ParseDict(p, Payload()) for p in body["payloads"]]


@pytest.fixture(scope="module")
async def codec_url() -> AsyncIterator[str]:
    async with serving(create_app(ring("b", "a"), [TOKEN, "other"], [UI_ORIGIN])) as url:
        yield url


async def _sealed(*key_ids: str) -> tuple[list[Payload], list[Payload]]:
    converter = data_converter(ring(*key_ids))
    assert converter.payload_codec is not None
    originals = converter.payload_converter.to_payloads([submission(), "xin chào", 42])
    return originals, await converter.payload_codec.encode(originals)


async def test_server_decodes_for_a_valid_token(codec_url: str) -> None:
    originals, sealed = await _sealed("a")
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}
    async with httpx.AsyncClient(base_url=codec_url) as http:
        for path in ("/decode", "/default/decode"):  # the UI, and the CLI's {namespace} form
            response = await http.post(path, json=as_json(sealed), headers=headers)
            assert response.status_code == 200, response.text
            assert from_json(response.json()) == originals

        encoded = await http.post("/encode", json=as_json(originals), headers=headers)
        assert encoded.status_code == 200
        assert all(p.metadata[KEY_ID_KEY] == b"b" for p in from_json(encoded.json()))
        again = await http.post("/decode", json=encoded.json(), headers=headers)
        assert from_json(again.json()) == originals

        empty = await http.post("/decode", json={"payloads": []}, headers=headers)
        assert empty.json() == {"payloads": []}


async def test_server_refuses_without_a_valid_token(codec_url: str) -> None:
    _, sealed = await _sealed("a")
    async with httpx.AsyncClient(base_url=codec_url) as http:
        for path in ("/decode", "/encode"):
            missing = await http.post(path, json=as_json(sealed))
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await http.post(
                path, json=as_json(sealed), headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 403
            assert CITIZEN.citizen_id not in wrong.text


async def test_server_reports_bad_input_and_unknown_keys(codec_url: str) -> None:
    _, sealed = await _sealed("zz")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=codec_url) as http:
        unknown = await http.post("/decode", json=as_json(sealed), headers=headers)
        assert unknown.status_code == 400 and "'zz'" in unknown.json()["detail"]
        garbage = await http.post("/decode", json={"payloads": "x"}, headers=headers)
        assert garbage.status_code == 400
        not_json = await http.post("/decode", content=b"{", headers=headers)
        assert not_json.status_code == 400


async def test_server_answers_the_ui_preflight_for_its_origin_only(codec_url: str) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with httpx.AsyncClient(base_url=codec_url) as http:
        ok = await http.options("/decode", headers={"Origin": UI_ORIGIN, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == UI_ORIGIN
        assert ok.headers["access-control-allow-credentials"] == "true"
        allowed = ok.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-namespace"} <= {
            h.strip() for h in allowed.split(",")
        }

        other = await http.options(
            "/decode", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers

        _, sealed = await _sealed("a")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        from_ui = await http.post(
            "/decode", json=as_json(sealed), headers={**headers, "Origin": UI_ORIGIN}
        )
        assert from_ui.status_code == 200
        assert from_ui.headers["access-control-allow-origin"] == UI_ORIGIN
        foreign = await http.post(
            "/decode", json=as_json(sealed), headers={**headers, "Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403


async def test_server_without_tokens_serves_localhost_only() -> None:
    originals, sealed = await _sealed("a")
    app = create_app(ring("a"), [], [UI_ORIGIN])
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        local = await http.post("/decode", json=as_json(sealed))
        assert local.status_code == 200 and from_json(local.json()) == originals
    # A remote client, as the app sees it (a real remote socket is not available in a test).
    remote = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=remote, base_url="http://codec") as http:
        response = await http.post("/decode", json=as_json(sealed))
        assert response.status_code == 403 and "CODEC_TOKENS" in response.text


# -- a real Temporal server stores no plain personal data ---------------------------------


class Person(BaseModel):
    citizen_id: str
    full_name: str
    note: str = ""


@activity.defn
async def echo_person(person: Person) -> Person:
    return person


@activity.defn
async def refuse_person(person: Person) -> None:
    # What a registry refusal looks like: the URL and the message name the citizen.
    raise ApplicationError(
        f"population refused GET /v1/citizens/{person.citizen_id}: 404 {person.full_name}",
        non_retryable=True,
    )


@workflow.defn(sandboxed=False)
class EchoPersonWorkflow:
    @workflow.run
    async def run(self, person: Person) -> Person:
        timeout = timedelta(seconds=10)
        echoed = await workflow.execute_activity(
            echo_person, person, start_to_close_timeout=timeout
        )
        local = await workflow.execute_local_activity(
            echo_person, echoed, start_to_close_timeout=timeout
        )
        try:
            await workflow.execute_activity(
                refuse_person,
                local,
                start_to_close_timeout=timeout,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            assert isinstance(err.cause, ApplicationError)
            return local.model_copy(update={"note": err.cause.message})
        return local


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every Payload anywhere inside a proto message."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        kind = field.message_type
        if field.type != FieldDescriptor.TYPE_MESSAGE or kind is None:
            continue
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            items = list(value.values())
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            yield from payloads_in(item)


async def test_temporal_server_stores_no_plain_personal_data() -> None:
    keys = ring("k1")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=data_converter(keys),
    )
    async with env:
        queue = f"codec-{uuid.uuid4()}"
        person = Person(citizen_id=CITIZEN.citizen_id, full_name=CITIZEN.full_name)
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[EchoPersonWorkflow],
            activities=[echo_person, refuse_person],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await env.client.start_workflow(
                EchoPersonWorkflow.run,
                person,
                id=f"codec-{uuid.uuid4()}",
                task_queue=queue,
                memo={"applicant": CITIZEN.full_name},
            )
            result = await handle.result()
        # The codec client reads everything back, the failure message included.
        assert result.citizen_id == person.citizen_id and result.full_name == person.full_name
        assert CITIZEN.citizen_id in result.note

        plain = await Client.connect(env.client.service_client.config.target_host)
        history = await plain.get_workflow_handle(handle.id).fetch_history()
        text = history.to_json()
        raw = History(events=history.events).SerializeToString()
        for form in personal_data_forms():
            assert form.decode() not in text
        assert_no_personal_data(raw)

        found = [p for e in history.events for p in payloads_in(e)]
        for p in found:
            assert_no_personal_data(p.data)
        sealed = [p for p in found if p.metadata.get("encoding") == ENCODING]
        # input, memo, activity input and result, local activity result, the refused
        # activity's input and failure message, the workflow result: all sealed with k1.
        assert len(sealed) >= 8 and all(p.metadata[KEY_ID_KEY] == b"k1" for p in sealed)
        unsealed = [p for p in found if p.metadata.get("encoding") != ENCODING]
        # Only the SDK's own local-activity marker bookkeeping (activity type, ids) is plain.
        assert all(b'"activity_type"' in p.data for p in unsealed), unsealed
