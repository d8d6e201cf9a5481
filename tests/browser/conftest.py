"""Browser fixtures: real headless Chromium driven by Playwright (async API, session event loop).

- ``browser``: one Chromium for the session (Debian's ``/usr/bin/chromium``, or ``LIVEBLOG_CHROMIUM``);
  when it is missing the browser tests are skipped, except under ``CI=true`` where they fail.
- ``new_context(**options)``: a fresh, isolated browser context (its own cookies, storage and cache),
  closed after the test; pass ``base_url=`` to aim it at a server of your own. Use two of them for an
  editor and a reader.
- ``context`` / ``page``: one context aimed at the shared ``server`` fixture, and a page in it.
- ``api``: an editor's calls through the public API of the shared server (``create``, ``edit``,
  ``delete``, ``set_status``), each asserting success and returning the JSON.

Every page made through these fixtures is watched: an uncaught JavaScript exception or a
Content-Security-Policy violation fails the test at teardown (see ``PageWatch``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, async_playwright, expect

CHROMIUM = os.environ.get("LIVEBLOG_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = Path(CHROMIUM).exists()
LAUNCH_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Waiting for something to appear may take this long before a test fails (never a timed assertion).
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


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


class Api:
    """An editor publishing through the HTTP API (what a newsroom tool would do)."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def _call(self, method: str, path: str, expected: int, body: dict[str, Any] | None = None) -> Any:
        response = await self.client.request(method, path, headers=self.headers, json=body)
        assert response.status_code == expected, response.text
        return response.json() if response.content else None

    async def create(self, slug: str, **fields: Any) -> dict[str, Any]:
        return await self._call("POST", f"/api/blogs/{slug}/entries", 201, fields)

    async def edit(self, slug: str, entry_id: str, **fields: Any) -> dict[str, Any]:
        return await self._call("PATCH", f"/api/blogs/{slug}/entries/{entry_id}", 200, fields)

    async def delete(self, slug: str, entry_id: str) -> None:
        await self._call("DELETE", f"/api/blogs/{slug}/entries/{entry_id}", 204)

    async def set_status(self, slug: str, status: str) -> dict[str, Any]:
        return await self._call("PATCH", f"/api/blogs/{slug}", 200, {"status": status})


@pytest.fixture
def api(client: httpx.AsyncClient, editor: dict[str, str]) -> Api:
    return Api(client, editor)
