"""What every route needs: the Temporal client, settings, the catalogue, and the dossier the
key may see. What a failure answers is api.problems' business."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from temporalio.client import Client

from api.auth import covers
from api.problems import ProblemError, not_found
from config import Settings
from domain.catalogue import Catalogue
from schemas.dossier import DossierView
from schemas.formats import DOSSIER_CODE_MAX_LENGTH, DOSSIER_CODE_PATTERN
from services import dossiers
from store.api_keys import ApiKey

T = TypeVar("T")

# A query waits for a worker to answer; a dossier whose workers are all down must not hold
# the counter's request forever.
QUERY_TIMEOUT_SECONDS = 10.0
# The form of domain.codes.dossier_code: anything else cannot be a dossier (and never reaches
# Temporal as a workflow id).
DossierCode = Annotated[
    str,
    Path(
        pattern=DOSSIER_CODE_PATTERN,
        max_length=DOSSIER_CODE_MAX_LENGTH,
        description="The dossier code on the receipt, e.g. `000.01.01.H26-261127-0001`",
    ),
]


@dataclass
class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    _locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass
class ApiContext:
    settings: Settings
    catalogue: Catalogue
    client: Client | None = None  # None until the lifespan connects (python -m api)
    submissions: KeyedLocks = field(default_factory=KeyedLocks)

    @property
    def temporal(self) -> Client:
        if self.client is None:
            raise ProblemError(503, "unavailable", "not connected to Temporal yet")
        return self.client


def context(request: Request) -> ApiContext:
    ctx = request.app.state.context
    assert isinstance(ctx, ApiContext)
    return ctx


Context = Annotated[ApiContext, Depends(context)]


async def ask(call: Awaitable[T]) -> T:
    """A read of a dossier (the read model, or its workflow before its first step is written),
    given up after QUERY_TIMEOUT_SECONDS."""
    return await asyncio.wait_for(call, QUERY_TIMEOUT_SECONDS)


async def visible_dossier(ctx: ApiContext, key: ApiKey, code: str) -> DossierView:
    """The dossier's current view, if the key acts for its receiving or competent unit."""
    view = await ask(dossiers.status(ctx.temporal, ctx.settings.database_url, code))
    if not covers(key, (view.receiving_unit, view.competent_unit)):
        raise not_found(code)
    return view
