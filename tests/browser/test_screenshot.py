"""Takes the README's screenshot: the demo blog's live page (`liveblog demo`), with updates arriving live.

The picture goes to a temporary file; with LIVEBLOG_UPDATE_SCREENSHOT=1 it replaces docs/screenshot.png.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from liveblog.seed import DEMO_SLUG
from tests.browser.helpers import open_live

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


async def test_screenshot_of_the_demo_live_page(service_factory: Any, new_context: Any, api: Any,
                                                tmp_path: Path) -> None:
    demo = service_factory("demo", "--no-dispatcher")  # loads seeds/ (idempotent), then serves
    context = await new_context(base_url=demo.url, viewport={"width": 1100, "height": 1500},
                                reduced_motion="reduce")
    page = await context.new_page()
    await api.create(DEMO_SLUG, title="Cosa sappiamo finora", pinned=True, author="Redazione Ore 12",
                     body="- Washington: tra Russia e Iran una partnership di difesa vera e propria\n"
                          "- Londra: Mosca cerca centinaia di missili balistici iraniani\n"
                          "- Allarme aereo nella notte in diverse regioni dell'Ucraina")
    await open_live(page, DEMO_SLUG)
    update = await api.create(DEMO_SLUG, author="Redazione Ore 12",
                              body="Il Cremlino non commenta le dichiarazioni di Kirby. Il portavoce Dmitry Peskov: "
                                   "«La cooperazione con Teheran non è rivolta contro Paesi terzi».")
    await api.edit(DEMO_SLUG, update["id"], title="Mosca: «Nessun commento su Kirby»")
    await expect(page.locator(f"#aggiornamento-{update['id']} .lb-edited")).to_be_visible()
    target = SCREENSHOT if os.environ.get("LIVEBLOG_UPDATE_SCREENSHOT") == "1" else tmp_path / "live.png"
    await page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
