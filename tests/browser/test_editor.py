"""The editor's page in headless Chromium, with a reader's page open in a second browser context."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page, Route, expect

from tests.conftest import admin


async def open_editor(new_context: Any, server: Any, blog: str, token: str) -> Page:
    context: BrowserContext = await new_context(base_url=server.url)
    page = await context.new_page()
    await page.goto(f"/editor/{blog}")
    await sign_in(page, token)
    await expect(page.locator("#ed-workspace")).to_be_visible()
    await expect(page.locator("#ed-conn")).to_have_attribute("data-state", "live")
    return page


async def sign_in(page: Page, token: str) -> None:
    field = page.get_by_label("Token")
    await field.fill(token)
    await field.press("Enter")


async def open_reader(new_context: Any, server: Any, blog: str) -> Page:
    page = await (await new_context(base_url=server.url)).new_page()
    await page.goto(f"/blogs/{blog}")
    await expect(page.locator("[data-lb-state]")).to_have_attribute("data-state", "live")
    return page


async def entries(client: httpx.AsyncClient, blog: str) -> list[dict[str, Any]]:
    return (await client.get(f"/api/blogs/{blog}/entries", headers={"Cache-Control": "no-cache"})).json()["entries"]


async def test_post_with_the_keyboard_reaches_a_reader(new_context: Any, server: Any, blog: str,
                                                       editor_token: str, client: httpx.AsyncClient) -> None:
    reader = await open_reader(new_context, server, blog)
    page = await open_editor(new_context, server, blog, editor_token)

    await page.get_by_label("Titolo (facoltativo)").fill("Zelensky a Roma")
    await page.get_by_label("Testo (Markdown)").press_sequentially("Arrivato a **Palazzo Chigi**")
    await expect(page.locator("#ed-preview strong")).to_have_text("Palazzo Chigi")  # rendered by the server
    await expect(page.locator("#ed-preview-heading")).to_have_text("Zelensky a Roma")
    await page.get_by_label("Momento chiave").check()
    await page.get_by_label("Testo (Markdown)").press("Control+Enter")

    await expect(page.locator("#ed-compose-ok")).to_contain_text("Pubblicato alle")
    await expect(page.get_by_label("Testo (Markdown)")).to_have_value("")  # ready for the next one
    await expect(page.get_by_label("Titolo (facoltativo)")).to_have_value("")
    await expect(page.get_by_label("Momento chiave")).not_to_be_checked()
    await expect(page.get_by_label("Testo (Markdown)")).to_be_focused()
    mine = page.locator(".ed-entry", has_text="Arrivato a Palazzo Chigi")
    await expect(mine.locator(".ed-badge-key")).to_be_visible()

    shown = reader.locator(".lb-entry", has_text="Arrivato a Palazzo Chigi")
    await expect(shown.locator(".lb-entry-title")).to_have_text("Zelensky a Roma")
    await expect(shown.locator(".lb-body strong")).to_have_text("Palazzo Chigi")
    await expect(shown.locator(".lb-flag-key")).to_be_visible()
    await expect(shown.locator(".lb-author")).to_have_text("Redazione test")
    [entry] = await entries(client, blog)
    assert entry["title"] == "Zelensky a Roma" and entry["key_event"] is True


async def test_a_post_whose_answer_is_lost_is_not_doubled(new_context: Any, server: Any, blog: str,
                                                          editor_token: str, client: httpx.AsyncClient) -> None:
    page = await open_editor(new_context, server, blog, editor_token)
    lost = []

    async def lose_the_answer(route: Route) -> None:
        if route.request.method == "POST" and not lost:
            lost.append(await route.fetch())  # the server publishes; its answer never reaches the page
            await route.abort()
        else:
            await route.continue_()

    await page.route("**/api/blogs/*/entries", lose_the_answer)
    body = page.get_by_label("Testo (Markdown)")
    await body.fill("Una volta sola")
    await body.press("Control+Enter")
    await expect(page.locator("#ed-compose-error")).to_contain_text("Rete non raggiungibile")
    await expect(body).to_have_value("Una volta sola")
    assert lost and lost[0].status == 201

    await body.press("Control+Enter")  # the editor retries: same Idempotency-Key
    await expect(page.locator("#ed-compose-ok")).to_be_visible()
    await expect(page.locator("#ed-compose-error")).to_be_hidden()
    await expect(page.locator(".ed-entry")).to_have_count(1)
    assert [e["body_html"] for e in await entries(client, blog)] == ["<p>Una volta sola</p>"]


async def test_a_failed_post_keeps_the_text_and_says_why(new_context: Any, server: Any, blog: str,
                                                         editor_token: str, client: httpx.AsyncClient) -> None:
    page = await (await new_context(base_url=server.url)).new_page()
    await page.goto(f"/editor/{blog}")
    await sign_in(page, "lb_not-a-real-token")
    # In Italian, by status; the API's English detail only as small print.
    await expect(page.locator("#ed-signin-error > span")).to_have_text(
        "Non riuscito: Il token non è valido o è stato revocato: accedi di nuovo.")
    await expect(page.locator("#ed-signin-error .ed-error-detail")).to_contain_text("the bearer token is not valid")
    await expect(page.locator("#ed-workspace")).to_be_hidden()
    await sign_in(page, editor_token)
    await expect(page.locator("#ed-workspace")).to_be_visible()

    # The token stops working mid-session (revoked): the server refuses and says why.
    async def revoked(route: Route) -> None:
        headers = {**route.request.headers, "authorization": "Bearer lb_revoked"}
        await route.continue_(headers=headers)

    await page.route("**/api/blogs/*/entries", revoked)
    title, body = page.get_by_label("Titolo (facoltativo)"), page.get_by_label("Testo (Markdown)")
    await title.fill("Da non perdere")
    await body.fill("Testo scritto *sotto pressione*")
    await page.get_by_label("In evidenza").check()
    await page.get_by_role("button", name="Pubblica").click()
    await expect(page.locator("#ed-compose-error > span")).to_contain_text("Il token non è valido")
    await expect(title).to_have_value("Da non perdere")
    await expect(body).to_have_value("Testo scritto *sotto pressione*")
    await expect(page.get_by_label("In evidenza")).to_be_checked()
    await page.unroute("**/api/blogs/*/entries", revoked)

    # A body the server refuses outright: said in Italian, by field; the text stays.
    await body.fill("x" * 50_001)
    await body.press("Control+Enter")
    await expect(page.locator("#ed-compose-error > span")).to_have_text("Non riuscito: Il testo è troppo lungo.")
    await expect(body).to_have_value("x" * 50_001)

    await body.fill("Testo scritto *sotto pressione*")
    await body.press("Control+Enter")
    await expect(page.locator("#ed-compose-ok")).to_be_visible()
    await expect(page.locator("#ed-compose-error")).to_be_hidden()
    [entry] = await entries(client, blog)
    assert entry["title"] == "Da non perdere" and entry["pinned"] is True


async def test_edit_pin_and_delete_from_the_editor_reach_the_reader(new_context: Any, server: Any, blog: str,
                                                                    editor_token: str, api: Any) -> None:
    entry = await api.create(blog, title="Prima versione", body="Testo *iniziale* con [fonte](https://example.org/a)")
    reader = await open_reader(new_context, server, blog)
    page = await open_editor(new_context, server, blog, editor_token)
    mine = page.locator(f".ed-entry[data-id='{entry['id']}']")
    shown = reader.locator(f"#aggiornamento-{entry['id']}")

    await mine.get_by_role("button", name="Modifica").click()
    form = mine.locator("form.ed-edit")
    # The edit starts from the source as it was written.
    await expect(form.locator("textarea[name=body]")).to_have_value("Testo *iniziale* con [fonte](https://example.org/a)")
    await expect(form.locator("input[name=title]")).to_have_value("Prima versione")
    await form.locator("textarea[name=body]").fill("Testo **corretto**")
    await expect(mine.locator(".lb-body strong")).to_have_text("corretto")  # live preview in place
    await form.locator("textarea[name=body]").press("Control+Enter")
    await expect(form).to_have_count(0)
    await expect(mine.locator("[data-field=edited]")).to_contain_text("aggiornato alle")
    await expect(shown.locator(".lb-body")).to_have_text("Testo corretto")
    await expect(shown.locator(".lb-edited")).to_be_visible()

    await mine.get_by_role("button", name="Metti in evidenza").click()
    await expect(mine.locator(".ed-badge-pinned")).to_be_visible()
    await expect(shown.locator(".lb-flag-pinned")).to_be_visible()
    await mine.get_by_role("button", name="Togli dall'evidenza").click()
    await expect(shown.locator(".lb-flag-pinned")).to_be_hidden()

    page.once("dialog", lambda dialog: dialog.accept())
    await mine.get_by_role("button", name="Elimina").click()
    await expect(mine).to_have_count(0)
    await expect(shown).to_have_count(0)


async def test_the_list_is_live_and_the_blog_can_be_ended(new_context: Any, server: Any, blog: str,
                                                          editor_token: str, api: Any,
                                                          client: httpx.AsyncClient) -> None:
    reader = await open_reader(new_context, server, blog)
    page = await open_editor(new_context, server, blog, editor_token)
    # A colleague posts and edits from elsewhere: this editor's list follows.
    other = await api.create(blog, body="Dal collega")
    await expect(page.locator(".ed-entry", has_text="Dal collega")).to_be_visible()
    await api.edit(blog, other["id"], body="Dal collega, corretto")
    await expect(page.locator(".ed-entry .lb-body")).to_have_text("Dal collega, corretto")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Termina la diretta").click()
    await expect(page.locator("#ed-status")).to_have_text("Conclusa")
    await expect(reader.locator("[data-lb-state]")).to_have_attribute("data-state", "ended")
    assert (await client.get(f"/api/blogs/{blog}")).json()["status"] == "ended"
    await page.get_by_role("button", name="Riapri la diretta").click()
    await expect(page.locator("#ed-status")).to_have_text("In diretta")


async def test_a_reload_keeps_the_sign_in_and_the_draft(new_context: Any, server: Any, blog: str,
                                                        editor_token: str) -> None:
    page = await open_editor(new_context, server, blog, editor_token)
    await page.get_by_label("Testo (Markdown)").fill("Bozza a metà")
    await page.reload()
    await expect(page.locator("#ed-workspace")).to_be_visible()
    await expect(page.get_by_label("Testo (Markdown)")).to_have_value("Bozza a metà")
    await page.get_by_role("button", name="Esci").click()
    await expect(page.locator("#ed-signin")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('liveblog.token')") is None


async def start_edit(page: Page, entry_id: str) -> Any:
    mine = page.locator(f".ed-entry[data-id='{entry_id}']")
    await mine.get_by_role("button", name="Modifica").click()
    form = mine.locator("form.ed-edit")
    await expect(form).to_be_visible()
    return mine, form


async def test_the_edit_starts_from_the_source_exactly_as_written(new_context: Any, server: Any, blog: str,
                                                                 editor_token: str, api: Any,
                                                                 client: httpx.AsyncClient) -> None:
    # Things HTML converted back to Markdown would lose: a reference link, raw HTML, list markers, spacing.
    source = ("Fonti: [Reuters][r] e <mark>ANSA</mark>.\n\n* uno\n* due\n\n[r]: https://example.org/reuters\n")
    entry = await api.create(blog, title="Fonti", body=source)
    page = await open_editor(new_context, server, blog, editor_token)
    _, form = await start_edit(page, entry["id"])
    await expect(form.locator("textarea[name=body]")).to_have_value(source)
    await form.locator("input[name=title]").fill("Fonti verificate")  # a title-only edit
    await form.locator("input[name=title]").press("Control+Enter")
    await expect(form).to_have_count(0)
    stored = (await client.get(f"/api/blogs/{blog}/entries/{entry['id']}", headers=api.headers)).json()
    assert stored["title"] == "Fonti verificate" and stored["body"] == source and stored["version"] == 2


async def two_editors_on_one_entry(new_context: Any, server: Any, blog: str, editor_token: str, api: Any
                                   ) -> tuple[dict[str, Any], Page, Any]:
    """Anna and Bruno open the same update; Anna saves first; Bruno saves and gets the conflict panel."""
    entry = await api.create(blog, body="Versione originale")
    anna = await open_editor(new_context, server, blog, editor_token)
    bruno = await open_editor(new_context, server, blog, editor_token)
    _, anna_form = await start_edit(anna, entry["id"])
    bruno_item, bruno_form = await start_edit(bruno, entry["id"])
    await anna_form.locator("textarea[name=body]").fill("Versione di Anna")
    await anna_form.locator("textarea[name=body]").press("Control+Enter")
    await expect(anna_form).to_have_count(0)
    await bruno_form.locator("textarea[name=body]").fill("Versione di Bruno")
    await bruno_form.locator("textarea[name=body]").press("Control+Enter")
    conflict = bruno_form.locator("[data-field=conflict]")
    await expect(conflict).to_be_visible()
    await expect(conflict).to_contain_text("Un collega ha salvato questo aggiornamento mentre scrivevi.")
    await expect(conflict.get_by_label("La tua versione")).to_have_value("Versione di Bruno")
    await expect(conflict.get_by_label("La versione del collega")).to_have_value("Versione di Anna")
    await expect(bruno_form.locator("textarea[name=body]")).to_have_value("Versione di Bruno")  # nothing lost
    return entry, bruno, bruno_item


async def stored_body(client: httpx.AsyncClient, api: Any, blog: str, entry_id: str) -> dict[str, Any]:
    return (await client.get(f"/api/blogs/{blog}/entries/{entry_id}", headers=api.headers)).json()


async def test_a_colleagues_save_is_never_silently_overwritten_keep_mine(
        new_context: Any, server: Any, blog: str, editor_token: str, api: Any, client: httpx.AsyncClient) -> None:
    entry, _bruno, item = await two_editors_on_one_entry(new_context, server, blog, editor_token, api)
    assert (await stored_body(client, api, blog, entry["id"]))["body"] == "Versione di Anna"  # not overwritten
    await item.get_by_role("button", name="Tieni la mia").click()
    await expect(item.locator("form.ed-edit")).to_have_count(0)
    await expect(item.locator(".lb-body")).to_have_text("Versione di Bruno")
    stored = await stored_body(client, api, blog, entry["id"])
    assert stored["body"] == "Versione di Bruno" and stored["version"] == 3


async def test_a_conflict_can_take_theirs(new_context: Any, server: Any, blog: str, editor_token: str, api: Any,
                                          client: httpx.AsyncClient) -> None:
    entry, _bruno, item = await two_editors_on_one_entry(new_context, server, blog, editor_token, api)
    await item.get_by_role("button", name="Prendi la sua").click()
    await expect(item.locator("form.ed-edit")).to_have_count(0)
    await expect(item.locator(".lb-body")).to_have_text("Versione di Anna")
    stored = await stored_body(client, api, blog, entry["id"])
    assert stored["body"] == "Versione di Anna" and stored["version"] == 2


async def test_a_conflict_can_be_edited_on_top_of_theirs(new_context: Any, server: Any, blog: str,
                                                         editor_token: str, api: Any,
                                                         client: httpx.AsyncClient) -> None:
    entry, _bruno, item = await two_editors_on_one_entry(new_context, server, blog, editor_token, api)
    await item.get_by_role("button", name="Modifica sulla sua").click()
    form = item.locator("form.ed-edit")
    body = form.locator("textarea[name=body]")
    await expect(body).to_have_value("Versione di Anna")
    await expect(form.get_by_label("La tua versione")).to_have_value("Versione di Bruno")  # still there to copy
    await body.fill("Versione di Anna, con la correzione di Bruno")
    await body.press("Control+Enter")
    await expect(form).to_have_count(0)
    stored = await stored_body(client, api, blog, entry["id"])
    assert stored["body"] == "Versione di Anna, con la correzione di Bruno" and stored["version"] == 3


async def test_pinning_a_changed_entry_sends_if_match_and_says_so(new_context: Any, server: Any, blog: str,
                                                                  editor_token: str, api: Any,
                                                                  client: httpx.AsyncClient) -> None:
    entry = await api.create(blog, body="Da fissare")
    page = await open_editor(new_context, server, blog, editor_token)
    mine = page.locator(f".ed-entry[data-id='{entry['id']}']")
    await expect(mine).to_be_visible()
    sent = []

    async def colleague_saves_first(route: Route) -> None:
        if route.request.method == "PATCH":
            sent.append(route.request.headers.get("if-match"))
            await api.edit(blog, entry["id"], body="Cambiato dal collega")  # lands just before this PATCH
        await route.continue_()

    await page.route("**/api/blogs/*/entries/*", colleague_saves_first)
    await mine.get_by_role("button", name="Metti in evidenza").click()
    await expect(mine.locator("[data-field=error]")).to_have_text(
        "Nel frattempo un collega l'ha modificato: controlla e riprova.")
    await expect(mine.locator(".lb-body")).to_have_text("Cambiato dal collega")  # the colleague's version shown
    assert sent == ['"1"']
    assert (await stored_body(client, api, blog, entry["id"]))["pinned"] is False


async def test_the_first_page_is_loaded_once(new_context: Any, server: Any, blog: str, editor_token: str,
                                             api: Any) -> None:
    await api.create(blog, body="Uno solo")
    context: BrowserContext = await new_context(base_url=server.url)
    page = await context.new_page()
    lists = []
    page.on("request", lambda request: lists.append(request.url) if "/entries?limit=" in request.url else None)
    await page.goto(f"/editor/{blog}")
    await sign_in(page, editor_token)
    await expect(page.locator("#ed-conn")).to_have_attribute("data-state", "live")
    await expect(page.locator(".ed-entry")).to_have_count(1)
    await expect(page.locator("#ed-who")).to_have_text("Connesso come Redazione test")
    assert len(lists) == 1, lists


async def test_a_token_for_another_blog_cannot_sign_in_here(new_context: Any, server: Any, blog: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        made = (await http.post("/api/tokens", headers=admin(),
                                json={"name": "altra diretta", "blogs": ["un-altro-blog"]})).json()
    page = await (await new_context(base_url=server.url)).new_page()
    await page.goto(f"/editor/{blog}")
    await sign_in(page, made["token"])
    await expect(page.locator("#ed-signin-error > span")).to_have_text(
        "Non riuscito: Questo token non può farlo: ruolo o diretta non consentiti.")
    await expect(page.locator("#ed-workspace")).to_be_hidden()
