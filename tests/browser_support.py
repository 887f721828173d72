"""Real headless Chromium for the browser tests, driven by playwright.

The browser is Debian's ``/usr/bin/chromium`` (``.ci/bootstrap`` installs it), never one playwright
downloads: with ``executable_path`` given, playwright needs no browser of its own. Without it, or without
the playwright package, the tests using ``browser`` fail in CI (CI set) and are skipped elsewhere.

Use it like the other fixture modules::

    from tests.browser_support import browser, new_page, screenshot  # noqa: F401  (fixture)

    async def test_page(browser):
        page = await new_page(browser, base_url)
        try:
            await page.goto("/")
            await screenshot(page, "home")
            assert page.errors == []
        finally:
            await page.context.close()

Pages only reach loopback: any other request is aborted and recorded in ``page.errors``, so a page that
would need the internet shows up as an error rather than a hang.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page, Route

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "output" / "cockpit"
VIEWPORT = {"width": 1400, "height": 900}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason + " (set CI=true to make this a failure)")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the whole session; each test gets its own context from ``new_page``."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium (bash .ci/bootstrap does it as root)")
    args = ["--disable-dev-shm-usage"]  # small /dev/shm in containers would crash the renderer
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            yield launched
        finally:
            await launched.close()


async def new_page(browser: Browser, base_url: str) -> Page:
    """A page in a fresh 1400x900 context whose relative URLs resolve against ``base_url``.

    ``page.errors`` collects console errors, uncaught page errors and blocked non-loopback requests as
    strings. Close it with ``await page.context.close()``.
    """
    context = await browser.new_context(viewport=VIEWPORT, base_url=base_url)
    page = await context.new_page()
    errors: list[str] = []
    page.errors = errors  # type: ignore[attr-defined]

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            errors.append(f"console: {message.text}" + (f" ({where})" if where else ""))

    async def only_loopback(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https") and url.hostname not in LOOPBACK_HOSTS:
            errors.append(f"blocked external request: {route.request.url}")
            await route.abort()
        else:
            await route.continue_()

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    await context.route("**/*", only_loopback)
    return page


async def screenshot(page: Page, name: str) -> Path:
    """Saves the viewport as ``tests/output/cockpit/<name>.png`` and returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
