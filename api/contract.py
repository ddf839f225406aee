"""The contract every operation keeps, whoever writes it: the route class all the API's routers
use (`APIRouter(route_class=ContractRoute)`).

- Its documented answers list every problem status it can give, from its shape: a key under
  /v1 (401, 403, 503), a path parameter (404, 422), query or header parameters (422, 400),
  a body (400, 413, 415, 422). The route adds its own (409 and the like).
- Every instant it answers is in UTC (`...Z`): the values its response schema says are
  date-times are rewritten so, whatever offset the workflow or the store kept (the filing keeps
  Hanoi's +07:00, Temporal and the read model UTC).
- A body-carrying operation takes JSON only (415 otherwise, naming the type it expects), and
  JSON nested deeper than MAX_JSON_DEPTH is refused (400) before anything parses it: a deeply
  nested document costs the parser's recursion, whatever the schema says afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from fastapi.utils import create_model_field
from pydantic import TypeAdapter

from api.auth import PROTECTED_PREFIX
from api.problems import JSON_MEDIA_TYPE, Problem, field_problem, problem_responses

# No dossier, step or subscription nests deeper than about 5; 32 leaves room and stays cheap.
MAX_JSON_DEPTH = 32

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(body: bytes) -> int:
    """How deep the JSON in `body` nests, counted without parsing it (brackets inside strings
    do not count). Malformed JSON gives some number; the parser refuses it afterwards."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", body)):
        if bracket in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == JSON_MEDIA_TYPE or (kind.startswith("application/") and kind.endswith("+json"))


def expected_statuses(route: APIRoute) -> set[int]:
    """The problem statuses an operation of this shape can answer."""
    statuses: set[int] = set()
    if route.path.startswith(PROTECTED_PREFIX):
        statuses |= {401, 403, 503}
    dependant = route.dependant
    if dependant.path_params:
        statuses |= {404, 422}
    if dependant.query_params:
        statuses.add(422)
    if dependant.header_params:
        statuses |= {400, 422}
    if route.body_field is not None:
        statuses |= {400, 413, 415, 422}
    return statuses


JsonSchema = dict[str, Any]


def in_utc(value: Any, schema: JsonSchema, defs: dict[str, JsonSchema]) -> Any:
    """`value` with every date-time the schema names rewritten as a UTC instant."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return in_utc(value, defs[ref.rsplit("/", 1)[-1]], defs)
    for alternative in (
        *schema.get("anyOf", ()),
        *schema.get("oneOf", ()),
        *schema.get("allOf", ()),
    ):
        value = in_utc(value, alternative, defs)
    if schema.get("format") == "date-time" and isinstance(value, str):
        instant = datetime.fromisoformat(value)
        if instant.utcoffset() is not None:
            return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        return {
            k: in_utc(v, properties[k], defs) if k in properties else v for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [in_utc(item, schema["items"], defs) for item in value]
    return value


def _has_instants(schema: JsonSchema) -> bool:
    return '"date-time"' in json.dumps(schema)


def _in_utc(response: Response, schema: JsonSchema) -> Response:
    if not 200 <= response.status_code < 300 or not is_json(response.media_type):
        return response
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        return response  # streamed: not an answer the contract rewrites
    answer = in_utc(json.loads(body), schema, schema.get("$defs", {}))
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(
        json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode(),
        status_code=response.status_code,
        headers=headers,
        media_type=response.media_type,
    )


class ContractRoute(APIRoute):
    """An APIRoute that documents its problem answers and checks its body's type and depth."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        missing = expected_statuses(self) - {int(s) for s in self.responses}
        for status, response in problem_responses(*sorted(missing)).items():
            self.responses[status] = response
            # What FastAPI derives from `responses=` when it builds the route.
            self.response_fields[status] = create_model_field(
                name=f"Response_{status}_{self.unique_id}", type_=Problem, mode="serialization"
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        # Called from APIRoute.__init__, once the response model and the body are known.
        handler = super().get_route_handler()
        answer_schema: JsonSchema | None = None
        if self.response_model is not None:
            schema = TypeAdapter(self.response_model).json_schema(mode="serialization")
            answer_schema = schema if _has_instants(schema) else None
        if self.body_field is None and answer_schema is None:
            return handler

        async def checked(request: Request) -> Response:
            if self.body_field is not None:
                await self._check_body(request)
            response = await handler(request)
            return _in_utc(response, answer_schema) if answer_schema is not None else response

        return checked

    async def _check_body(self, request: Request) -> None:
        body = await request.body()  # kept by the request: FastAPI reads it again
        if body:
            if not is_json(request.headers.get("content-type")):
                raise field_problem(
                    415,
                    "unsupported-media-type",
                    "Content-Type",
                    f"must be {JSON_MEDIA_TYPE}",
                )
            if json_depth(body) > MAX_JSON_DEPTH:
                raise field_problem(
                    400,
                    "bad-request",
                    "body",
                    f"JSON nested deeper than {MAX_JSON_DEPTH} levels",
                )
