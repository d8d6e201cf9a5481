"""A server restart while the live page is open: the page reconnects and catches up, nothing doubled."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from playwright.async_api import expect

from tests.browser.helpers import open_live, shown_ids


async def test_updates_resume_after_a_server_restart(service_factory: Any, new_context: Any, api: Any,
                                                     blog: str) -> None:
    own = service_factory("serve", "--no-dispatcher")  # the page's server; `api` posts via the shared one
    page = await (await new_context(base_url=own.url)).new_page()
    await open_live(page, blog)
    state = page.locator("[data-lb-state]")
    first = await api.create(blog, body="Prima del riavvio")
    await expect(page.locator(f"#aggiornamento-{first['id']}")).to_be_visible()

    await asyncio.to_thread(own.stop)
    await expect(state).to_have_attribute("data-state", "reconnecting")
    await expect(state).to_contain_text("riconnessione")
    # Published while the page's server is down (through the other server, same Redis).
    during = await api.create(blog, body="Mentre il server era giù")
    await api.edit(blog, first["id"], body="Prima del riavvio, corretto")
    gone = await api.create(blog, body="Pubblicato e subito cancellato")
    await api.delete(blog, gone["id"])

    await asyncio.to_thread(own.start)  # same port
    await expect(state).to_have_attribute("data-state", "live")
    after = await api.create(blog, body="Dopo il riavvio")
    await expect(page.locator(f"#aggiornamento-{after['id']}")).to_be_visible()
    await expect(page.locator(f"#aggiornamento-{first['id']} .lb-body")).to_have_text("Prima del riavvio, corretto")
    assert await shown_ids(page) == [after["id"], during["id"], first["id"]]
    assert await page.evaluate("window.__sameDocument") is True


async def test_a_resume_point_trimmed_away_reloads_the_page(service_factory: Any, new_context: Any,
                                                            api: Any, blog: str) -> None:
    """Streams capped at 5 changes: a page away for longer gets `reset` and reloads to a fresh state."""
    short = {"LIVEBLOG_STREAM_MAXLEN": "5"}
    own = service_factory("serve", "--no-dispatcher", env=short)
    writer = service_factory("serve", "--no-dispatcher", env=short)
    page = await (await new_context(base_url=own.url)).new_page()
    await open_live(page, blog)
    await asyncio.to_thread(own.stop)
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "reconnecting")
    ids = []
    async with httpx.AsyncClient(base_url=writer.url, timeout=10) as http:
        for n in range(10):  # written through a server that trims the stream to 5
            response = await http.post(f"/api/blogs/{blog}/entries", headers=api.headers, json={"body": f"n. {n}"})
            assert response.status_code == 201
            ids.append(response.json()["id"])
    await asyncio.to_thread(own.start)
    await expect(page.locator(f"#aggiornamento-{ids[0]}")).to_be_attached()  # first one: only a reload has it
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "live")
    assert await shown_ids(page) == ids[::-1]
    assert await page.evaluate("window.__sameDocument") is None  # it was a new document
