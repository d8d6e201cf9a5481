"""Atom and JSON Feed over real HTTP: structure per RFC 4287 / JSON Feed 1.1, edits and deletes,
sanitizing, validators and conditional GET."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import pytest

from liveblog import timefmt
from tests.support import assert_clean, post

A = "{http://www.w3.org/2005/Atom}"
FEEDS = ("feed.atom", "feed.json")


async def atom(client: httpx.AsyncClient, blog: str) -> ET.Element:
    response = await client.get(f"/blogs/{blog}/feed.atom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    return ET.fromstring(response.content)


async def json_feed(client: httpx.AsyncClient, blog: str) -> dict:
    response = await client.get(f"/blogs/{blog}/feed.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/feed+json")
    return response.json()


def one(parent: ET.Element, name: str) -> ET.Element:
    found = parent.findall(A + name)
    assert len(found) == 1, f"<{parent.tag}> must have exactly one <{name}>, has {len(found)}"
    return found[0]


def assert_date(value: str | None) -> datetime:
    """An RFC 3339 date-time with an offset (Atom date construct, JSON Feed dates)."""
    assert value, "empty date"
    return timefmt.parse_rfc3339(value)


async def test_atom_is_structurally_valid(client: httpx.AsyncClient, server, blog: str,
                                          editor: dict[str, str]) -> None:
    first = await post(client, blog, editor, body="Primo *aggiornamento*", title="Apertura", key_event=True)
    await post(client, blog, editor, body="Secondo aggiornamento, senza titolo ma con parole a sufficienza per "
                                          "un titolo ricavato dal testo stesso")
    feed = await atom(client, blog)

    assert feed.tag == A + "feed"
    assert feed.get("{http://www.w3.org/XML/1998/namespace}lang") == "it"
    assert one(feed, "id").text.startswith(("urn:", "tag:"))
    assert one(feed, "title").text == f"Blog {blog}"
    assert_date(one(feed, "updated").text)
    links = {(link.get("rel"), link.get("type")): link.get("href") for link in feed.findall(A + "link")}
    assert links[("self", "application/atom+xml")] == f"{server.url}/blogs/{blog}/feed.atom"
    assert links[("alternate", "text/html")] == f"{server.url}/blogs/{blog}"
    assert one(one(feed, "author"), "name").text  # every entry then has an author (RFC 4287 §4.1.1)

    entries = feed.findall(A + "entry")
    assert len(entries) == 2
    ids = set()
    for entry in entries:
        ids.add(one(entry, "id").text)
        assert one(entry, "title").text
        updated, published = assert_date(one(entry, "updated").text), assert_date(one(entry, "published").text)
        assert published <= updated
        link = one(entry, "link")
        assert link.get("rel") == "alternate" and "/updates/" in link.get("href")
        assert one(entry, "content").get("type") == "html"
        assert one(one(entry, "author"), "name").text == "Redazione test"
    assert len(ids) == 2 and all(i.startswith(("urn:", "tag:")) for i in ids)

    newest, oldest = entries
    assert one(newest, "title").text.startswith("Secondo aggiornamento, senza titolo")
    assert one(newest, "title").text.endswith("…")
    assert one(oldest, "title").text == "Apertura"
    assert one(oldest, "content").text == "<p>Primo <em>aggiornamento</em></p>"
    assert one(oldest, "link").get("href") == first["url"]
    assert [c.get("term") for c in oldest.findall(A + "category")] == ["key-event"]


async def test_json_feed_is_structurally_valid(client: httpx.AsyncClient, server, blog: str,
                                               editor: dict[str, str]) -> None:
    first = await post(client, blog, editor, body="Primo aggiornamento", title="Apertura")
    await post(client, blog, editor, body="![](https://example.org/a.png)")  # no words: the time is the title
    feed = await json_feed(client, blog)

    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == f"Blog {blog}"
    assert feed["home_page_url"] == f"{server.url}/blogs/{blog}"
    assert feed["feed_url"] == f"{server.url}/blogs/{blog}/feed.json"
    assert feed["language"] == "it"
    assert feed["expired"] is False
    assert isinstance(feed["items"], list) and len(feed["items"]) == 2
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item["url"], str) and "/updates/" in item["url"]
        assert isinstance(item["content_html"], str)
        assert isinstance(item["title"], str) and item["title"]
        assert assert_date(item["date_published"]) <= assert_date(item["date_modified"])
        assert item["authors"] == [{"name": "Redazione test"}]
    newest, oldest = feed["items"]
    assert newest["title"].startswith("Aggiornamento delle ")
    assert oldest["title"] == "Apertura" and oldest["url"] == first["url"]
    assert oldest["content_html"] == "<p>Primo aggiornamento</p>"


async def test_ids_are_shared_between_feeds_and_stable(client: httpx.AsyncClient, blog: str,
                                                       editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, body="uno")
    before = one(one(await atom(client, blog), "entry"), "id").text
    await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor, json={"body": "uno, corretto"})
    assert one(one(await atom(client, blog), "entry"), "id").text == before
    assert (await json_feed(client, blog))["items"][0]["id"] == before


async def test_edits_and_deletes_are_reflected(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    keep = await post(client, blog, editor, body="resta", title="Prima")
    gone = await post(client, blog, editor, body="sparisce")
    updated_before = one(await atom(client, blog), "updated").text

    edited = await client.patch(f"/api/blogs/{blog}/entries/{keep['id']}", headers=editor,
                                json={"body": "resta, **corretto**", "title": "Prima (corretta)"})
    assert edited.status_code == 200
    assert (await client.delete(f"/api/blogs/{blog}/entries/{gone['id']}", headers=editor)).status_code == 204

    feed = await atom(client, blog)
    entries = feed.findall(A + "entry")
    assert len(entries) == 1
    assert one(entries[0], "title").text == "Prima (corretta)"
    assert one(entries[0], "content").text == "<p>resta, <strong>corretto</strong></p>"
    assert assert_date(one(entries[0], "updated").text) > assert_date(one(entries[0], "published").text)
    assert assert_date(one(feed, "updated").text) > assert_date(updated_before)  # a delete moves it too

    items = (await json_feed(client, blog))["items"]
    assert [i["title"] for i in items] == ["Prima (corretta)"]
    assert items[0]["date_modified"] == edited.json()["updated_at"]


async def test_ended_blog_is_an_expired_json_feed(client: httpx.AsyncClient, blog: str,
                                                  editor: dict[str, str]) -> None:
    assert (await client.patch(f"/api/blogs/{blog}", headers=editor, json={"status": "ended"})).status_code == 200
    assert (await json_feed(client, blog))["expired"] is True


async def test_hostile_html_is_sanitized(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    await post(client, blog, editor, title="<script>alert(1)</script>Titolo",
               body='<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
                    '<iframe src="https://evil.example"></iframe><p style="color:red" onclick="alert(4)">ok</p>')
    content = one(one(await atom(client, blog), "entry"), "content").text
    item = (await json_feed(client, blog))["items"][0]
    for html in (content, item["content_html"]):
        assert_clean(html)
        assert "ok" in html
    assert "<" not in item["title"] and "script" not in item["title"]


@pytest.mark.parametrize("name", FEEDS)
async def test_etag_and_if_none_match(client: httpx.AsyncClient, blog: str, editor: dict[str, str],
                                      name: str) -> None:
    entry = await post(client, blog, editor, body="uno")
    first = await client.get(f"/blogs/{blog}/{name}")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")  # strong
    assert first.headers["cache-control"] == "public, max-age=5"
    assert parsedate_to_datetime(first.headers["last-modified"]) <= datetime.now(UTC)

    again = await client.get(f"/blogs/{blog}/{name}")
    assert again.headers["etag"] == etag and again.content == first.content

    cached = await client.get(f"/blogs/{blog}/{name}", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag and cached.headers["cache-control"] == "public, max-age=5"
    listed = await client.get(f"/blogs/{blog}/{name}", headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    assert (await client.get(f"/blogs/{blog}/{name}", headers={"If-None-Match": '"other"'})).status_code == 200

    await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor, json={"body": "uno, bis"})
    changed = await client.get(f"/blogs/{blog}/{name}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert b"uno, bis" in changed.content


@pytest.mark.parametrize("name", FEEDS)
async def test_if_modified_since(client: httpx.AsyncClient, blog: str, editor: dict[str, str], name: str) -> None:
    await post(client, blog, editor, body="uno")
    now = datetime.now(UTC)
    fresh = await client.get(f"/blogs/{blog}/{name}", headers={"If-Modified-Since": format_datetime(now, usegmt=True)})
    assert fresh.status_code == 304 and fresh.headers["etag"]
    stale = await client.get(f"/blogs/{blog}/{name}",
                             headers={"If-Modified-Since": format_datetime(now - timedelta(hours=1), usegmt=True)})
    assert stale.status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    both = await client.get(f"/blogs/{blog}/{name}", headers={
        "If-None-Match": '"other"', "If-Modified-Since": format_datetime(now, usegmt=True)})
    assert both.status_code == 200
    garbage = await client.get(f"/blogs/{blog}/{name}", headers={"If-Modified-Since": "yesterday-ish"})
    assert garbage.status_code == 200


async def test_last_modified_never_hides_a_later_change(client: httpx.AsyncClient, blog: str,
                                                         editor: dict[str, str]) -> None:
    """Whatever Last-Modified a client was given, sending it back after a change gets the new feed."""
    entry = await post(client, blog, editor, body="uno")
    first = await client.get(f"/blogs/{blog}/feed.json")
    await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor, json={"body": "uno, bis"})
    after = await client.get(f"/blogs/{blog}/feed.json", headers={"If-Modified-Since": first.headers["last-modified"]})
    assert after.status_code == 200 and b"uno, bis" in after.content


@pytest.mark.parametrize("name", FEEDS)
async def test_unknown_blog_is_a_problem(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/blogs/no-such-blog-here/{name}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 404 and problem["title"] and "no-such-blog-here" in problem["detail"]


async def test_feed_is_capped_and_newest_first(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    for n in range(55):
        await post(client, blog, editor, body=f"numero {n}")
    items = (await json_feed(client, blog))["items"]
    assert len(items) == 50
    assert items[0]["content_html"] == "<p>numero 54</p>" and items[-1]["content_html"] == "<p>numero 5</p>"
    assert len((await atom(client, blog)).findall(A + "entry")) == 50
