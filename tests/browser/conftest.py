"""Browser tests: Debian's Chromium, driven by Playwright (pytest-playwright), against a real uvicorn.

pytest-playwright gives the `page` fixture (a fresh browser context per test). Here it launches
the system Chromium (`apt-get install chromium`; Playwright's own download is neither possible nor
needed), and `base_url` points at one uvicorn server for the package. Each test plugs its own app
into that server:

    def test_something(page: Page, serve_app: ServeApp, app: App) -> None:
        site = serve_app(create_app(app, environ=ENV))
        page.goto(site + "/u/...")  # or page.goto("/u/..."): base_url is the same server

Playwright, the browser and the server last for this package, not the session: Playwright's sync
API marks its event loop as running in the main thread while it is alive, and every later test that
calls `asyncio.run()` would fail ("cannot be called from a running event loop"). So the plugin's
session fixtures that hold it (`playwright`, `browser_type`, `launch_browser`, `browser`,
`browser_context_args`) are redefined here at package scope; pytest tears them down as soon as the
run leaves tests/browser.

Chromium missing is a failure naming the package, never a skip. `--tracing retain-on-failure`,
`--screenshot only-on-failure` and `--headed` work (artifacts go to `--output`, ./test-results by
default); `--video` does not, as it needs Playwright's own ffmpeg.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.http_server import serving

CHROMIUM_MISSING = (
    "the browser tests need Debian's Chromium on PATH: apt-get install -y --no-install-recommends chromium"
)

ServeApp = Callable[[ASGIApp], str]


@dataclass
class LiveServer:
    """One uvicorn server on 127.0.0.1, serving whichever app the current test plugged in."""

    url: str = ""
    target: ASGIApp | None = field(default=None, repr=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.target is not None:
            await self.target(scope, receive, send)
        elif scope["type"] == "http":
            unplugged = PlainTextResponse("no app is plugged in: use the serve_app fixture", status_code=503)
            await unplugged(scope, receive, send)


# -- the browser: pytest-playwright's fixtures, with the system Chromium, for this package only --------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any], browser_name: str) -> dict[str, Any]:
    """pytest-playwright's launch options (--headed, --slowmo still apply), with the system Chromium."""
    if browser_name != "chromium":
        pytest.fail(f"only Chromium is installed for the browser tests, not {browser_name}", pytrace=False)
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    return {"headless": True, **browser_type_launch_args, "executable_path": executable}


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    browser_type: BrowserType = getattr(playwright, browser_name)
    return browser_type


@pytest.fixture(scope="package")
def launch_browser(browser_type_launch_args: dict[str, Any], browser_type: BrowserType) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    """One Chromium for every test in the package (~0.3 s to launch); each test gets its own context."""
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def browser_context_args(playwright: Playwright, device: str | None, base_url: str) -> dict[str, Any]:
    """Options for each test's browser context: `--device`, and `base_url` so `page.goto("/path")` works."""
    return {**(playwright.devices[device] if device else {}), "base_url": base_url}


# -- the server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def live_server() -> Iterator[LiveServer]:
    """Started once (~0.15 s); `serve_app` decides what it serves for each test."""
    server = LiveServer()
    with serving(server) as url:
        server.url = url
        yield server


@pytest.fixture(scope="package")
def base_url(live_server: LiveServer) -> str:
    return live_server.url


@pytest.fixture
def serve_app(live_server: LiveServer) -> Iterator[ServeApp]:
    """`serve_app(asgi_app)` serves that app for this test and returns the base URL; unplugged afterwards."""

    def plug(asgi_app: ASGIApp) -> str:
        live_server.target = asgi_app
        return live_server.url

    yield plug
    live_server.target = None
