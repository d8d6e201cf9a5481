"""Photos and embeds in Chromium: nothing from other origins on load, a click loads the player, and a
photo uploaded in the editor reaches an open reader's page in a published update."""

from __future__ import annotations

import io
import re
from typing import Any

import httpx
from PIL import Image
from playwright.async_api import Page, Route, expect

from tests.browser.helpers import open_live
from tests.browser.test_editor import open_editor, open_reader
from tests.test_media import picture, stored

YT = "dQw4w9WgXcQ"
VIMEO = "76979871"
PLAYER = "<!doctype html><title>player</title><p>player stand-in</p>"


async def watch_foreign_requests(page: Page, origin: str) -> list[str]:
    """Every request to another origin is recorded (and refused: there is no internet here anyway),
    except the two players, which answer with a stand-in page."""
    foreign: list[str] = []

    async def handle(route: Route) -> None:
        url = route.request.url
        if url.startswith(origin) or url.startswith(("data:", "blob:")):
            await route.continue_()
            return
        foreign.append(url)
        if url.startswith(("https://www.youtube-nocookie.com/", "https://player.vimeo.com/")):
            await route.fulfill(status=200, content_type="text/html", body=PLAYER)
        else:
            await route.abort()

    await page.route("**/*", handle)
    return foreign


async def test_embeds_request_nothing_from_providers_until_clicked(page: Page, api: Any, blog: str, server: Any,
                                                                 client: httpx.AsyncClient, editor_token: str) -> None:
    photo = await stored(client, editor_token, picture(1200, 800))
    await api.create(blog, body=(f"![Piazza]({photo['url']})\n\nhttps://www.youtube.com/watch?v={YT}\n\n"
                                 f"https://vimeo.com/{VIMEO}\n\nhttps://x.com/Quirinale/status/1790000000000000000\n\n"
                                 "https://www.instagram.com/p/C7abcDEF123/\n\n![fuori](https://foto.example.org/a.jpg)"))
    foreign = await watch_foreign_requests(page, server.url)
    await open_live(page, blog)
    youtube = page.locator('[data-embed="youtube"]')
    await expect(youtube.get_by_role("button")).to_have_text("Carica il video da YouTube")
    await expect(page.locator('[data-card="x"] a')).to_have_attribute(
        "href", "https://x.com/Quirinale/status/1790000000000000000")
    await expect(page.locator(".lb-figure img")).to_have_attribute("alt", "Piazza")
    await page.locator(".lb-figure img").scroll_into_view_if_needed()
    await page.wait_for_load_state("networkidle")
    # Only the other host's photo, which the author chose (lazy: fetched once on screen), left the origin.
    assert [url for url in foreign if "foto.example.org" not in url] == []
    assert not await page.locator("iframe").count()

    await youtube.get_by_role("button").click()
    frame = page.locator('iframe[src^="https://www.youtube-nocookie.com/"]')
    await expect(frame).to_have_attribute("src", f"https://www.youtube-nocookie.com/embed/{YT}?autoplay=1")
    sandbox = (await frame.get_attribute("sandbox") or "").split()
    assert set(sandbox) == {"allow-scripts", "allow-same-origin", "allow-presentation", "allow-popups"}
    assert await page.locator('[data-embed="youtube"]').count() == 0  # the placeholder is gone
    await expect(page.frame_locator('iframe[src*="youtube-nocookie"]').locator("p")).to_have_text("player stand-in")

    # The keyboard works too (a real button), and for placeholders that arrive live.
    vimeo = page.locator('[data-embed="vimeo"] button')
    await vimeo.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("iframe[src^='https://player.vimeo.com/']")).to_have_attribute(
        "src", f"https://player.vimeo.com/video/{VIMEO}?dnt=1&autoplay=1")
    await api.create(blog, body="https://youtu.be/aaaaaaaaaaa")
    await page.locator('[data-embed-id="aaaaaaaaaaa"] button').click()
    await expect(page.locator("iframe[src*='/embed/aaaaaaaaaaa']")).to_have_count(1)
    assert all(url.startswith(("https://www.youtube-nocookie.com/", "https://player.vimeo.com/",
                               "https://foto.example.org/")) for url in foreign), foreign


async def test_a_photo_uploaded_in_the_editor_reaches_an_open_reader(new_context: Any, server: Any, blog: str,
                                                                    editor_token: str) -> None:
    reader = await open_reader(new_context, server, blog)
    page = await open_editor(new_context, server, blog, editor_token)
    body = page.get_by_label("Testo (Markdown)")
    await body.fill("Il corteo arriva in piazza.")
    await page.set_input_files("#ed-photo", files=[{"name": "IMG_0042.jpg", "mimeType": "image/jpeg",
                                                    "buffer": picture(1800, 1200)}])
    await expect(page.locator("#ed-upload-status")).to_contain_text("Foto caricata")
    await expect(body).to_have_value(re.compile(r"\n\n!\[IMG_0042\]\(/media/[0-9a-f/]+/1800\.jpg\)$"))
    selected = await body.evaluate("ta => ta.value.slice(ta.selectionStart, ta.selectionEnd)")
    assert selected == "IMG_0042"  # the editor types the alternative text at once
    await page.keyboard.type("Il corteo in piazza del Popolo")
    await expect(page.locator('#ed-preview img[alt="Il corteo in piazza del Popolo"]')).to_have_attribute(
        "srcset", re.compile(r"480w, .* 960w, .* 1600w, .* 1800w$"))
    await body.press("Control+Enter")
    await expect(page.locator("#ed-compose-ok")).to_contain_text("Pubblicato alle")
    await expect(page.locator("#ed-alt-warning")).to_be_hidden()

    shown = reader.locator('.lb-entry .lb-figure img[alt="Il corteo in piazza del Popolo"]')
    await expect(shown).to_have_attribute("loading", "lazy")
    await expect(shown).to_have_attribute("width", "1800")
    await shown.scroll_into_view_if_needed()
    await reader.wait_for_function(  # the photo itself loads from /media/ (same origin)
        "() => [...document.querySelectorAll('.lb-figure img')].some(i => i.complete && i.naturalWidth > 0)")


async def test_a_photo_without_real_alt_text_warns_but_is_published(new_context: Any, server: Any, blog: str,
                                                                   editor_token: str,
                                                                   client: httpx.AsyncClient) -> None:
    page = await open_editor(new_context, server, blog, editor_token)
    await page.set_input_files("#ed-photo", files=[{"name": "DSC_1234.png", "mimeType": "image/png",
                                                    "buffer": picture(640, 480, "PNG")}])
    await expect(page.locator("#ed-upload-status")).to_contain_text("Foto caricata")
    await page.get_by_label("Testo (Markdown)").press("Control+Enter")
    await expect(page.locator("#ed-alt-warning")).to_contain_text("testo alternativo")
    await expect(page.locator("#ed-compose-ok")).to_contain_text("Pubblicato alle")  # not blocked
    entries = (await client.get(f"/api/blogs/{blog}/entries", headers={"Cache-Control": "no-cache"})).json()
    assert entries["entries"][0]["image"].endswith("/640.jpg")


async def test_upload_failures_are_explained_in_italian(new_context: Any, server: Any, blog: str,
                                                        editor_token: str) -> None:
    page = await open_editor(new_context, server, blog, editor_token)
    await page.set_input_files("#ed-photo", files=[{"name": "appunti.jpg", "mimeType": "image/jpeg",
                                                    "buffer": b"solo testo, non una foto"}])
    await expect(page.locator("#ed-upload-error")).to_have_text(
        "appunti.jpg non è un'immagine JPEG, PNG, WebP o GIF.")
    out = io.BytesIO()
    Image.new("1", (9000, 7000)).save(out, "PNG")
    await page.set_input_files("#ed-photo", files=[{"name": "enorme.png", "mimeType": "image/png",
                                                    "buffer": out.getvalue()}])
    await expect(page.locator("#ed-upload-error")).to_contain_text("La foto enorme.png non può essere elaborata")
    await expect(page.get_by_label("Testo (Markdown)")).to_have_value("")
