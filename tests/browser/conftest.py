"""Browser fixtures: real headless Chromium driven by Playwright (async API, session event loop).

- ``browser``: one Chromium for the session (Debian's ``/usr/bin/chromium``, or ``LIVEBLOG_CHROMIUM``);
  when it is missing the browser tests are skipped, except under ``CI=true`` where they fail.
- ``new_context(**options)``: a fresh, isolated browser context (its own cookies, storage and cache),
  closed after the test; pass ``base_url=`` to aim it at a server of your own. Use two of them for an
  editor and a reader.
- ``context`` / ``page``: one context aimed at the shared ``server`` fixture, and a page in it.

Every page made through these fixtures is watched: an uncaught JavaScript exception or a
Content-Security-Policy violation fails the test at teardown (see ``PageWatch``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, async_playwright

CHROMIUM = os.environ.get("LIVEBLOG_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()
LAUNCH_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Waiting for something to appear may take this long before a test fails (never a timed assertion).
TIMEOUT_MS = 15_000


class PageWatch:
    """Collects a page's uncaught exceptions and CSP violations."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(f"CSP: {message.text}")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set LIVEBLOG_CHROMIUM)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        await chromium.close()


NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest_asyncio.fixture(loop_scope="session")
async def new_context(browser: Browser) -> AsyncIterator[NewContext]:
    contexts: list[BrowserContext] = []
    watch = PageWatch()

    async def make(**options: Any) -> BrowserContext:
        context = await browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("page", watch.attach)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        try:
            await context.close()
        except Error:
            pass  # already closed by the test
    assert not watch.problems, "\n".join(watch.problems)


@pytest_asyncio.fixture(loop_scope="session")
async def context(new_context: NewContext, server: Any) -> BrowserContext:
    return await new_context(base_url=server.url)


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()
