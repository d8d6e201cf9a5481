"""Editing safely: ETag/If-Match on entries, the source kept for editors only, ids not used up by
refused or replayed posts, pinning that is not an edit. All through the real server."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Service
from tests.sse_client import SSEClient
from tests.support import post

SOURCE = "## Ore 14\n\nKirby: *partnership* con <b>Teheran</b>\n\n- uno\n- due\n"


def entry_path(slug: str, entry_id: str) -> str:
    return f"/api/blogs/{slug}/entries/{entry_id}"


async def test_entry_carries_its_version_as_etag(client: httpx.AsyncClient, blog: str,
                                                 editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "prima")
    assert (await client.get(entry_path(blog, entry["id"]))).headers["etag"] == '"1"'
    edited = await client.patch(entry_path(blog, entry["id"]), headers=editor, json={"body": "seconda"})
    assert edited.headers["etag"] == '"2"' and edited.json()["version"] == 2
    assert (await client.get(entry_path(blog, entry["id"]))).headers["etag"] == '"2"'


async def test_patch_with_a_stale_if_match_is_412_with_current_and_changes_nothing(
        client: httpx.AsyncClient, server: Service, blog: str, editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "testo del primo")
    path = entry_path(blog, entry["id"])
    colleague = await client.patch(path, headers={**editor, "If-Match": '"1"'}, json={"body": "testo del collega"})
    assert colleague.status_code == 200, colleague.text
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        mine = await client.patch(path, headers={**editor, "If-Match": '"1"'}, json={"body": "testo mio"})
        assert mine.status_code == 412
        assert mine.headers["content-type"].startswith("application/problem+json")
        problem = mine.json()
        assert problem["status"] == 412 and problem["detail"]
        assert problem["current"]["version"] == 2 and problem["current"]["body"] == "testo del collega"
        assert mine.headers["etag"] == '"2"'
        # Nothing changed: same state, and no change reached readers (the next event is the marker).
        await client.patch(f"/api/blogs/{blog}", headers=editor, json={"title": "marcatore"})
        assert (await reader.next()).event == "blog.updated"
    now = (await client.get(path, headers=editor)).json()
    assert now["version"] == 2 and now["body"] == "testo del collega"
    # With the current version the edit goes through.
    ok = await client.patch(path, headers={**editor, "If-Match": '"2"'}, json={"body": "testo mio"})
    assert ok.status_code == 200 and ok.json()["version"] == 3


async def test_delete_with_a_stale_if_match_is_412_and_keeps_the_entry(client: httpx.AsyncClient, blog: str,
                                                                     editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "resta")
    path = entry_path(blog, entry["id"])
    await client.patch(path, headers=editor, json={"title": "cambiato"})
    refused = await client.delete(path, headers={**editor, "If-Match": '"1"'})
    assert refused.status_code == 412 and refused.json()["current"]["title"] == "cambiato"
    assert (await client.get(path)).status_code == 200
    assert (await client.delete(path, headers={**editor, "If-Match": '"5", "2"'})).status_code == 204
    assert (await client.get(path)).status_code == 404


@pytest.mark.parametrize(("header", "status"), [
    ('W/"1"', 412),      # weak tags never match (strong comparison)
    ("*", 200),          # any current version
    ('"1"', 200),
    ("1", 400),          # not an entity tag
    ('"uno"', 400),
])
async def test_if_match_forms(client: httpx.AsyncClient, blog: str, editor: dict[str, str], header: str,
                              status: int) -> None:
    entry = await post(client, blog, editor, "forme")
    response = await client.patch(entry_path(blog, entry["id"]), headers={**editor, "If-Match": header},
                                  json={"title": "nuovo"})
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_editors_read_the_source_and_nobody_else_does(client: httpx.AsyncClient, server: Service,
                                                            blog: str, editor: dict[str, str]) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        created = await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": SOURCE})
        entry = created.json()
        assert entry["body"] == SOURCE  # exactly as written, trailing newline and HTML included
        assert "<em>partnership</em>" in entry["body_html"]
        event = await reader.next()
        assert event.event == "entry.created" and "body" not in event.json
        assert event.json["body_html"] == entry["body_html"]
        edited = await client.patch(entry_path(blog, entry["id"]), headers=editor, json={"title": "solo titolo"})
        assert edited.json()["body"] == SOURCE  # a title edit leaves the source alone
        assert "body" not in (await reader.next()).json
        await client.delete(entry_path(blog, entry["id"]), headers=editor)
        assert "body" not in (await reader.next()).json

    again = await post(client, blog, editor, SOURCE)
    public_one = await client.get(entry_path(blog, again["id"]))
    assert "body" not in public_one.json() and "public" in public_one.headers.get("cache-control", "public")
    public_list = await client.get(f"/api/blogs/{blog}/entries")
    assert public_list.json()["entries"] and all("body" not in e for e in public_list.json()["entries"])
    assert "authorization" in public_list.headers["vary"].lower()
    for response in (await client.get(entry_path(blog, again["id"]), headers=editor),
                     await client.get(f"/api/blogs/{blog}/entries", headers=editor)):
        assert response.headers["cache-control"] == "private, no-store"
    assert (await client.get(entry_path(blog, again["id"]), headers=editor)).json()["body"] == SOURCE
    assert (await client.get(f"/api/blogs/{blog}/entries", headers=editor)).json()["entries"][0]["body"] == SOURCE
    # A bad token on a read is simply no editor: the public answer, not an error.
    bad = await client.get(entry_path(blog, again["id"]), headers={"Authorization": "Bearer lb_nope"})
    assert bad.status_code == 200 and "body" not in bad.json()


async def test_refused_posts_and_replays_use_no_id(client: httpx.AsyncClient, blog: str,
                                                   editor: dict[str, str]) -> None:
    first = await post(client, blog, editor, "uno")
    for refused in ({"body": "x", "title": 42}, {"body": "x", "author": ["no"]}, {"body": "x", "pinned": "sì"},
                    {"body": "   "}, {"body": "x", "colour": "red"}):
        response = await client.post(f"/api/blogs/{blog}/entries", headers=editor, json=refused)
        assert response.status_code == 422, response.text
    keyed = {**editor, "Idempotency-Key": "replay-1"}
    original = await client.post(f"/api/blogs/{blog}/entries", headers=keyed, json={"body": "due"})
    for _ in range(3):
        replay = await client.post(f"/api/blogs/{blog}/entries", headers=keyed, json={"body": "due"})
        assert replay.headers["idempotent-replayed"] == "true" and replay.json()["id"] == original.json()["id"]
    third = await post(client, blog, editor, "tre")
    assert [int(first["id"]), int(original.json()["id"]), int(third["id"])] == [
        int(first["id"]), int(first["id"]) + 1, int(first["id"]) + 2]
    assert original.json()["url"].endswith(f"/{original.json()['id']}")  # the id is in its link too
    stored = (await client.get(entry_path(blog, original.json()["id"]))).json()
    assert stored["id"] == original.json()["id"] and stored["url"] == original.json()["url"]


async def test_pinning_is_not_an_edit(client: httpx.AsyncClient, server: Service, blog: str,
                                      editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "da fissare")
    path = entry_path(blog, entry["id"])
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        pinned = (await client.patch(path, headers=editor, json={"pinned": True})).json()
        event = await reader.next()
    assert event.event == "entry.updated" and event.json["pinned"] is True  # open pages move it
    assert pinned["updated_at"] == entry["updated_at"] and pinned["updated_label"] is None
    assert pinned["version"] == 2  # still a new state: its ETag changes
    unpinned = (await client.patch(path, headers=editor, json={"pinned": False})).json()
    assert unpinned["updated_at"] == entry["updated_at"] and unpinned["updated_label"] is None
    page = (await client.get(f"/blogs/{blog}", headers={"Cache-Control": "no-cache"})).text
    article = page.split(f'id="aggiornamento-{entry["id"]}"')[1].split("</article>")[0]
    assert 'data-field="edited" hidden' in article  # no "aggiornato alle" on the page
    # A real edit does set it.
    edited = (await client.patch(path, headers=editor, json={"body": "corretto"})).json()
    assert edited["updated_at"] > entry["updated_at"] and edited["updated_label"]
