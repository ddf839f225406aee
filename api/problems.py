"""Every error answer is RFC 9457 `application/problem+json`, naming the field and the rule, so
the counter software can show the officer what to fix without parsing prose.

What each failure answers is decided here, once (`install_handlers`): the routes raise, or let
the services, the store and Temporal raise, and never translate a failure themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from services.dossiers import ActionRefused, FilingError, IdempotencyConflict
from store.views import BadCursor

PROBLEM_MEDIA_TYPE = "application/problem+json"
JSON_MEDIA_TYPE = "application/json"
TYPE_BASE = "/problems/"
log = structlog.stdlib.get_logger("api")


class FieldError(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path of the field (`applicant.citizen_id`), or a header")
    rule: str = Field(description="The rule the value breaks")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(description="A URI reference naming the kind of problem")
    title: str
    status: int
    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class ProblemError(Exception):
    """Raised anywhere in a request to answer with a problem."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.problem = Problem(
            type=TYPE_BASE + kind,
            title=HTTPStatus(status).phrase,
            status=status,
            detail=detail,
            errors=list(errors),
        )
        self.headers = headers


def field_problem(status: int, kind: str, field: str, rule: str) -> ProblemError:
    return ProblemError(status, kind, f"{field}: {rule}", [FieldError(field=field, rule=rule)])


def not_found(code: str) -> ProblemError:
    # The same answer for an unknown code and for another unit's dossier: a key learns
    # nothing about dossiers outside its units.
    return field_problem(404, "not-found", "code", f"no dossier {code}")


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json"),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _field_of(error: dict[str, Any]) -> str:
    loc: Sequence[int | str] = error.get("loc", ())
    if not loc or error.get("type") == "json_invalid":  # a JSON error's loc is its offset
        return "body"
    where, *rest = loc
    if where == "header" and rest:
        # Headers are case-insensitive; name them as the documentation spells them.
        return "-".join(part.capitalize() for part in str(rest[0]).split("-"))
    if where in ("body", "query", "path", "cookie"):
        return ".".join(str(part) for part in rest) or str(where)
    return ".".join(str(part) for part in loc)


def _rule_of(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    # A field_validator's ValueError reads "Value error, <rule>": keep the rule.
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error")
        return f"not valid JSON ({detail})" if detail else "not valid JSON"
    return message


def validation_problem(errors: Iterable[dict[str, Any]]) -> Problem:
    fields = [FieldError(field=_field_of(e), rule=_rule_of(e)) for e in errors]
    # A bad header (Idempotency-Key) is a malformed request, not unprocessable content.
    bad_header = any(e.get("loc", ("",))[0] == "header" for e in errors)
    status = 400 if bad_header else 422
    shown = "; ".join(f"{f.field}: {f.rule}" for f in fields[:5])
    more = f" (and {len(fields) - 5} more)" if len(fields) > 5 else ""
    return Problem(
        type=TYPE_BASE + ("bad-request" if bad_header else "invalid-request"),
        title=HTTPStatus(status).phrase,
        status=status,
        detail=f"{shown}{more}" or "the request does not match the schema",
        errors=fields,
    )


async def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_problem(exc.errors()))


_UNREADABLE_BODY = "There was an error parsing the body"
_KINDS = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized", 413: "too-large"}


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    errors: list[FieldError] = []
    kind = _KINDS.get(status, "http-error")
    if status == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        # No route matched: the path is what the client got wrong.
        detail = f"path: no resource at {request.url.path}"
        errors.append(FieldError(field="path", rule=f"no resource at {request.url.path}"))
    headers = dict(exc.headers) if exc.headers else {}
    if status == 405:
        # Starlette's Allow names the methods of the first route of the path only.
        allowed = sorted(
            {
                method
                for route in operations(request.app.routes)
                if route.path_regex.match(request.url.path)
                for method in route.methods or ()
            }
        )
        headers["Allow"] = ", ".join(allowed)
        rule = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        detail = f"method: {rule}"
        errors.append(FieldError(field="method", rule=rule))
    if status == 400 and detail == _UNREADABLE_BODY:
        # FastAPI's answer to a body it cannot even decode (bytes that are not UTF-8).
        kind, detail = "bad-request", "body: not valid JSON (cannot be decoded)"
        errors.append(FieldError(field="body", rule="not valid JSON (cannot be decoded)"))
    problem = Problem(
        type=TYPE_BASE + kind,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=errors,
    )
    return problem_response(problem, headers or None)


def operations(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every operation of the app, those of included routers too (FastAPI keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from operations(included.routes)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Never the exception text: it may carry a query or a registry's answer.
    log.exception("api.unexpected_error", path=request.url.path, error=type(exc).__name__)
    problem = Problem(
        type=TYPE_BASE + "internal-error",
        title=HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
        status=500,
        detail="the server could not answer; the error is logged",
    )
    return problem_response(problem)


# --- what each failure answers ---------------------------------------------------------------
E = TypeVar("E", bound=Exception)
# The failure, and the dossier code of the request's path when it names one.
Answer = Callable[[E, str | None], ProblemError]


def _temporal_failure(err: RPCError, code: str | None) -> ProblemError:
    if err.status is RPCStatusCode.NOT_FOUND and code is not None:
        return not_found(code)
    return ProblemError(503, "unavailable", f"Temporal did not answer ({err.status.name}); retry")


def _unreadable(code: str | None) -> ProblemError:
    # A query waits for a worker: a dossier whose workers are all down, or whose workflow
    # task fails, cannot be read until they are back.
    what = f"dossier {code}" if code is not None else "the dossier"
    return ProblemError(503, "unavailable", f"{what} cannot be read right now; try again")


def install_handlers(app: FastAPI) -> None:
    """Every mapping of a failure to its problem, registered on the app."""

    def answer(kind: type[E], problem: Answer[E]) -> None:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            assert isinstance(exc, kind)
            answered = problem(exc, request.path_params.get("code"))
            return problem_response(answered.problem, answered.headers)

        app.add_exception_handler(kind, handler)

    answer(ProblemError, lambda err, _code: err)
    answer(
        FilingError, lambda err, _code: field_problem(422, "filing-refused", err.field, err.rule)
    )
    answer(
        IdempotencyConflict,
        lambda err, _code: ProblemError(
            409,
            "idempotency-conflict",
            str(err),
            [FieldError(field="Idempotency-Key", rule="already used with another body")],
        ),
    )
    answer(
        ActionRefused,
        lambda err, _code: ProblemError(
            409, "action-refused", str(err), [FieldError(field="action", rule=str(err))]
        ),
    )
    answer(BadCursor, lambda err, _code: field_problem(422, "invalid-request", "cursor", str(err)))
    answer(RPCError, _temporal_failure)
    answer(WorkflowQueryFailedError, lambda _err, code: _unreadable(code))
    answer(TimeoutError, lambda _err, code: _unreadable(code))
    answer(
        SQLAlchemyError,
        lambda _err, _code: ProblemError(503, "unavailable", "the database did not answer; retry"),
    )
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


_DESCRIPTIONS = {
    400: "Malformed request: a header is missing or malformed, or the body's JSON nests too deep",
    401: "No API key, or an unknown or revoked one",
    403: "The key's units or roles do not cover this request",
    404: "No such dossier, or one outside the key's units (the same answer)",
    409: "Conflict with the dossier's state or an earlier request",
    413: "The body is over the size limit",
    415: "The body is not application/json",
    422: "The request breaks a rule: each field and rule in `errors`",
    503: "A dependency (Temporal or the database) does not answer",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these problem statuses (the media type is set to
    application/problem+json when the document is built, see api.app)."""
    return {status: {"model": Problem, "description": _DESCRIPTIONS[status]} for status in statuses}
