"""The web console on the session's real stack: the API's app (console mounted) served by
uvicorn in-process, one account per role, a few dossiers filed and one closed, and a headless
chromium driven by selenium through Debian's chromedriver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from config import ROOT
from schemas.actions import Action, Appraisal, Approval, HandOver, Recommendation
from schemas.dossier import IntakeChannel
from schemas.statuses import Role
from simulators.seed import sample_civil_packages
from store import console_users
from store.console_users import ConsoleUserError
from tests.conftest import EngineStack, serving_api
from tests.driver import act, officer, result, submission, submit

BIRTH = "1.001193"
HOAN_KIEM, BA_DINH = "hoan-kiem", "ba-dinh"
PASSWORD = "console-test-password-1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts" / "console"
WAIT_SECONDS = 30

# username: (roles, unit)
ACCOUNTS: dict[str, tuple[list[str], str | None]] = {
    "city.leader": (["city_leader"], None),
    "hk.leader": (["unit_leader"], HOAN_KIEM),
    "ops.tran": (["operator"], None),
    "audit.le": (["auditor"], None),
}

T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleServer:
    url: str
    stack: EngineStack

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, follow_redirects=False)


async def ensure_account(
    database_url: str, username: str, roles: list[str], unit: str | None, password: str
) -> None:
    """The account with these roles and password, whatever an earlier run on the database
    left."""
    try:
        await console_users.add_user(
            database_url, username, full_name=username, roles=roles, unit=unit, password=password
        )
    except ConsoleUserError:
        await console_users.set_roles(database_url, username, roles, unit)
        await console_users.set_password(database_url, username, password)


@pytest.fixture(scope="session")
async def console(stack: EngineStack) -> AsyncIterator[ConsoleServer]:
    async with serving_api(stack) as url:
        for username, (roles, unit) in ACCOUNTS.items():
            await ensure_account(stack.settings.database_url, username, roles, unit, PASSWORD)
        yield ConsoleServer(url=url, stack=stack)


@dataclass(frozen=True)
class Filed:
    """Dossiers of the console's tests: open at Hoan Kiem (one filed online), one closed
    there, one open at Ba Dinh."""

    hoan_kiem_open: str
    hoan_kiem_online: str
    hoan_kiem_closed: str
    ba_dinh_open: str


async def close_birth(stack: EngineStack, code: str, unit: str) -> None:
    await act(
        stack,
        code,
        Action.APPRAISE,
        Appraisal(officer=officer(Role.SPECIALIST, unit), recommendation=Recommendation.APPROVE),
    )
    await act(stack, code, Action.APPROVE, Approval(officer=officer(Role.LEADER, unit)))
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, unit), rating=3),
    )
    await result(stack, code)


def birth(unit: str, citizen: int, channel: IntakeChannel = IntakeChannel.COUNTER) -> Any:
    package = sample_civil_packages()[citizen].package_id
    filed = submission(BIRTH, unit, citizen=citizen, subject_reference=package)
    return filed.model_copy(update={"intake_channel": channel})


@pytest.fixture(scope="session")
async def filed(console: ConsoleServer) -> Filed:
    stack = console.stack
    closed = await submit(stack, birth(HOAN_KIEM, 80))
    dossiers = Filed(
        hoan_kiem_open=await submit(stack, birth(HOAN_KIEM, 81)),
        hoan_kiem_online=await submit(stack, birth(HOAN_KIEM, 82, IntakeChannel.ONLINE)),
        hoan_kiem_closed=closed,
        ba_dinh_open=await submit(stack, birth(BA_DINH, 83)),
    )
    await close_birth(stack, closed, HOAN_KIEM)
    return dossiers


# --- the browser ---------------------------------------------------------------------------
class Browser:
    """Headless chromium. Its calls block: tests run them in a thread (`run`), so the console
    served by this event loop can answer meanwhile."""

    def __init__(self, base_url: str, downloads: Path) -> None:
        options = Options()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1100",
            "--lang=vi",
        ):
            options.add_argument(argument)
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
            },
        )
        self.driver: WebDriver = webdriver.Chrome(
            service=Service(str(CHROMEDRIVER)), options=options
        )
        self.base_url = base_url
        self.downloads = downloads

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def find(self, css: str) -> Any:
        return WebDriverWait(self.driver, WAIT_SECONDS).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
        )

    def all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.driver.delete_all_cookies()
        self.open("/console/login")
        self.find("#username").send_keys(username)
        self.find("#password").send_keys(password)
        self.find("#login-submit").click()
        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda d: "/console/login" not in d.current_url
        )

    def wait_for(self, condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
        WebDriverWait(self.driver, timeout).until(lambda _d: condition())

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        self.driver.quit()


async def run(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


@pytest.fixture(scope="session")
def chromium_present() -> None:
    """The browser tests need Debian's chromium and chromium-driver: without them they fail
    (CI installs them, see .ci/run), never skip."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install Debian's browser for the console's tests "
            "with `apt-get install -y chromium chromium-driver` (.ci/run does it)",
            pytrace=False,
        )


@pytest.fixture
async def browser(
    chromium_present: None, console: ConsoleServer, tmp_path: Path
) -> AsyncIterator[Browser]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opened = await run(Browser, console.url, downloads)
    try:
        yield opened
    finally:
        await run(opened.quit)
