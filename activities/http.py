"""HTTP to the registries, with faults split into transient and permanent.

Transient (timeouts, connection errors, 5xx, 429): raised as retryable errors, so Temporal
retries with backoff until the registry is back. Permanent (other 4xx): the registry refused
the request itself; retrying cannot help, so the workflow gets a non-retryable error and
moves the dossier to a clear state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

REGISTRY_REJECTED = "RegistryRejected"
REGISTRY_UNAVAILABLE = "RegistryUnavailable"

_TRANSIENT_STATUSES = frozenset({408, 425, 429})


def new_http_client(registry_urls: Iterable[str] = ()) -> httpx.AsyncClient:
    """One client for every registry, with a pool of connections per registry: httpx looks
    at each pooled connection on every request, which showed in the workers' profiles of a
    surge when all registries shared one pool."""
    timeout = httpx.Timeout(10.0, connect=3.0)
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


async def call(
    http: httpx.AsyncClient,
    service: str,
    method: str,
    url: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    try:
        response = await http.request(method, url, json=json, headers=headers)
    except httpx.TransportError as err:
        # The message names the fault; the exception chain would only add tracebacks, and a
        # retried activity's last failure is capped at 4 KiB by the server (over it, the
        # message operators need is dropped).
        raise ApplicationError(
            f"{service} unreachable: {type(err).__name__}: {err}", type=REGISTRY_UNAVAILABLE
        ) from None
    if response.status_code >= 500 or response.status_code in _TRANSIENT_STATUSES:
        raise ApplicationError(
            f"{service} answered {response.status_code}: {_message(response)}",
            type=REGISTRY_UNAVAILABLE,
        )
    if response.status_code >= 400:
        raise ApplicationError(
            f"{service} refused {method} {httpx.URL(url).path}: "
            f"{response.status_code} {_message(response)}",
            response.status_code,
            type=REGISTRY_REJECTED,
            non_retryable=True,
        )
    return response
