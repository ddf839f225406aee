"""The codec server: lets the Temporal Web UI (and CLI) show decrypted payloads.

Protocol (Temporal's remote codec): `POST /decode` and `POST /encode`, also under a namespace
segment (`/{namespace}/decode`, for the CLI's `--codec-endpoint http://host:port/{namespace}`),
with the proto3-JSON body `{"payloads": [{"metadata": {"encoding": "<base64>"}, "data":
"<base64>"}]}` answered in the same shape. The UI calls it from the browser, with the
headers Content-Type, X-Namespace and, when its auth is set up, Authorization.

Access (both endpoints: decoding reveals personal data, and encoding under our key would let
anyone forge payloads the workers trust):
- `CODEC_TOKENS` set (comma-separated): every request needs `Authorization: Bearer <token>`;
  none is 401, a wrong one 403.
- `CODEC_TOKENS` unset: only clients on the loopback interface (a browser or CLI on this
  machine) are served, everyone else gets 403. Do not put a proxy on the same host in front
  of it in this mode: every request would come from localhost.
- A request whose Origin header is not an allowed origin is refused (403) in both modes, so a
  web page the user happens to open cannot use a localhost codec server (DNS rebinding).
CORS: `CODEC_CORS_ORIGINS` (default the dev UI, http://localhost:8233,http://127.0.0.1:8233),
with credentials, headers Authorization, Content-Type, X-Namespace; preflights answered.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from codec.payload import EncryptionCodec, KeyRing, PayloadDecodeError

# The variables named in refusals, so an operator knows what to set (read in config.py).
TOKENS_ENV = "CODEC_TOKENS"
ORIGINS_ENV = "CODEC_CORS_ORIGINS"
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Namespace"]


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(keys: KeyRing, tokens: Sequence[str], origins: Sequence[str]) -> FastAPI:
    # Shows what it is given; only the workers refuse what came unencrypted.
    codec = EncryptionCodec(keys, refuse_plaintext=False)
    accepted = [t.encode() for t in tokens if t]
    allowed_origins = frozenset(o.rstrip("/") for o in origins)
    # No generated docs: nothing here is for browsing.
    app = FastAPI(title="payload codec server", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(allowed_origins),
        allow_credentials=True,
        allow_methods=["POST"],
        allow_headers=ALLOWED_HEADERS,
        max_age=600,
    )

    def authorize(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") not in allowed_origins:
            raise HTTPException(403, f"origin {origin} is not allowed ({ORIGINS_ENV})")
        if not accepted:
            client = request.client.host if request.client else None
            if not _is_loopback(client):
                raise HTTPException(
                    403, f"no {TOKENS_ENV} configured: only localhost clients are served"
                )
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401, "Authorization: Bearer <token> required", {"WWW-Authenticate": "Bearer"}
            )
        presented = token.strip().encode()
        # Compare against every token in constant time: no early exit that leaks which matched.
        if not any([hmac.compare_digest(presented, s) for s in accepted]):
            raise HTTPException(403, "token not accepted")

    async def read_payloads(request: Request) -> list[Payload]:
        try:
            body: Any = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            message = json_format.ParseDict(body, Payloads())
        except (ValueError, json_format.ParseError) as err:
            raise HTTPException(400, f"expected {{'payloads': [...]}}: {err}") from None
        return list(message.payloads)

    def answer(payloads: Sequence[Payload]) -> JSONResponse:
        # Built by hand so an empty list still answers {"payloads": []}.
        return JSONResponse(
            {
                "payloads": [
                    json_format.MessageToDict(p, preserving_proto_field_name=True) for p in payloads
                ]
            }
        )

    async def decode(request: Request) -> JSONResponse:
        authorize(request)
        payloads = await read_payloads(request)
        try:
            return answer(await codec.decode(payloads))
        except PayloadDecodeError as err:
            raise HTTPException(400, str(err)) from None

    async def encode(request: Request) -> JSONResponse:
        authorize(request)
        return answer(await codec.encode(await read_payloads(request)))

    async def healthz() -> JSONResponse:
        """The process is up (says nothing of the keys)."""
        return JSONResponse({"status": "ok"})

    app.add_api_route("/healthz", healthz, methods=["GET"])
    for prefix in ("", "/{namespace}"):
        app.add_api_route(f"{prefix}/decode", decode, methods=["POST"])
        app.add_api_route(f"{prefix}/encode", encode, methods=["POST"])
    return app
