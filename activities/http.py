"""HTTP to the registries, with faults split into transient and permanent.

Transient (timeouts, connection errors, 5xx, 429): raised as retryable errors, so Temporal
retries with backoff until the registry is back. Permanent (other 4xx): the registry refused
the request itself; retrying cannot help, so the workflow gets a non-retryable error and
moves the dossier to a clear state.

Every call names its endpoint, which carries how long the registry has to answer: an error
names the registry, the call and that limit. A call with an effect carries an
`Idempotency-Key` derived from what it does for which dossier, never from the attempt: the
registry answers a repeated key with its first answer, so a retry after a lost answer or an
abandoned attempt does not sign, charge or send twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from temporalio.exceptions import ApplicationError

REGISTRY_REJECTED = "RegistryRejected"
REGISTRY_UNAVAILABLE = "RegistryUnavailable"
IDEMPOTENCY_HEADER = "Idempotency-Key"

# Opening a connection: a registry that cannot take one in this time is down, however long
# its answers may take.
CONNECT_SECONDS = 3.0

_TRANSIENT_STATUSES = frozenset({408, 425, 429})


class Endpoint(BaseModel):
    """One call to a registry and how long the registry has to answer it."""

    model_config = ConfigDict(frozen=True)

    service: str = Field(description="how errors name it: population registry")
    method: str
    path: str = Field(description="with {placeholders}: errors name the call, not the citizen")
    answer_seconds: float = Field(gt=0)

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def idempotency_key(*identity: str) -> str:
    """The key of an effect: the same business identity (what, for which dossier), the same
    key, on every attempt and every worker."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(identity)))


def new_http_client(registry_urls: Iterable[str] = ()) -> httpx.AsyncClient:
    """One client for every registry, with a pool of connections per registry: httpx looks
    at each pooled connection on every request, which showed in the workers' profiles of a
    surge when all registries shared one pool. Each call sets its own timeout."""
    timeout = httpx.Timeout(10.0, connect=CONNECT_SECONDS)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=8)
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {
        _origin(url): httpx.AsyncHTTPTransport(limits=limits) for url in registry_urls
    }
    return httpx.AsyncClient(timeout=timeout, limits=limits, mounts=mounts)


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]


def _transport_fault(endpoint: Endpoint, err: httpx.TransportError) -> str:
    if isinstance(err, httpx.ConnectTimeout):
        return f"{endpoint}: no connection within {CONNECT_SECONDS:g} s"
    if isinstance(err, httpx.PoolTimeout):
        return f"{endpoint}: no free connection within {endpoint.answer_seconds:g} s"
    if isinstance(err, httpx.TimeoutException):
        return f"{endpoint}: no answer within {endpoint.answer_seconds:g} s"
    return (
        f"{endpoint.service} unreachable: {endpoint.method} {endpoint.path}: "
        f"{type(err).__name__}: {err or 'no detail'}"
    )


async def call(
    http: httpx.AsyncClient,
    base_url: str,
    endpoint: Endpoint,
    *,
    path_params: dict[str, str] | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> httpx.Response:
    url = base_url + endpoint.path.format(**(path_params or {}))
    sent = dict(headers or {})
    if idempotency_key is not None:
        sent[IDEMPOTENCY_HEADER] = idempotency_key
    try:
        response = await http.request(
            endpoint.method,
            url,
            json=json,
            headers=sent,
            timeout=httpx.Timeout(endpoint.answer_seconds, connect=CONNECT_SECONDS),
        )
    except httpx.TransportError as err:
        # The message names the fault; the exception chain would only add tracebacks, and a
        # retried activity's last failure is capped at 4 KiB by the server (over it, the
        # message operators need is dropped).
        raise ApplicationError(_transport_fault(endpoint, err), type=REGISTRY_UNAVAILABLE) from None
    if response.status_code >= 500 or response.status_code in _TRANSIENT_STATUSES:
        raise ApplicationError(
            f"{endpoint} answered {response.status_code}: {_message(response)}",
            type=REGISTRY_UNAVAILABLE,
        )
    if response.status_code >= 400:
        raise ApplicationError(
            f"{endpoint.service} refused {endpoint.method} {endpoint.path}: "
            f"{response.status_code} {_message(response)}",
            response.status_code,
            type=REGISTRY_REJECTED,
            non_retryable=True,
        )
    return response
