"""Who may see what, over HTTP: sign-in with its rate limit, CSRF on every form, a unit
leader kept to their unit by URL and by search, downloads for auditors only, each recorded
in the console's audit record."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from store import console_users
from store.console_users import FAILED_LOGINS_PER_ACCOUNT
from store.db import engine_for
from store.tables import console_events
from tests.console.conftest import PASSWORD, ConsoleServer, Filed, ensure_account

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def signed_in(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> int:
    page = await http.get("/console/login")
    [token] = CSRF.findall(page.text)
    answer = await http.post(
        "/console/login",
        data={"csrf_token": token, "username": username, "password": password, "next": ""},
    )
    return answer.status_code


async def events_of(server: ConsoleServer, username: str) -> list[tuple[str, str]]:
    e = console_events.c
    async with engine_for(server.stack.settings.database_url).connect() as conn:
        rows = await conn.execute(
            select(e.action, e.target).where(e.username == username).order_by(e.id)
        )
        return [(r.action, r.target) for r in rows]


async def test_sign_in_is_rate_limited_and_recorded(console: ConsoleServer) -> None:
    database_url = console.stack.settings.database_url
    await ensure_account(database_url, "guessed.at", ["auditor"], None, PASSWORD)
    async with console.http() as http:
        for _ in range(FAILED_LOGINS_PER_ACCOUNT):
            assert await signed_in(http, "guessed.at", "not-the-password") == 401
        # The right password no longer helps for the rest of the window.
        assert await signed_in(http, "guessed.at") == 429
    actions = [action for action, _ in await events_of(console, "guessed.at")]
    assert actions == ["login_failed"] * FAILED_LOGINS_PER_ACCOUNT + ["login_throttled"]


async def test_a_form_without_its_csrf_token_is_refused(console: ConsoleServer) -> None:
    async with console.http() as http:
        assert await signed_in(http, "ops.tran") == 303
        forged = await http.post(
            "/console/operations/preview",
            data={"code": "000.01.01.H26-261127-0001", "action": "retry", "reason": "x"},
        )
        assert forged.status_code == 403
        wrong = await http.post("/console/logout", data={"csrf_token": "not-this-session's"})
        assert wrong.status_code == 403
    async with console.http() as anonymous:
        page = await anonymous.post(
            "/console/login", data={"username": "ops.tran", "password": PASSWORD}
        )
        assert page.status_code == 403  # no session, no token: the form has expired


async def test_a_unit_leader_never_sees_another_units_dossier(
    console: ConsoleServer, filed: Filed
) -> None:
    theirs = filed.ba_dinh_open
    async with console.http() as http:
        assert await signed_in(http, "hk.leader") == 303
        own = await http.get(f"/console/dossiers/{filed.hoan_kiem_open}")
        assert own.status_code == 200 and filed.hoan_kiem_open in own.text
        by_url = await http.get(f"/console/dossiers/{theirs}")
        assert by_url.status_code == 404 and 'id="dossier-code"' not in by_url.text
        by_code = await http.get("/console/dossiers", params={"code": theirs})
        assert by_code.status_code == 200 and 'id="none-found"' in by_code.text
        by_unit = await http.get("/console/dossiers", params={"unit": "ba-dinh"})
        assert by_unit.status_code == 403
        dashboard = await http.get("/console/dashboard", params={"unit": "ba-dinh"})
        assert dashboard.status_code == 403
        unit_view = await http.get("/console/units/ba-dinh")
        assert unit_view.status_code == 403
        operations = await http.get("/console/operations")
        assert operations.status_code == 403
    recorded = await events_of(console, "hk.leader")
    assert ("denied", theirs) in recorded


async def test_downloads_are_the_auditors_and_recorded(
    console: ConsoleServer, filed: Filed
) -> None:
    code = filed.hoan_kiem_closed
    async with console.http() as http:
        assert await signed_in(http, "ops.tran") == 303
        assert (await http.get(f"/console/dossiers/{code}/timeline.html")).status_code == 403
    async with console.http() as http:
        assert await signed_in(http, "audit.le") == 303
        page = await http.get(f"/console/dossiers/{code}/timeline.html")
        assert page.status_code == 200 and code in page.text
        assert "attachment" in page.headers["content-disposition"]
        zipped = await http.get(f"/console/dossiers/{code}/histories.zip")
        assert zipped.status_code == 200 and zipped.content[:2] == b"PK"
    recorded = await events_of(console, "audit.le")
    assert ("download_timeline", code) in recorded and ("download_histories", code) in recorded


async def test_a_disabled_account_is_out_at_its_next_request(console: ConsoleServer) -> None:
    database_url = console.stack.settings.database_url
    await ensure_account(database_url, "leaving.soon", ["city_leader"], None, PASSWORD)
    async with console.http() as http:
        assert await signed_in(http, "leaving.soon") == 303
        assert (await http.get("/console/dossiers")).status_code == 200
        await console_users.disable_user(database_url, "leaving.soon")
        after = await http.get("/console/dossiers")
        assert after.status_code == 303 and "/console/login" in after.headers["location"]
        assert await signed_in(http, "leaving.soon") == 401


async def test_the_chart_library_is_served_by_the_console(console: ConsoleServer) -> None:
    async with console.http() as http:
        script = await http.get("/console/static/plotly.min.js")
        assert script.status_code == 200 and len(script.content) > 1_000_000
        assert await signed_in(http, "city.leader") == 303
        page = await http.get("/console/dashboard")
        assert page.status_code == 200
        sources = re.findall(r'<script src="([^"]+)"', page.text)
        assert sources == ["/console/static/plotly.min.js"]  # nothing from elsewhere
