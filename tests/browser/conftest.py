"""Fixtures for the panel in a real browser: Debian's Chromium driven by Playwright (no
downloaded browser builds) against ``python -m server`` run as a child process.

One server serves the whole session; every test gets people of its own (``user``), so
tests never see each other's tasks. Tests that restart a server or need demo mode start
their own with ``make_server``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.browser.support import PRODUCER_KEY, SECRET, Person, Producer, user_token
from tests.support.server_proc import REPO_ROOT, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium hangs on a closed network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
TIMEZONE = "Europe/Berlin"

expect.set_options(timeout=15_000)


def server_env(db: Path, **extra: str) -> dict[str, str]:
    return {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "LOG_LEVEL": "warning",
        # The host-page tests frame the panel from a page of their own.
        "TASKBELL_FRAME_ANCESTORS": "*",
        **extra,
    }


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("panel") / "taskbell.db"
    with ServerProcess(server_env(db)) as running:
        running.wait_ready()
        yield running


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start a server of the test's own (own database unless ``db`` is given)."""
    started: list[ServerProcess] = []

    def make(*, db: Path | None = None, port: int | None = None, **env: str) -> ServerProcess:
        path = db or tmp_path / f"taskbell-{len(started)}.db"
        srv = ServerProcess(server_env(path, **env), port=port)
        started.append(srv)
        srv.start()
        srv.wait_ready()
        return srv

    yield make
    for srv in started:
        srv.close()


# Package scope, not session: Playwright's sync API keeps an event loop running in this
# thread while it is open, and asyncio tests elsewhere in the suite cannot start theirs
# until it is closed again.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium package")
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def producer(server: ServerProcess) -> Iterator[Producer]:
    with Producer(server.base_url) as p:
        yield p


@pytest.fixture
def person(server: ServerProcess, user: str) -> Iterator[Person]:
    p = Person(server.base_url, user)
    yield p
    p.close()


@pytest.fixture
def output_dir() -> Path:
    path = Path(os.environ.get("TASKBELL_TEST_OUTPUT") or REPO_ROOT / "test-output")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Browsing:
    """Opens panel pages, each in a fresh browser context, and checks at the end that no
    page threw an uncaught error."""

    browser: Browser
    base_url: str
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def context(
        self,
        *,
        viewport: dict[str, int] | None = None,
        scale: float = 1,
        color_scheme: str = "light",
    ) -> BrowserContext:
        ctx = self.browser.new_context(
            viewport=viewport or DESKTOP,  # type: ignore[arg-type]
            device_scale_factor=scale,
            timezone_id=TIMEZONE,
            locale="en-US",
            color_scheme=color_scheme,  # type: ignore[arg-type]
        )
        self.contexts.append(ctx)
        return ctx

    def page(self, ctx: BrowserContext | None = None) -> Page:
        page = (ctx or self.context()).new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    def open(
        self,
        user: str,
        *,
        page: Page | None = None,
        base_url: str | None = None,
        route: str = "/",
        secret: str = SECRET,
        wait_live: bool = True,
    ) -> Page:
        """The panel as the host application opens it: ``/#token=...``."""
        page = page or self.page()
        base = base_url or self.base_url
        page.goto(f"{base}/#token={user_token(user, secret)}&route={route}")
        if wait_live:
            expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def browsing(browser: Browser, server: ServerProcess) -> Iterator[Browsing]:
    b = Browsing(browser, server.base_url)
    yield b
    b.close()
    assert not b.errors, "uncaught errors in the page:\n" + "\n".join(b.errors)
