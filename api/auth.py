"""API keys at the door, and the body size limit.

Both run as one ASGI middleware, before FastAPI reads or parses anything: a caller without a
valid key learns nothing about the body rules, and an oversized body is refused before it is
held in memory whole or parsed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import FieldError, Problem, ProblemError, field_problem
from store.api_keys import ApiKey, authenticate
from store.db import engine_for

PROTECTED_PREFIX = "/v1/"
# How much of a refused request's body is read and dropped so the client gets the answer.
DISCARD_BYTES = 8 * 1024 * 1024
DISCARD_SECONDS = 5.0
STATE_KEY = "api_key"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dossiers"'}

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="`Authorization: Bearer dk_<prefix>_<secret>`, from `python -m ops keys issue`",
)


def _unauthorized(rule: str) -> ProblemError:
    return ProblemError(
        401,
        "unauthorized",
        f"Authorization: {rule}",
        [FieldError(field="Authorization", rule=rule)],
        headers=_CHALLENGE,
    )


def _too_large(limit: int) -> ProblemError:
    rule = f"at most {limit} bytes"
    return ProblemError(413, "too-large", f"body: {rule}", [FieldError(field="body", rule=rule)])


class Gatekeeper:
    """Refuses oversized bodies (declared or streamed) and, under /v1/, requests without an
    active API key; puts the key in the request state for the routes."""

    def __init__(self, app: ASGIApp, *, database_url: str, max_body_bytes: int) -> None:
        self.app = app
        self.database_url = database_url
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _Incoming(receive)
        try:
            headers = Headers(scope=scope)
            self._check_declared_length(headers)
            if str(scope["path"]).startswith(PROTECTED_PREFIX):
                scope.setdefault("state", {})[STATE_KEY] = await self._authenticate(headers)
            body = await self._read_body(incoming)
        except ProblemError as err:
            # Closing a connection with unread data resets it, and the client would never
            # see the answer: read and drop the rest of the body first (bounded).
            await incoming.discard_rest()
            await _send_problem(send, err.problem, err.headers)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # the disconnect, when the client goes away

        await self.app(scope, replay, send)

    def _check_declared_length(self, headers: Headers) -> None:
        declared = headers.get("content-length")
        if declared is None:
            return
        if not declared.isdigit():
            raise field_problem(400, "bad-request", "Content-Length", "must be a number of bytes")
        if int(declared) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)

    async def _read_body(self, receive: _Incoming) -> bytes:
        # A chunked body declares no length: count what arrives and stop at the limit.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _authenticate(self, headers: Headers) -> ApiKey:
        authorization = headers.get("authorization")
        if not authorization:
            raise _unauthorized("an API key is required: Authorization: Bearer <key>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must read: Bearer <key>")
        try:
            async with engine_for(self.database_url).connect() as conn:
                key = await authenticate(conn, token.strip())
        except SQLAlchemyError as err:
            raise ProblemError(503, "unavailable", "the key store does not answer") from err
        if key is None:
            raise _unauthorized("the API key is unknown or revoked")
        return key


class _Incoming:
    """The request's receive channel, knowing whether the body has been read to its end."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.finished = False

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.finished = True
        return message

    async def discard_rest(self) -> None:
        dropped = 0
        try:
            async with asyncio.timeout(DISCARD_SECONDS):
                while not self.finished and dropped <= DISCARD_BYTES:
                    dropped += len((await self()).get("body", b""))
        except TimeoutError:
            return


async def _send_problem(send: Send, problem: Problem, headers: dict[str, str] | None) -> None:
    body = problem.model_dump_json().encode()
    raw = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    # The rest of an oversized body may still be on its way: do not reuse the connection.
    if problem.status == 413:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": problem.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def api_key(
    request: Request,
    # Declares the scheme in the OpenAPI document; the Gatekeeper has checked the key.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> ApiKey:
    key = getattr(request.state, STATE_KEY, None)
    if not isinstance(key, ApiKey):
        raise _unauthorized("an API key is required: Authorization: Bearer <key>")
    return key


Key = Annotated[ApiKey, Security(api_key)]


def require_unit(key: ApiKey, unit: str, field: str) -> None:
    if unit not in key.units:
        raise field_problem(
            403, "forbidden", field, f"unit {unit} is not among the units of {key.system}'s key"
        )


def require_role(key: ApiKey, role: str, field: str) -> None:
    if role not in key.roles:
        raise field_problem(
            403, "forbidden", field, f"role {role} is not among the roles of {key.system}'s key"
        )


def covers(key: ApiKey, units: Iterable[str]) -> bool:
    """Whether the key acts for one of these units (a dossier's receiving or competent)."""
    return any(unit in key.units for unit in units)
