"""The reader's live page in headless Chromium: updates arrive, change and disappear without a reload."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from playwright.async_api import Page, Request, expect

from tests.browser.helpers import open_live, shown_ids
from tests.sse_client import SSEClient

LONG = " ".join(["Una frase abbastanza lunga per riempire lo schermo del lettore."] * 12)


async def test_new_edited_and_deleted_updates_appear_without_reload(page: Page, api: Any, blog: str) -> None:
    await open_live(page, blog)
    entry = await api.create(blog, title="Primo aggiornamento", body="Testo *iniziale*", author="Anna Bianchi")
    article = page.locator(f"#aggiornamento-{entry['id']}")
    await expect(article.locator(".lb-body")).to_have_text("Testo iniziale")
    await expect(article.locator(".lb-clock")).to_have_text(entry["time_label"])
    await expect(article.locator(".lb-entry-title")).to_have_text("Primo aggiornamento")
    await expect(article.locator(".lb-author")).to_have_text("Anna Bianchi")
    await expect(article.locator(".lb-edited")).to_be_hidden()
    await expect(page.locator("[data-lb-announce]")).to_contain_text(entry["time_label"])

    edited = await api.edit(blog, entry["id"], body="Testo corretto", key_event=True)
    await expect(article.locator(".lb-body")).to_have_text("Testo corretto")
    await expect(article.locator(".lb-edited")).to_have_text(f"aggiornato alle {edited['updated_label']}")
    await expect(article.locator(".lb-flag-key")).to_be_visible()

    await api.delete(blog, entry["id"])
    await expect(article).to_have_count(0)
    await expect(page.locator("[data-lb-empty]")).to_be_visible()
    assert await page.evaluate("window.__sameDocument") is True


async def test_pinned_stay_on_top_and_key_events_filter(page: Page, api: Any, blog: str) -> None:
    old = await api.create(blog, body="Il riepilogo", pinned=True)
    await open_live(page, blog)
    key = await api.create(blog, body="Momento decisivo", key_event=True)
    plain = await api.create(blog, body="Notizia ordinaria")
    await expect(page.locator(f"#aggiornamento-{plain['id']}")).to_be_visible()
    assert await shown_ids(page) == [old["id"], plain["id"], key["id"]]

    await api.edit(blog, old["id"], pinned=False)  # unpinned: falls back to its place in time
    await expect(page.locator(f"#aggiornamento-{old['id']} .lb-flag-pinned")).to_be_hidden()
    assert await shown_ids(page) == [plain["id"], key["id"], old["id"]]
    await api.edit(blog, key["id"], pinned=True)
    await expect(page.locator(f"#aggiornamento-{key['id']} .lb-flag-pinned")).to_be_visible()
    assert await shown_ids(page) == [key["id"], plain["id"], old["id"]]

    toggle = page.get_by_role("button", name="Momenti chiave")
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await expect(page.locator(f"#aggiornamento-{plain['id']}")).to_be_hidden()
    await expect(page.locator(f"#aggiornamento-{key['id']}")).to_be_visible()
    await toggle.press("Enter")  # keyboard works too
    await expect(page.locator(f"#aggiornamento-{plain['id']}")).to_be_visible()


async def test_a_reader_scrolled_away_gets_a_notice_not_a_jump(new_context: Any, server: Any, api: Any,
                                                               blog: str) -> None:
    for n in range(6):
        await api.create(blog, title=f"Aggiornamento {n}", body=LONG)
    page = await (await new_context(base_url=server.url, viewport={"width": 390, "height": 700})).new_page()
    await open_live(page, blog)
    oldest = page.locator("[data-lb-list] > .lb-entry").last
    await oldest.scroll_into_view_if_needed()
    await page.evaluate("window.scrollBy(0, 50)")
    before = await oldest.evaluate("el => el.getBoundingClientRect().top")

    first = await api.create(blog, title="Nuovo mentre leggo", body=LONG)
    notice = page.locator("[data-lb-notice]")
    await expect(notice).to_have_text("1 nuovo aggiornamento")
    await expect(page.locator(f"#aggiornamento-{first['id']}")).to_be_attached()
    second = await api.create(blog, title="Un altro", body="Breve")
    await expect(notice).to_have_text("2 nuovi aggiornamenti")
    # What the reader was reading has not moved on the screen.
    after = await oldest.evaluate("el => el.getBoundingClientRect().top")
    assert abs(after - before) < 1.5, (before, after)
    await expect(page.locator(f"#aggiornamento-{second['id']}")).not_to_be_in_viewport()

    await notice.click()
    await expect(page.locator(f"#aggiornamento-{second['id']}")).to_be_in_viewport()
    await expect(page.locator(f"#aggiornamento-{second['id']}")).to_be_focused()
    await expect(notice).to_be_hidden()

    # At the top, a new update simply appears at the top, with no notice.
    third = await api.create(blog, title="In cima", body="Breve")
    await expect(page.locator(f"#aggiornamento-{third['id']}")).to_be_in_viewport()
    await expect(notice).to_be_hidden()
    assert (await shown_ids(page))[0] == third["id"]


async def test_ended_blog_says_so_and_stops_listening(page: Page, new_context: Any, server: Any, api: Any,
                                                      blog: str) -> None:
    opened: list[Request] = []
    closed: list[Request] = []
    seen = asyncio.Event()

    def record(into: list[Request]) -> Callable[[Request], None]:
        def on(request: Request) -> None:
            if "/events" in request.url:
                into.append(request)
                seen.set()
        return on

    page.on("request", record(opened))
    page.on("requestfailed", record(closed))
    page.on("requestfinished", record(closed))
    await open_live(page, blog)
    await api.set_status(blog, "ended")
    await expect(page.locator("[data-lb-ended]")).to_have_text("La diretta è terminata. Grazie per averci seguito.")
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "ended")
    await expect(page.locator("[data-lb-badge]")).to_have_text("Diretta terminata")
    async with asyncio.timeout(15):  # the page closes its event stream
        while not set(opened) <= set(closed):
            seen.clear()
            await seen.wait()
    streams = len(opened)

    # A late update is sent (a control reader on the raw stream gets it) but the page, no longer
    # listening, neither reconnects nor shows it.
    late = await api.create(blog, body="Dopo la fine")
    async with SSEClient(f"{server.url}/blogs/{blog}/events", last_event_id="0-0") as control:
        await control.until(lambda event: event.event == "entry.created" and event.json["id"] == late["id"])
    # A reader who opens the page now sees it ended, with everything, and never connects.
    fresh = await (await new_context(base_url=server.url)).new_page()
    fresh_streams: list[Request] = []
    fresh.on("request", lambda r: fresh_streams.append(r) if "/events" in r.url else None)
    await fresh.goto(f"/blogs/{blog}")
    await expect(fresh.locator("[data-lb-state]")).to_have_attribute("data-state", "ended")
    await expect(fresh.locator(f"#aggiornamento-{late['id']}")).to_be_visible()
    await fresh.wait_for_load_state("load")
    assert fresh_streams == []
    assert len(opened) == streams
    await expect(page.locator(f"#aggiornamento-{late['id']}")).to_have_count(0)


async def test_the_page_talks_to_its_own_origin_only(page: Page, api: Any, server: Any, blog: str) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    ids = [(await api.create(blog, body=f"Aggiornamento numero {n}", key_event=n == 0))["id"] for n in range(22)]
    await open_live(page, blog)
    assert await shown_ids(page) == ids[::-1][:20]
    await page.get_by_role("link", name="Carica aggiornamenti precedenti").click()
    await expect(page.locator(f"#aggiornamento-{ids[0]}")).to_be_attached()
    await expect(page.get_by_role("link", name="Carica aggiornamenti precedenti")).to_have_count(0)
    assert await shown_ids(page) == ids[::-1]  # older ones appended in order, nothing doubled
    await page.get_by_role("button", name="Momenti chiave").click()
    newest = await api.create(blog, body="Ultima ora")
    await expect(page.locator(f"#aggiornamento-{newest['id']}")).to_be_attached()
    await page.reload()
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "live")
    assert requested, "no request recorded"
    assert [url for url in requested if not url.startswith(server.url + "/")] == []
    kinds = {url.split("?")[0].rsplit("/", 1)[-1] for url in requested}
    assert {"live.js", "live.css", "events", "entries"} <= kinds


async def test_hostile_html_never_runs_on_the_page(page: Page, api: Any, blog: str) -> None:
    await page.add_init_script("window.__pwned = []")  # on every load, before the page's own code
    await open_live(page, blog)
    hostile = await api.create(
        blog,
        title='</script><script>window.__pwned.push("title")</script>',
        author='<img src=x onerror="window.__pwned.push(\'author\')">Mallory',
        body=('<img src=x onerror="window.__pwned.push(\'img\')"><script>window.__pwned.push("script")</script>'
              '<a href="javascript:window.__pwned.push(\'href\')">clicca</a> <svg onload="window.__pwned.push(1)">'
              '</svg> fine'),
    )
    article = page.locator(f"#aggiornamento-{hostile['id']}")
    await expect(article.locator(".lb-body")).to_contain_text("fine")
    await article.get_by_text("clicca").click()

    async def inert() -> None:
        assert await page.evaluate("window.__pwned") == []
        found = await page.evaluate("""() => [...document.querySelectorAll('[data-lb-list] *')]
            .filter(el => el.tagName === 'SCRIPT' || el.tagName === 'svg' ||
                          [...el.attributes].some(a => a.name.startsWith('on') || a.value.includes('javascript:')))
            .map(el => el.outerHTML)""")
        assert found == []

    await inert()
    await page.reload()  # the same update, server-rendered this time
    await expect(article.locator(".lb-author")).to_have_text("Mallory")
    await inert()


async def test_older_updates_load_on_demand_even_after_an_old_pinned_one_is_unpinned(page: Page, api: Any,
                                                                                    blog: str) -> None:
    ids = [(await api.create(blog, body=f"Numero {n}", pinned=n == 0))["id"] for n in range(22)]
    await open_live(page, blog)
    assert await shown_ids(page) == [ids[0], *ids[:1:-1]]  # pinned, then the 20 newest
    await api.edit(blog, ids[0], pinned=False)  # now it belongs to the page not loaded yet
    await expect(page.locator(f"#aggiornamento-{ids[0]}")).to_have_count(0)
    await page.get_by_role("link", name="Carica aggiornamenti precedenti").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator(f"#aggiornamento-{ids[0]}")).to_be_attached()
    assert await shown_ids(page) == ids[::-1]
    await expect(page.get_by_role("link", name="Carica aggiornamenti precedenti")).to_have_count(0)


async def test_the_embed_is_live_too(page: Page, api: Any, blog: str) -> None:
    await open_live(page, blog, "/embed")
    entry = await api.create(blog, body="Anche nel riquadro del partner")
    await expect(page.locator(f"#aggiornamento-{entry['id']} .lb-body")).to_have_text("Anche nel riquadro del partner")
    permalink = page.locator(f"#aggiornamento-{entry['id']} .lb-time")
    await expect(permalink).to_have_attribute("href", entry["url"])  # leads to the full page


async def test_without_javascript_the_page_still_shows_the_updates(new_context: Any, server: Any, api: Any,
                                                                  blog: str) -> None:
    ids = [(await api.create(blog, body=f"Senza script {n}"))["id"] for n in range(21)]
    page = await (await new_context(base_url=server.url, java_script_enabled=False)).new_page()
    await page.goto(f"/blogs/{blog}")
    assert await shown_ids(page) == ids[:0:-1]
    await page.get_by_role("link", name="Carica aggiornamenti precedenti").click()
    await expect(page).to_have_url(f"{server.url}/blogs/{blog}?before={ids[1]}")
    assert await shown_ids(page) == [ids[0]]
