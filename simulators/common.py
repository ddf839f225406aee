"""What every registry simulator shares: latency, faults, call recording, control endpoints.

Knobs come from the environment (config.load_simulator_settings, when an app is created):
    SIM_LATENCY_MS / SIM_<NAME>_LATENCY_MS        added before each business call (default 5)
    SIM_FAILURE_RATE / SIM_<NAME>_FAILURE_RATE    probability of a 503 (default 0.0)
    SIM_SEED                                      seed of the random draws (default 2025)
    SIM_MAX_RECORDED_CALLS                        calls kept in memory (default 50000)
and change at runtime through `POST /_sim/faults`. Business calls are everything outside
`/_sim/`; control calls are never delayed, failed or recorded.

A business call that carries an `Idempotency-Key` header is executed once: the same key
again gets the first answer (waiting for it while the first call is still being answered),
and the same key with another method, path or body gets a 422. The engine sends a key with
every call that has an effect, and the real services are asked to honour it the same way.
What each call did is counted per business key on `GET /_sim/effects` (signatures per
document, payments per dossier, ...), so a duplicate shows as a count above one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import load_simulator_settings
from schemas.citizen_id import citizen_id_problem

# Registries in Vietnam stamp their replies in local time (UTC+7, no DST).
VN_TZ = timezone(timedelta(hours=7), "ICT")

CONTROL_PREFIX = "/_sim"


def now_vn() -> datetime:
    return datetime.now(VN_TZ)


def _well_formed_citizen_id(value: str) -> str:
    problem = citizen_id_problem(value)
    if problem:
        raise ValueError(problem)
    return value


# A personal identification number the registries accept (12 digits, valid prefix).
CitizenId = Annotated[str, AfterValidator(_well_formed_citizen_id)]


# --- bodies ---------------------------------------------------------------------------


class Body(BaseModel):
    """Request bodies refuse unknown keys, so a typo in the engine shows up as a 422."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Reply(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorReply(Reply):
    error: str
    message: str


class HealthReply(Reply):
    service: str
    ok: bool


class CallRecord(Reply):
    seq: int
    at: datetime
    method: str
    path: str
    query: str
    body: JsonValue | None
    status: int


class FaultsRequest(Body):
    fail_next: int = Field(default=0, ge=0, description="Next N business calls answer `status`")
    status: int = Field(default=503, ge=400, le=599)
    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    failure_rate: float | None = Field(default=None, ge=0.0, le=1.0)


class FaultsReply(Reply):
    fail_next: int
    status: int
    latency_ms: int
    failure_rate: float


class StatsReply(Reply):
    calls: int
    peak_calls_per_second: int


class EffectCount(Reply):
    """How many times a simulator did one kind of thing for one business key."""

    kind: str = Field(description="signature, payment, portal_receipt, post_order, ...")
    key: str = Field(description="the business key: a document, a dossier, a dossier's status")
    count: int


class ApiError(Exception):
    """A business error a handler raises; rendered as `{"error", "message"}`."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


def error_code(status: int) -> str:
    return _ERROR_CODES.get(status, f"http_{status}")


def error_response(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorReply(error=error, message=message).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """`citizen_id: String should match pattern ...; amount_vnd: ...`, body prefix dropped."""
    parts: list[str] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "path", "query")]
        where = ".".join(loc) or "body"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


# --- configuration and state ----------------------------------------------------------


class SimState:
    """In-memory fault settings and call log of one simulator app."""

    def __init__(self, name: str) -> None:
        self.name = name
        knobs = load_simulator_settings([name])
        self.latency_ms = knobs.faults[name].latency_ms
        self.failure_rate = knobs.faults[name].failure_rate
        # One seeded generator per app: a run with the same seed fails the same calls.
        self.rng = random.Random(knobs.seed)
        self.fail_next = 0
        self.fail_status = 503
        # Bounded so that a surge benchmark cannot exhaust memory; counters stay exact.
        self.calls: deque[CallRecord] = deque(maxlen=knobs.max_recorded_calls)
        self.total_calls = 0
        self.per_second: Counter[int] = Counter()
        self.effects: Counter[tuple[str, str]] = Counter()
        self.answers = IdempotentAnswers()
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        self.total_calls += 1
        self.per_second[int(time.time())] += 1
        return self._seq

    def injected_status(self) -> int | None:
        """The status to fail this call with, or None to let it through."""
        # Draw on every call so the sequence of draws does not depend on the settings.
        draw = self.rng.random()
        if self.fail_next > 0:
            self.fail_next -= 1
            return self.fail_status
        if draw < self.failure_rate:
            return 503
        return None

    async def delay(self) -> None:
        """The registry's latency, before it acts on a business call."""
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)

    def record_effect(self, kind: str, key: str) -> None:
        self.effects[(kind, key)] += 1

    def effect_counts(self, kind: str | None = None, key: str | None = None) -> list[EffectCount]:
        return [
            EffectCount(kind=k, key=business_key, count=count)
            for (k, business_key), count in sorted(self.effects.items())
            if (kind is None or k == kind) and (key is None or business_key == key)
        ]

    def clear(self) -> None:
        self.calls.clear()
        self.total_calls = 0
        self.per_second.clear()
        self.effects.clear()

    def faults(self) -> FaultsReply:
        return FaultsReply(
            fail_next=self.fail_next,
            status=self.fail_status,
            latency_ms=self.latency_ms,
            failure_rate=self.failure_rate,
        )

    def stats(self) -> StatsReply:
        peak = max(self.per_second.values(), default=0)
        return StatsReply(calls=self.total_calls, peak_calls_per_second=peak)


IDEMPOTENCY_HEADER = b"idempotency-key"
# Answers kept per simulator; the real services keep a key at least a day.
KEPT_ANSWERS = 50_000


class Answer(BaseModel):
    """A business call's reply as it left: replayed as is for the same key."""

    model_config = ConfigDict(frozen=True)

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Pending:
    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.answer: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()


class IdempotentAnswers:
    """First answers by Idempotency-Key. A key is taken when its first call arrives; a call
    with the same key waits for that answer. A first call that ends in a 5xx or an error
    did nothing for sure, so it releases the key and the next call with it runs."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, _Pending] = OrderedDict()

    def claim(self, key: str, fingerprint: str) -> _Pending | None:
        """None when this call is the first with the key (it runs and then `settle`s);
        else the earlier call, whose answer to wait for."""
        earlier = self._keys.get(key)
        if earlier is not None:
            return earlier
        self._keys[key] = _Pending(fingerprint)
        while len(self._keys) > KEPT_ANSWERS:
            self._keys.popitem(last=False)
        return None

    def settle(self, key: str, answer: Answer | None) -> None:
        pending = self._keys.get(key)
        if pending is None:
            return
        if answer is None or answer.status >= 500:
            del self._keys[key]
            answer = None
        if not pending.answer.done():
            pending.answer.set_result(answer)


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> str:
    return hashlib.sha256(b"\x1f".join([method.encode(), path.encode(), query, body])).hexdigest()


def _parse_json(raw: bytes) -> JsonValue | None:
    if not raw:
        return None
    try:
        value: JsonValue = json.loads(raw)
    except ValueError:
        return None
    return value


class SimMiddleware:
    """Delays, fails and records business calls, and answers a repeated Idempotency-Key with
    the first answer (pure ASGI, so the body can be replayed)."""

    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return

        state = self.state
        seq = state.next_seq()
        at = now_vn()
        raw = await _read_body(receive)
        query_bytes: bytes = scope.get("query_string", b"")
        # Decided on arrival, so calls fail in the order they came whatever the latency.
        fault = state.injected_status()

        def record(status: int) -> None:
            state.calls.append(
                CallRecord(
                    seq=seq,
                    at=at,
                    method=scope["method"],
                    path=path,
                    query=query_bytes.decode("latin-1"),
                    body=_parse_json(raw),
                    status=status,
                )
            )

        if fault is not None:
            await state.delay()
            record(fault)
            headers = {"Retry-After": "1"} if fault in (429, 503) else None
            message = f"{state.name} simulator: injected fault"
            response = error_response(fault, error_code(fault), message, headers)
            await response(scope, receive, send)
            return

        key = _header(scope, IDEMPOTENCY_HEADER)
        if key is None:
            await state.delay()
            await self._run(scope, raw, receive, send, record)
            return
        request_print = fingerprint(scope["method"], path, query_bytes, raw)
        while True:
            earlier = state.answers.claim(key, request_print)
            if earlier is None:
                break
            if earlier.fingerprint != request_print:
                record(422)
                message = f"Idempotency-Key {key} was used for another request"
                await error_response(422, "idempotency_key_reused", message)(scope, receive, send)
                return
            first = await asyncio.shield(earlier.answer)
            if first is not None:
                record(first.status)
                await _send_answer(first, send)
                return
            # The first call failed and released the key: this one runs instead.
        answer: Answer | None = None
        try:
            await state.delay()
            answer = await self._run(scope, raw, receive, send, record)
        finally:
            state.answers.settle(key, answer)

    async def _run(
        self,
        scope: Scope,
        raw: bytes,
        receive: Receive,
        send: Send,
        record: Callable[[int], None],
    ) -> Answer | None:
        """The business handler, its answer recorded and kept whether or not the caller is
        still there to read it (a caller that gave up still caused the effect)."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send_and_record(message: Message) -> None:
            nonlocal status, headers
            # Record before the first byte leaves, so a client that reads /_sim/calls right
            # after its reply always finds its call there.
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                record(status)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, send_and_record)
        return Answer(status=status, headers=headers, body=b"".join(chunks)) if status else None


def _header(scope: Scope, name: bytes) -> str | None:
    for header, value in scope.get("headers", []):
        if header.lower() == name:
            decoded: str = value.decode("latin-1").strip()
            return decoded or None
    return None


async def _send_answer(answer: Answer, send: Send) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


# --- the app --------------------------------------------------------------------------


def create_sim_app(name: str, title: str, description: str = "") -> tuple[FastAPI, SimState]:
    """A FastAPI app with the control endpoints, error shapes and middleware installed.

    The service module adds its business routes to the returned app.
    """
    state = SimState(name)
    app = FastAPI(title=title, description=description, version="sim")
    app.add_middleware(SimMiddleware, state=state)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, error_code(exc.status_code), detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message = describe_validation_errors(exc.errors())
        return error_response(422, "invalid_request", message)

    @app.exception_handler(ValidationError)
    async def _model_error(_: Request, exc: ValidationError) -> JSONResponse:
        # A reply model that fails to build is a simulator bug, not the caller's.
        return error_response(500, "internal", describe_validation_errors(exc.errors()))

    @app.get(f"{CONTROL_PREFIX}/health", tags=["_sim"])
    async def health() -> HealthReply:
        return HealthReply(service=name, ok=True)

    @app.get(f"{CONTROL_PREFIX}/calls", tags=["_sim"])
    async def calls(path_prefix: str = "") -> list[CallRecord]:
        found = [c for c in state.calls if c.path.startswith(path_prefix)]
        return sorted(found, key=lambda c: c.seq)

    @app.delete(f"{CONTROL_PREFIX}/calls", tags=["_sim"])
    async def clear_calls() -> StatsReply:
        # Also resets the counters, so a benchmark can measure one surge at a time.
        state.clear()
        return state.stats()

    @app.post(f"{CONTROL_PREFIX}/faults", tags=["_sim"])
    async def faults(body: FaultsRequest) -> FaultsReply:
        state.fail_next = body.fail_next
        state.fail_status = body.status
        if body.latency_ms is not None:
            state.latency_ms = body.latency_ms
        if body.failure_rate is not None:
            state.failure_rate = body.failure_rate
        return state.faults()

    @app.get(f"{CONTROL_PREFIX}/faults", tags=["_sim"])
    async def current_faults() -> FaultsReply:
        return state.faults()

    @app.get(f"{CONTROL_PREFIX}/stats", tags=["_sim"])
    async def stats() -> StatsReply:
        return state.stats()

    @app.get(f"{CONTROL_PREFIX}/effects", tags=["_sim"])
    async def effects(kind: str | None = None, key: str | None = None) -> list[EffectCount]:
        """What this registry did, per business key; a count above one is a duplicate."""
        return state.effect_counts(kind, key)

    return app, state
