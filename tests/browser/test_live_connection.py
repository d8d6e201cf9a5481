"""The reader page's connection stays honest: a dead stream is noticed and replaced, an ended blog
that is reopened comes back, and a long session keeps the page bounded."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from typing import Any

from playwright.async_api import Request, expect

from tests.browser.helpers import open_live, shown_ids


async def test_a_paused_server_is_noticed_and_the_page_resumes_with_missed_updates_once(
        service_factory: Any, new_context: Any, api: Any, blog: str) -> None:
    """SIGSTOP: the connection stays open but nothing comes (no error, no close), as on a half-open
    connection. Two missed heartbeats later the page says so and reconnects from its last event."""
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_HEARTBEAT": "1"})
    page = await (await new_context(base_url=own.url)).new_page()
    await open_live(page, blog)
    state = page.locator("[data-lb-state]")
    first = await api.create(blog, body="Prima della pausa")
    await expect(page.locator(f"#aggiornamento-{first['id']}")).to_be_visible()

    assert own.process is not None
    own.process.send_signal(signal.SIGSTOP)
    try:
        await expect(state).to_have_attribute("data-state", "reconnecting")
        await expect(state).to_contain_text("Connessione persa, riconnessione")
        # Published through the other server (same Redis) while the page's server is frozen.
        during = await api.create(blog, body="Durante la pausa")
        await api.edit(blog, first["id"], body="Prima della pausa, corretto")
        gone = await api.create(blog, body="Pubblicato e cancellato")
        await api.delete(blog, gone["id"])
    finally:
        own.process.send_signal(signal.SIGCONT)

    await expect(state).to_have_attribute("data-state", "live")
    await expect(state).to_contain_text("In diretta")
    await expect(page.locator(f"#aggiornamento-{during['id']}")).to_be_visible()
    await expect(page.locator(f"#aggiornamento-{first['id']} .lb-body")).to_have_text("Prima della pausa, corretto")
    after = await api.create(blog, body="Dopo la pausa")
    await expect(page.locator(f"#aggiornamento-{after['id']}")).to_be_visible()
    assert await shown_ids(page) == [after["id"], during["id"], first["id"]]  # each once, nothing deleted back
    assert await page.evaluate("window.__sameDocument") is True


async def test_a_stale_stream_is_replaced_when_the_tab_becomes_visible(
        new_context: Any, server: Any, api: Any, blog: str) -> None:
    """A hidden tab's timers may not run, so the watchdog may never fire: coming back to the tab
    checks too. The page clock is frozen (no watchdog), then moved an hour on, then the tab shows."""
    context = await new_context(base_url=server.url)
    await context.clock.install()
    page = await context.new_page()
    streams: list[Request] = []
    page.on("request", lambda r: streams.append(r) if "/events" in r.url else None)
    await open_live(page, blog)
    await page.clock.pause_at(datetime.now() + timedelta(seconds=1))
    seen = await api.create(blog, body="Visto prima")
    await expect(page.locator(f"#aggiornamento-{seen['id']}")).to_be_visible()
    assert len(streams) == 1

    await page.clock.set_system_time(datetime.now() + timedelta(hours=1))
    async with page.expect_request(lambda r: "/events" in r.url) as reconnected:
        await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    resumed = (await reconnected.value).url
    assert "last_event_id=" in resumed and resumed != streams[0].url  # from the last event, not the render
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "live")
    later = await api.create(blog, body="Dopo il ritorno")
    await expect(page.locator(f"#aggiornamento-{later['id']}")).to_be_visible()
    assert await shown_ids(page) == [later["id"], seen["id"]]


async def test_an_ended_blog_reopened_comes_back_to_life_in_open_pages(
        service_factory: Any, new_context: Any, api: Any, blog: str) -> None:
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_PAGE_ENDED_POLL": "0.5"})
    context = await new_context(base_url=own.url)
    watching = await context.new_page()  # open while live, then sees the end
    await open_live(watching, blog)
    await api.set_status(blog, "ended")
    late = await api.create(blog, body="Scritto a diretta chiusa")
    opened_ended = await context.new_page()  # opened after the end: rendered ended
    await opened_ended.goto(f"/blogs/{blog}")
    for page in (watching, opened_ended):
        await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "ended")
        await expect(page.locator("[data-lb-ended]")).to_be_visible()

    await api.set_status(blog, "live")
    after = await api.create(blog, body="Si riparte")
    for page in (watching, opened_ended):
        await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "live")
        await expect(page.locator("[data-lb-badge]")).to_have_text("In diretta")
        await expect(page.locator("[data-lb-ended]")).to_be_hidden()
        await expect(page.locator(f"#aggiornamento-{after['id']}")).to_be_visible()
        assert await shown_ids(page) == [after["id"], late["id"]]


async def test_a_long_session_keeps_a_bounded_page_and_older_updates_come_back(
        service_factory: Any, new_context: Any, api: Any, blog: str) -> None:
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_PAGE_MAX_ENTRIES": "3"})
    page = await (await new_context(base_url=own.url)).new_page()
    pinned = await api.create(blog, body="In evidenza", pinned=True)
    first = await api.create(blog, body="n. 0")
    await open_live(page, blog)
    older = page.get_by_role("link", name="Carica aggiornamenti precedenti")
    await expect(older).to_have_count(0)
    ids = [first["id"]]
    for n in range(1, 6):
        ids.append((await api.create(blog, body=f"n. {n}"))["id"])
        await expect(page.locator(f"#aggiornamento-{ids[-1]}")).to_be_visible()
    # The pinned one stays; of the others, only the 3 newest remain rendered.
    await expect(page.locator(f"#aggiornamento-{ids[2]}")).to_have_count(0)
    assert await shown_ids(page) == [pinned["id"], *ids[:2:-1]]
    await expect(older).to_be_visible()
    await older.click()
    await expect(page.locator(f"#aggiornamento-{first['id']}")).to_be_visible()
    assert await shown_ids(page) == [pinned["id"], *ids[::-1]]  # all back, in order, nothing doubled
    await expect(older).to_have_count(0)
