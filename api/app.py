"""The HTTP API the counter and portal software call: FastAPI over services.dossiers.

`create_app(client, settings)` for a caller that holds a Temporal client (the tests, an
embedding process); `create_standalone_app()` for `python -m api`, which migrates the
database and connects to Temporal itself when it starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from temporalio.client import Client

from api.auth import Gatekeeper
from api.deps import ApiContext
from api.problems import PROBLEM_MEDIA_TYPE, install_handlers
from api.routes import actions, dossiers, health, inbox, webhooks
from bootstrap import connect
from config import Settings, load_settings
from console import web as console_web
from domain.catalogue import Catalogue, default_catalogue
from store.db import dispose_all
from store.startup import prepare_database

VERSION = "1"

DESCRIPTION = """\
Files administrative dossiers, reads them and takes their human steps, for the one-stop-shop
counter and portal software of Hanoi's wards and city departments.

Every request under `/v1` carries `Authorization: Bearer <key>`; a key acts for its units and
roles only. Every error is `application/problem+json` with `errors: [{field, rule}]`.
"""


def create_app(
    client: Client | None,
    settings: Settings,
    *,
    catalogue: Catalogue | None = None,
    body_limit: int | None = None,
    lifespan: Any = None,
) -> FastAPI:
    app = FastAPI(
        title="Hanoi dossier engine",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        # The interactive docs stay; the document itself is at /openapi.json.
        redoc_url=None,
        # Operation ids are the endpoints' names (submit_dossier, act_approve, ...).
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.context = ApiContext(
        settings=settings, catalogue=catalogue or default_catalogue(), client=client
    )
    install_handlers(app)
    app.add_middleware(
        Gatekeeper,
        database_url=settings.database_url,
        max_body_bytes=body_limit if body_limit is not None else settings.api_max_body_bytes,
    )
    for module in (health, dossiers, actions, inbox, webhooks):
        app.include_router(module.router)
    # The web console, on the same app: one process and one port serve both (console.web).
    console_web.install(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def create_standalone_app(settings: Settings | None = None) -> FastAPI:
    """The app of `python -m api`: migrates and connects to Temporal as it starts."""
    config = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_database(config.database_url)
        context: ApiContext = app.state.context
        context.client = await connect(config)
        try:
            yield
        finally:
            await dispose_all()

    return create_app(None, config, lifespan=lifespan)


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    # Error answers are problem documents: say so, so clients and schema checks expect it.
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
