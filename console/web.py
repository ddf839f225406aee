"""The console's pages, mounted on the API's app under /console (`install`).

One process and one port with the API: `make run` and compose already start it, it shares the
Temporal client and the database engine, and the console reads what the API reads. The
Gatekeeper's API keys guard /v1/ only; the console has its own accounts and sessions.

Every page reads the account again (a disabled account is out at its next request), every
form carries the session's CSRF token, every download and operator action, every sign-in and
every refusal is a row of the console's audit record (`console_events`); retry and reset are
the operators' own functions (ops.retry, ops.reset), which also write the dossier's chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from plotly.offline import get_plotlyjs
from starlette.datastructures import FormData
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ApiContext
from bootstrap import namespace_retention
from console import access, charts, story
from console.access import Forbidden
from console.i18n import DEFAULT_LANGUAGE, LANGUAGES, translator
from console.session import (
    COOKIE,
    CSRF_FIELD,
    LANG_COOKIE,
    SESSION_HOURS,
    Session,
    Sessions,
    console_secret,
    csrf_matches,
    new_session,
)
from domain.calendar import HANOI, default_calendar
from domain.catalogue import CatalogueError, default_catalogue
from domain.codes import is_dossier_code
from ops.errors import OperatorError
from ops.export import build_timeline, hanoi_time, render_html, working_time
from ops.reset import reset_to_step
from ops.reset_points import Step
from ops.retry import retry_dossier
from ops.stuck import UNARCHIVED_AFTER_SHARE_OF_RETENTION, Filters, find_stuck
from schemas.citizen_id import citizen_id_problem, masked
from schemas.dossier import DossierView, TimelineEntry
from services import dossiers
from store import archive, kpis, views
from store import console_users as accounts
from store.console_users import ConsoleUser
from store.db import engine_for

PREFIX = "/console"
HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(hanoi_time=hanoi_time, working_time=working_time)
# A dossier's page asks its workflow (open) or the read model (closed): bounded like the API.
READ_TIMEOUT_SECONDS = 15.0
DEFAULT_WINDOW_DAYS = 30
NEAR_DUE = timedelta(hours=24)


class LoginNeeded(Exception):
    pass


class NotFound(Exception):
    pass


class BadInput(Exception):
    """A form or query value that breaks a rule: the message names the field and the rule."""


def install(app: FastAPI) -> None:
    """Mount the console on the API's app."""
    app.include_router(router)

    async def login_needed(request: Request, _exc: Exception) -> Response:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)

    async def forbidden(request: Request, _exc: Exception) -> Response:
        user = getattr(request.state, "console_user", None)
        await _record(request, user, "denied", request.url.path)
        return _page(request, "error.html", {"message_key": "forbidden"}, status=403)

    async def not_found(request: Request, _exc: Exception) -> Response:
        return _page(request, "error.html", {"message_key": "not_found"}, status=404)

    app.add_exception_handler(LoginNeeded, login_needed)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(NotFound, not_found)


router = APIRouter(prefix=PREFIX, include_in_schema=False)


# --- plumbing -------------------------------------------------------------------------------------
def _context(request: Request) -> ApiContext:
    ctx = request.app.state.context
    assert isinstance(ctx, ApiContext)
    return ctx


def _sessions(request: Request) -> Sessions:
    sessions = getattr(request.app.state, "console_sessions", None)
    if sessions is None:
        sessions = Sessions(console_secret(_context(request).settings))
        request.app.state.console_sessions = sessions
    assert isinstance(sessions, Sessions)
    return sessions


def _session(request: Request) -> Session | None:
    return _sessions(request).load(request.cookies.get(COOKIE))


def _language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _database(request: Request) -> str:
    return _context(request).settings.database_url


async def _user(request: Request) -> ConsoleUser:
    """The signed-in account, read again now; else to the sign-in page."""
    session = _session(request)
    if session is None or session.username is None:
        raise LoginNeeded()
    async with engine_for(_database(request)).connect() as conn:
        user = await accounts.get_user(conn, session.username)
    if user is None or not user.active:
        raise LoginNeeded()
    request.state.console_user = user
    return user


async def _record(
    request: Request, user: ConsoleUser | None, action: str, target: str = "", detail: str = ""
) -> None:
    await accounts.record(
        _database(request),
        username=user.username if user else "-",
        client_ip=_ip(request),
        action=action,
        target=target,
        detail=detail,
    )


def _set_session(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        _sessions(request).dump(session),
        max_age=SESSION_HOURS * 3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _page(
    request: Request, template: str, values: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    language = _language(request)
    session = _session(request)
    fresh = session is None
    if session is None:
        session = new_session()
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    context = {
        "t": translator(language),
        "lang": language,
        "user": user,
        "csrf_field": CSRF_FIELD,
        "csrf": session.csrf,
        "prefix": PREFIX,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "access": access,
        "unit_name": unit_name,
        **values,
    }
    response = templates.TemplateResponse(request, template, context, status_code=status)
    if fresh:  # the CSRF token of the sign-in form needs a session to match against
        _set_session(response, request, session)
    return response


async def _form(request: Request) -> FormData:
    """The posted form, refused unless it carries this session's CSRF token."""
    form = await request.form()
    if not csrf_matches(_session(request), form.get(CSRF_FIELD)):
        raise Forbidden()
    return form


def unit_name(code: str) -> str:
    try:
        return default_catalogue().unit(code).name
    except CatalogueError:
        return code


def procedure_name(code: str) -> str:
    try:
        return f"{code} {default_catalogue().procedure(code).name}"
    except CatalogueError:
        return code


@cache
def _units() -> list[tuple[str, str]]:
    return sorted(
        ((u.code, u.name) for u in default_catalogue().units.values()), key=lambda u: u[1]
    )


@cache
def _procedures() -> list[tuple[str, str]]:
    return sorted((p.code, p.name) for p in default_catalogue().procedures.values())


def _day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None


def _hanoi_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=HANOI)


async def _bounded(call: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(call, READ_TIMEOUT_SECONDS)


# --- static ---------------------------------------------------------------------------------------
@router.get("/static/plotly.min.js")
async def plotly_js() -> Response:
    return Response(
        _plotly_js(),
        media_type="application/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@cache
def _plotly_js() -> str:
    return str(get_plotlyjs())


@router.get("/static/console.css")
async def stylesheet() -> Response:
    return Response(
        (HERE / "static" / "console.css").read_text(encoding="utf-8"),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


# --- signing in and out, language -----------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    # Only a page of the console: never an open redirect elsewhere.
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return PREFIX + "/"


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _page(request, "login.html", {"next": _safe_next(request.query_params.get("next"))})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    target = _safe_next(str(form.get("next") or ""))
    if not csrf_matches(_session(request), form.get(CSRF_FIELD)):
        return _page(request, "login.html", {"next": target, "error": "form_expired"}, status=403)
    username = str(form.get("username") or "").strip().lower()
    password = str(form.get("password") or "")
    result = await accounts.login(_database(request), username, password, _ip(request))
    if result.user is None:
        error = "login_throttled" if result.throttled else "login_failed"
        status = 429 if result.throttled else 401
        return _page(request, "login.html", {"next": target, "error": error}, status=status)
    response = RedirectResponse(target, status_code=303)
    # A new session (and CSRF token) at sign-in: a token planted before it is worth nothing.
    _set_session(response, request, new_session(result.user.username))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    user = await _user(request)
    await _form(request)
    await _record(request, user, "logout")
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/lang/{language}")
async def switch_language(request: Request, language: str) -> Response:
    response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    if language in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, language, max_age=365 * 86400, path=PREFIX, samesite="strict"
        )
    return response


@router.get("/")
async def home(request: Request) -> Response:
    user = await _user(request)
    if access.sees_dashboard(user):
        return RedirectResponse(f"{PREFIX}/dashboard", status_code=303)
    return RedirectResponse(f"{PREFIX}/operations", status_code=303)


# --- the city's dashboard -------------------------------------------------------------------------
@router.get("/dashboard")
async def dashboard(request: Request) -> Response:
    user = await _user(request)
    access.require(access.sees_dashboard(user))
    params = request.query_params
    mine = access.own_units(user)
    try:
        to_day = _day(params.get("to"), "to") or datetime.now(HANOI).date() + timedelta(days=1)
        from_day = _day(params.get("from"), "from") or to_day - timedelta(days=DEFAULT_WINDOW_DAYS)
        if from_day >= to_day:
            raise BadInput("from: must be before to")
        tier = params.get("tier") or None
        if tier not in (None, "ward", "city"):
            raise BadInput(f"tier: {tier!r} is not ward or city")
        unit = params.get("unit") or None
        if mine is not None:
            if unit is not None and unit not in mine:
                raise Forbidden()
            unit = mine[0] if mine else "-"
        procedure = params.get("procedure") or None
    except BadInput as err:
        return _page(request, "error.html", {"message": str(err)}, status=422)
    filters = kpis.DashboardFilters(unit=unit, tier=tier, procedure=procedure)
    start, end = _hanoi_midnight(from_day), _hanoi_midnight(to_day)
    period: kpis.Period = "day" if (to_day - from_day).days <= 62 else "month"
    now = datetime.now(UTC)
    t = translator(_language(request))
    async with engine_for(_database(request)).connect() as conn:
        received = await kpis.received_per_day(
            conn, received_from=start, received_to=end, filters=filters
        )
        backlog = await kpis.backlog(conn, now=now, filters=filters)
        trend = await kpis.on_time_breakdown(
            conn, closed_from=start, closed_to=end, period=period, filters=filters
        )
        per_unit = await kpis.on_time_breakdown(
            conn, closed_from=start, closed_to=end, by="competent_unit", filters=filters
        )
        per_procedure = await kpis.on_time_breakdown(
            conn, closed_from=start, closed_to=end, by="procedure_code", filters=filters
        )
        by_unit = await kpis.quality(
            conn, by="competent_unit", received_from=start, received_to=end, filters=filters
        )
        by_procedure = await kpis.quality(
            conn, by="procedure_code", received_from=start, received_to=end, filters=filters
        )
    figures = [
        charts.received(received, t),
        charts.lanes(received, t),
        charts.backlog(backlog, "ward", t, unit_name),
        charts.backlog(backlog, "city", t, unit_name),
        charts.on_time_trend(trend, t),
        charts.on_time_by(per_unit, "chart-on-time-unit", t("chart.on_time_unit"), t, unit_name),
        charts.on_time_by(
            per_procedure,
            "chart-on-time-procedure",
            t("chart.on_time_procedure"),
            t,
            procedure_name,
        ),
        charts.apologies(by_unit, t, unit_name),
        charts.supplements(by_procedure, t, procedure_name),
        charts.processing(by_procedure, t, procedure_name),
    ]
    return _page(
        request,
        "dashboard.html",
        {
            "charts": [f for f in figures if f is not None],
            "from_day": from_day.isoformat(),
            "to_day": to_day.isoformat(),
            "unit": unit,
            "tier": tier,
            "procedure": procedure,
            "units": _units() if mine is None else [(u, unit_name(u)) for u in mine],
            "procedures": _procedures(),
            "backlog_units": sorted({r.unit for r in backlog}),
        },
    )


@router.get("/units/{unit}")
async def unit_view(request: Request, unit: str) -> Response:
    user = await _user(request)
    access.require(access.sees_dashboard(user) and access.sees_units(user, [unit]))
    try:
        default_catalogue().unit(unit)
    except CatalogueError:
        raise NotFound() from None
    now = datetime.now(UTC)
    async with engine_for(_database(request)).connect() as conn:
        tasks = await kpis.open_tasks(conn, unit=unit)
        inbox = await views.inbox(conn, unit=unit, limit=100)
        late = await kpis.past_due(conn, now=now, unit=unit, limit=50)
    t = translator(_language(request))
    return _page(
        request,
        "unit.html",
        {
            "unit": unit,
            "chart": charts.open_tasks(tasks, t),
            "inbox": inbox,
            "past_due": late,
            "now": now,
            "near": now + NEAR_DUE,
        },
    )


# --- the operators' page --------------------------------------------------------------------------
@router.get("/operations")
async def operations(request: Request) -> Response:
    user = await _user(request)
    access.require(access.sees_operations(user))
    ctx = _context(request)
    client = ctx.temporal
    retention = await namespace_retention(client)
    async with engine_for(ctx.settings.database_url).connect() as conn:
        stuck = await find_stuck(
            client,
            conn,
            Filters(),
            unarchived_after=retention / UNARCHIVED_AFTER_SHARE_OF_RETENTION,
        )
        kept = await archive.counts(conn)
        waiting = await archive.pending(conn)
    return _page(
        request,
        "operations.html",
        {
            "stuck": stuck,
            "codes": sorted({row.code for row in stuck}),
            "retention_days": retention.total_seconds() / 86400,
            "archive_counts": kept,
            "archive_pending": waiting,
            "steps": [s.value for s in Step],
            "may_act": access.acts_on_dossiers(user),
        },
    )


class _Request:
    """An operator's request from the form: which dossiers, what, why."""

    def __init__(self, form: FormData) -> None:
        self.codes = sorted({str(c) for c in form.getlist("code") if is_dossier_code(str(c))})
        self.action = str(form.get("action") or "")
        self.step = str(form.get("step") or "")
        self.reason = str(form.get("reason") or "").strip()

    def problem(self) -> str | None:
        if not self.codes:
            return "select_one"
        if not self.reason:
            return "reason_required"
        if self.action not in ("retry", "reset"):
            return "select_one"
        if self.action == "reset" and self.step not in {s.value for s in Step}:
            return "select_one"
        return None


class _Outcome:
    def __init__(self, code: str, outcome: str, before: str = "", after: str = "") -> None:
        self.code, self.outcome, self.before, self.after = code, outcome, before, after


async def _operate(
    request: Request, user: ConsoleUser, order: _Request, dry_run: bool
) -> list[_Outcome]:
    ctx = _context(request)
    client, database_url = ctx.temporal, ctx.settings.database_url
    outcomes: list[_Outcome] = []
    for code in order.codes:
        try:
            if order.action == "retry":
                rows = await retry_dossier(
                    client,
                    database_url,
                    code,
                    operator=user.username,
                    reason=order.reason,
                    dry_run=dry_run,
                )
                for row in rows:
                    outcomes.append(
                        _Outcome(
                            code,
                            f"{row.outcome}: {row.activity} ({row.attempts} attempts; "
                            f"{row.last_error or ''})",
                            row.status_before or "",
                            row.status_after or "",
                        )
                    )
            else:
                reset = await reset_to_step(
                    client,
                    database_url,
                    code,
                    Step(order.step),
                    operator=user.username,
                    reason=order.reason,
                    dry_run=dry_run,
                )
                outcomes.append(
                    _Outcome(
                        code, reset.outcome, reset.status_before or "", reset.status_after or ""
                    )
                )
        except OperatorError as err:
            outcomes.append(_Outcome(code, f"refused: {err}"))
        except RPCError as err:
            outcomes.append(_Outcome(code, f"failed: Temporal refused: {err.message}"))
        action = order.action + ("_dry_run" if dry_run else "")
        detail = "; ".join(o.outcome for o in outcomes if o.code == code)
        await _record(request, user, action, code, f"{order.reason} | {detail}")
    return outcomes


@router.post("/operations/preview")
async def operations_preview(request: Request) -> Response:
    user = await _user(request)
    access.require(access.acts_on_dossiers(user))
    order = _Request(await _form(request))
    problem = order.problem()
    if problem is not None:
        return _page(request, "error.html", {"message_key": problem}, status=422)
    outcomes = await _operate(request, user, order, dry_run=True)
    return _page(
        request, "operations_result.html", {"order": order, "outcomes": outcomes, "dry_run": True}
    )


@router.post("/operations/run")
async def operations_run(request: Request) -> Response:
    user = await _user(request)
    access.require(access.acts_on_dossiers(user))
    order = _Request(await _form(request))
    problem = order.problem()
    if problem is not None:
        return _page(request, "error.html", {"message_key": problem}, status=422)
    outcomes = await _operate(request, user, order, dry_run=False)
    return _page(
        request, "operations_result.html", {"order": order, "outcomes": outcomes, "dry_run": False}
    )


# --- dossiers -------------------------------------------------------------------------------------
@router.get("/dossiers")
async def search(request: Request) -> Response:
    user = await _user(request)
    access.require(access.sees_dossiers(user))
    params = request.query_params
    mine = access.own_units(user)
    code = (params.get("code") or "").strip() or None
    citizen_id = (params.get("citizen_id") or "").strip() or None
    unit = params.get("unit") or None
    results: list[views.DossierRecord] | None = None
    error: str | None = None
    try:
        from_day, to_day = _day(params.get("from"), "from"), _day(params.get("to"), "to")
        if citizen_id is not None and (problem := citizen_id_problem(citizen_id)):
            raise BadInput(f"citizen_id: {problem}")
        if code is not None and not is_dossier_code(code):
            raise BadInput(f"code: {code!r} is not a dossier code (000.01.01.H26-261127-0001)")
        if unit is not None and mine is not None and unit not in mine:
            raise Forbidden()
        asked = any(v is not None for v in (code, citizen_id, unit, from_day, to_day))
        if asked:
            units = (unit,) if unit else mine
            query = views.DossierSearch(
                units=units,
                code=code,
                applicant_ref=masked(citizen_id) if citizen_id else None,
                received_from=_hanoi_midnight(from_day) if from_day else None,
                received_to=_hanoi_midnight(to_day) if to_day else None,
            )
            async with engine_for(_database(request)).connect() as conn:
                results = await views.search_dossiers(conn, query)
    except BadInput as err:
        error = str(err)
    return _page(
        request,
        "search.html",
        {
            "results": results,
            "error": error,
            "code": code or "",
            "citizen_id": citizen_id or "",
            "unit": unit or "",
            "from_day": params.get("from") or "",
            "to_day": params.get("to") or "",
            "units": _units() if mine is None else [(u, unit_name(u)) for u in mine],
            "procedure_name": procedure_name,
        },
    )


async def _visible(
    request: Request, user: ConsoleUser, code: str
) -> tuple[DossierView, list[TimelineEntry]]:
    """The dossier, if the account may see it; another unit's is not found, as in the API,
    and recorded as refused."""
    access.require(access.sees_dossiers(user))
    if not is_dossier_code(code):
        raise NotFound()
    ctx = _context(request)
    try:
        view = await _bounded(dossiers.status(ctx.temporal, ctx.settings.database_url, code))
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise NotFound() from None
        raise
    if not access.sees_units(user, (view.receiving_unit, view.competent_unit)):
        await _record(request, user, "denied", code, "another unit's dossier")
        raise NotFound()
    entries = await _bounded(dossiers.timeline(ctx.temporal, ctx.settings.database_url, code))
    return view, entries


@router.get("/dossiers/{code}")
async def dossier_page(request: Request, code: str) -> Response:
    user = await _user(request)
    view, entries = await _visible(request, user, code)
    ctx = _context(request)
    found = await story.story(
        ctx.temporal, ctx.settings.database_url, ctx.settings.url("signing"), view, entries
    )
    t = translator(_language(request))
    await _record(request, user, "view_dossier", code)
    return _page(
        request,
        "dossier.html",
        {
            "view": view,
            "story": found,
            "clock_chart": charts.legal_clock(found.marks, default_calendar(), t),
            "procedure_name": procedure_name,
        },
    )


@router.get("/dossiers/{code}/timeline.html")
async def download_timeline(request: Request, code: str) -> Response:
    user = await _user(request)
    access.require(access.downloads(user))
    view, entries = await _visible(request, user, code)
    page = render_html(build_timeline(view, entries))
    await _record(request, user, "download_timeline", code)
    return HTMLResponse(
        page,
        headers={"Content-Disposition": f'attachment; filename="{code}-timeline.html"'},
    )


@router.get("/dossiers/{code}/histories.zip")
async def download_histories(request: Request, code: str) -> Response:
    user = await _user(request)
    access.require(access.downloads(user))
    await _visible(request, user, code)
    ctx = _context(request)
    zipped = await story.history_zip(ctx.temporal, ctx.settings.database_url, code)
    if zipped is None:
        raise NotFound()
    await _record(request, user, "download_histories", code)
    return Response(
        zipped,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{code}-histories.zip"'},
    )


# --- the console's own audit record ---------------------------------------------------------------
@router.get("/audit")
async def audit_record(request: Request) -> Response:
    user = await _user(request)
    access.require(access.reads_console_audit(user))
    async with engine_for(_database(request)).connect() as conn:
        events = await accounts.events(conn, limit=300)
    return _page(request, "audit.html", {"events": events})
