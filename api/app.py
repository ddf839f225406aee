"""The HTTP API the counter and portal software call: FastAPI over services.dossiers.

`create_app(client, settings)` for a caller that holds a Temporal client (the tests, an
embedding process); `create_standalone_app()` for `python -m api`, which migrates the
database and connects to Temporal itself when it starts.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Header
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client

from api.auth import Gatekeeper
from api.contract import ContractRoute
from api.deps import ApiContext
from api.problems import PROBLEM_MEDIA_TYPE, install_handlers
from api.routes import actions, dossiers, health, inbox, webhooks
from bootstrap import connect
from config import Settings, load_settings
from console import web as console_web
from domain.catalogue import Catalogue, default_catalogue
from schemas.exchanges import WebhookEvent
from store.db import dispose_all
from store.startup import prepare_database

VERSION = "1"

DESCRIPTION = """\
Files administrative dossiers, reads them and takes their human steps, for the one-stop-shop
counter and portal software of Hanoi's wards and city departments.

Every request under `/v1` carries `Authorization: Bearer <key>`; a key acts for its units and
roles only. Every error is `application/problem+json` with `errors: [{field, rule}]`.

An unknown path is a 404 naming the `path`; a method a path does not take, a 405 naming the
`method`, with the `Allow` header.

Every instant in an answer is in UTC (`...Z` or `+00:00`); Hanoi time is UTC+07:00 all year.
Bodies are `application/json`, nested at most 32 levels deep.
"""
# The docs page's script and style, served from the installed package: /docs works offline.
DOCS_ASSETS = importlib.resources.files("fastapi_offline") / "static"
DOCS_STATIC = "/docs/static"


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
        docs_url=None,
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
    app.router.route_class = ContractRoute
    _describe_webhooks(app)
    _serve_docs(app)
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
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        webhooks=app.webhooks.routes,
    )
    # Error answers are problem documents: say so, so clients and schema checks expect it.
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[0] in "45" and "application/json" in content:
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    for path_item in schema.get("webhooks", {}).values():
        for operation in path_item.values():
            operation.get("responses", {}).pop("422", None)  # the receiver's, not ours
    _link(schema)
    components = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema


# --- links between operations ----------------------------------------------------------------
SUBMIT = "submit_dossier"
DOSSIER_PATH = "/v1/dossiers/{code}"


def _link(schema: dict[str, Any]) -> None:
    """OpenAPI links, so a client (and the stateful fuzzer) goes from a filed dossier to every
    operation on it, and from a step back to the dossier: whatever operation is added under
    /v1/dossiers/{code} is linked too."""
    on_dossier = {
        operation["operationId"]: method
        for path, item in schema.get("paths", {}).items()
        if path.startswith(DOSSIER_PATH)
        for method, operation in item.items()
    }
    reads = {op: method for op, method in on_dossier.items() if method == "get"}
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if operation.get("operationId") == SUBMIT:
                targets, code = on_dossier, "$response.body#/code"
            elif path.startswith(DOSSIER_PATH) and method != "get":
                targets, code = reads, "$request.path.code"
            else:
                continue
            for status, response in operation.get("responses", {}).items():
                if status.startswith("2"):
                    response["links"] = {
                        target: {"operationId": target, "parameters": {"code": code}}
                        for target in sorted(targets)
                    }


# --- the webhooks integrators receive --------------------------------------------------------
def _describe_webhooks(app: FastAPI) -> None:
    @app.webhooks.post(
        "dossier-status",
        operation_id="dossier_status",
        summary="A dossier of a subscribed unit changed status",
        description="POSTed to each subscription's URL after every status change; retried until "
        "the receiver answers 2xx. Verify the signature on the exact bytes received.",
        responses={200: {"description": "Received (any 2xx)"}},
    )
    def dossier_status(
        event: WebhookEvent,
        event_id: Annotated[
            str,
            Header(
                alias="X-Webhook-Event-Id",
                description="The event's id, the same on every redelivery: drop duplicates by it",
            ),
        ],
        signature: Annotated[
            str,
            Header(
                alias="X-Webhook-Signature",
                pattern=r"^sha256=[0-9a-f]{64}$",
                description="`sha256=` and the hex HMAC-SHA256 of the body, keyed with the "
                "subscription's secret",
            ),
        ],
    ) -> None:
        """Documentation only: the delivery is activities.webhooks."""


# --- interactive documentation, offline ---------------------------------------------------------
def _serve_docs(app: FastAPI) -> None:
    app.mount(DOCS_STATIC, StaticFiles(directory=str(DOCS_ASSETS)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title}: API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon.png",
            # No call to the public validator badge either.
            swagger_ui_parameters={"validatorUrl": None},
        )
