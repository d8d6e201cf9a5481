"""The editor's drafts, "Pubblica ora" and "Ripristina" in headless Chromium, a reader's page beside."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from tests.browser.test_editor import open_editor, open_reader


async def test_a_draft_stays_hidden_until_published_now_then_a_version_is_restored(
        new_context: Any, server: Any, blog: str, editor_token: str, editor: dict[str, str],
        client: httpx.AsyncClient) -> None:
    reader = await open_reader(new_context, server, blog)
    page = await open_editor(new_context, server, blog, editor_token)

    await page.get_by_label("Testo (Markdown)").fill("Bozza sul **vertice**")
    await page.get_by_role("button", name="Salva bozza").click()
    await expect(page.locator("#ed-compose-ok")).to_contain_text("Bozza salvata")
    draft = page.locator(".ed-pending-item", has_text="Bozza sul **vertice**")
    await expect(draft).to_contain_text("bozza")
    assert (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"] == []

    await draft.get_by_role("button", name="Pubblica ora").click()
    await expect(reader.locator(".lb-entry .lb-body strong")).to_have_text("vertice")
    await expect(page.locator("#ed-pending-empty")).to_be_visible()
    [entry] = (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"]

    edited = await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor,
                                json={"body": "Corretto *dopo*"})
    assert edited.status_code == 200
    await expect(reader.locator(".lb-entry .lb-body em")).to_have_text("dopo")
    mine = page.locator(".ed-entry", has_text="Corretto dopo")
    await mine.get_by_role("button", name="Versioni").click()
    first = mine.locator(".ed-revisions li", has_text="v1")
    await expect(first).to_contain_text("Bozza sul **vertice**")
    await first.get_by_role("button", name="Ripristina").click()
    await expect(reader.locator(".lb-entry .lb-body strong")).to_have_text("vertice")
    [restored] = (await client.get(f"/api/blogs/{blog}/entries", headers=editor)).json()["entries"]
    assert restored["version"] == 3 and restored["body"] == "Bozza sul **vertice**"


async def test_programma_schedules_at_the_time_typed_in_the_blogs_timezone(
        new_context: Any, server: Any, blog: str, editor_token: str, editor: dict[str, str],
        client: httpx.AsyncClient) -> None:
    page = await open_editor(new_context, server, blog, editor_token)
    await page.get_by_label("Testo (Markdown)").fill("Alle 18.30 di Roma")
    await page.locator("#ed-when").fill("2030-07-01T18:30")
    await page.get_by_role("button", name="Programma").click()
    await expect(page.locator(".ed-pending-item", has_text="Alle 18.30 di Roma")).to_contain_text("programmato")
    [scheduled] = (await client.get(f"/api/blogs/{blog}/entries", params={"status": "scheduled"},
                                    headers=editor)).json()["entries"]
    assert scheduled["publish_at"].startswith("2030-07-01T16:30:00")  # Europe/Rome is UTC+2 in July
