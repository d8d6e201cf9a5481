"""Helpers for browser tests of the live page (shared with other browser tests)."""

from __future__ import annotations

from playwright.async_api import Page, expect


async def open_live(page: Page, slug: str, path: str = "") -> None:
    """Open a blog's live page (or ``path`` under it, e.g. ``/embed``) and wait until it is connected.

    Sets ``window.__sameDocument``, which survives only as long as the document: a test can check it
    at the end to prove that nothing reloaded the page.
    """
    await page.goto(f"/blogs/{slug}{path}")
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "live")
    await page.evaluate("window.__sameDocument = true")


async def shown_ids(page: Page) -> list[str]:
    """Entry ids in the order the page shows them."""
    return await page.locator("[data-lb-list] > .lb-entry").evaluate_all("els => els.map(el => el.dataset.id)")
