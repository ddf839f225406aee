"""The console in a real browser (headless chromium) on the real stack: each role signs in
and sees its pages, the dashboard's charts are drawn with the dossiers' data, an operator
retries a dossier stuck after a registry outage and sees it close, an auditor downloads a
dossier's printable timeline, and a unit leader is refused another unit's dossier.
Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
from selenium.webdriver.common.by import By

from domain.calendar import HANOI
from ops.stuck import StuckKind, inspect_dossier
from store import audit
from store.db import engine_for
from tests.console.conftest import (
    BA_DINH,
    HOAN_KIEM,
    Browser,
    ConsoleServer,
    Filed,
    birth,
    close_birth,
    run,
)
from tests.driver import submit


def dashboard_path(console: ConsoleServer, unit: str = "") -> str:
    # The tests' dossiers are received at the scenario's instant (tests/instants.py), not
    # today: the window is the week around it.
    start_at = console.stack.start_at
    assert start_at is not None, "the console's tests run on the time-skipping server"
    day = start_at.astimezone(HANOI).date()
    window = f"from={day - timedelta(days=3)}&to={day + timedelta(days=7)}"
    return f"/console/dashboard?{window}" + (f"&unit={unit}" if unit else "")


def drawn(browser: Browser, chart: str) -> int:
    """The SVG marks plotly.js drew in a chart: bars, or the points of a line."""
    return len(browser.all(f"#{chart} g.point path")) + len(
        browser.all(f"#{chart} g.scatterlayer path.point")
    )


async def test_each_role_signs_in_and_sees_its_pages(
    browser: Browser, console: ConsoleServer, filed: Filed
) -> None:
    # The city leader: the dashboard, charts drawn from the dossiers received and closed.
    await run(browser.login, "city.leader")
    await run(browser.open, dashboard_path(console))
    await run(browser.find, "#chart-received .main-svg")
    for chart in ("chart-received", "chart-lanes", "chart-backlog-ward"):
        await run(browser.wait_for, lambda c=chart: drawn(browser, c) > 0)
    await run(browser.wait_for, lambda: drawn(browser, "chart-on-time-unit") > 0)
    title = await run(browser.text, "#chart-received .gtitle")
    assert "Hồ sơ tiếp nhận theo ngày và kênh" in title  # Vietnamese by default
    await run(browser.screenshot, "dashboard-city-leader")
    # The English switch.
    await run(browser.find("#lang-en").click)
    await run(browser.find, "#chart-received .main-svg")
    assert "Dossiers received per day and channel" in await run(
        browser.text, "#chart-received .gtitle"
    )
    await run(browser.screenshot, "dashboard-city-leader-en")
    await run(browser.find("#lang-vi").click)

    # The unit leader of Hoan Kiem: their unit's dashboard and unit view, not Ba Dinh's.
    await run(browser.login, "hk.leader")
    await run(browser.open, dashboard_path(console))
    await run(browser.find, "#chart-received .main-svg")
    await run(browser.wait_for, lambda: drawn(browser, "chart-received") > 0)
    options = [o.get_attribute("value") for o in browser.all("#filters select[name=unit] option")]
    assert options == [HOAN_KIEM]
    await run(browser.screenshot, "dashboard-unit-leader")
    await run(browser.open, f"/console/units/{HOAN_KIEM}")
    inbox = await run(browser.text, "#inbox")
    assert filed.hoan_kiem_open in inbox
    await run(browser.screenshot, "unit-view")
    await run(browser.open, f"/console/dossiers/{filed.ba_dinh_open}")
    assert "Không tìm thấy" in await run(browser.text, "#error")
    assert not browser.all("#dossier-code")
    await run(browser.open, f"/console/dossiers?code={filed.ba_dinh_open}")
    await run(browser.find, "#none-found")
    await run(browser.screenshot, "unit-leader-refused")

    # The operator lands on the operators' page.
    await run(browser.login, "ops.tran")
    await run(browser.find, "#retention")
    assert browser.driver.current_url.endswith("/console/operations")
    assert not browser.all("#nav-dashboard")
    await run(browser.screenshot, "operations")

    # The auditor: a dossier's whole story, and its printable timeline downloaded.
    await run(browser.login, "audit.le")
    code = filed.hoan_kiem_closed
    await run(browser.open, f"/console/dossiers/{code}")
    await run(browser.find, "#chart-clock .main-svg")
    await run(browser.wait_for, lambda: drawn(browser, "chart-clock") > 0)
    assert "returned" in await run(browser.text, "#dossier-status")
    assert "đã xác minh" in await run(browser.text, "#audit-chain")
    documents = await run(browser.text, "#documents")
    assert "hợp lệ" in documents and "KHÔNG" not in documents
    await run(browser.screenshot, "dossier-auditor")
    await run(browser.find("#download-timeline").click)
    saved = browser.downloads / f"{code}-timeline.html"
    await run(browser.wait_for, saved.exists)
    page = saved.read_text(encoding="utf-8")
    assert f"Quá trình giải quyết hồ sơ {code}" in page
    await run(browser.open, "/console/audit")
    assert "download_timeline" in await run(browser.text, "#console-events")


async def stuck_at_intake(console: ConsoleServer, code: str, attempts: int) -> None:
    """Until the identity check is at its `attempts`-th try against the dead registry."""
    deadline = time.monotonic() + 90
    while True:
        rows = await inspect_dossier(console.stack.client, code)
        failing = [
            r for r in rows if r.kind is StuckKind.ACTIVITY and (r.attempts or 0) >= attempts
        ]
        if failing:
            return
        assert time.monotonic() < deadline, f"{code} never got stuck: {rows}"
        await asyncio.sleep(0.5)


async def test_an_operator_retries_a_dossier_stuck_after_a_registry_outage(
    browser: Browser, console: ConsoleServer
) -> None:
    stack = console.stack
    faults = f"{stack.simulators.url('population')}/_sim/faults"
    httpx.post(faults, json={"failure_rate": 1.0}).raise_for_status()
    try:
        code = await submit(stack, birth(BA_DINH, 84))
        # Retries back off from 1 s, doubling: after the 5th failure the 6th try waits 16 s,
        # which the operator's retry below cuts short.
        await stuck_at_intake(console, code, attempts=6)
    finally:
        httpx.post(faults, json={"failure_rate": 0.0}).raise_for_status()  # the registry is back

    await run(browser.login, "ops.tran")
    await run(browser.open, "/console/operations")
    row = await run(browser.find, f'#stuck tr[data-code="{code}"]')
    assert "503" in row.text  # the registry's last answer
    await run(browser.find(f'input[name="code"][value="{code}"]').click)
    await run(browser.find("#action-retry").click)
    await run(browser.find("#reason").send_keys, "population registry back after outage")
    await run(browser.screenshot, "operations-stuck")
    await run(browser.find("#preview").click)
    # The dry run first: nothing has changed yet.
    assert "would retry" in await run(browser.text, "#outcomes")
    await run(browser.screenshot, "operations-dry-run")
    await run(browser.find("#confirm").click)
    await run(browser.find, "#back")
    assert "retried" in await run(browser.text, "#outcomes")
    await run(browser.screenshot, "operations-retried")

    # The same audit event as `ops retry`, in the dossier's chain, by the console's operator.
    async with engine_for(stack.settings.database_url).connect() as conn:
        chain = await audit.events(conn, code)
    retries = [e for e in chain if e.event_type == "operator_retry"]
    assert [e.actor for e in retries] == ["ops.tran"]

    # Moving again: the officers take their steps and the dossier closes.
    await close_birth(stack, code, BA_DINH)
    await run(browser.open, f"/console/dossiers/{code}")
    await run(browser.wait_for, lambda: "returned" in browser.text("#dossier-status"))
    assert browser.text("#dossier-closed").strip()
    steps = [c.text for c in browser.driver.find_elements(By.CSS_SELECTOR, "#timeline td")]
    assert any("receipt" in s for s in steps)
    await run(browser.screenshot, "dossier-closed-after-retry")
