"""The live page and the embed over plain HTTP: server rendering, JSON-LD, caching, CSP, 404, no-JS paging."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from html.parser import HTMLParser
from typing import Any

from tests.conftest import admin
from tests.sse_client import SSEClient
from tests.support import post


class Scripts(HTMLParser):
    """Collects <script> elements (type and text) and elements carrying event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[str, str]] = []
        self.handlers: list[tuple[str, str]] = []
        self._type: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [(tag, name) for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self._type = dict(attrs).get("type") or "text/javascript"
            self.scripts.append((self._type, ""))

    def handle_data(self, data: str) -> None:
        if self._type is not None:
            kind, text = self.scripts[-1]
            self.scripts[-1] = (kind, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._type = None


def parse(html: str) -> Scripts:
    parser = Scripts()
    parser.feed(html)
    return parser


def block(html: str, kind: str) -> Any:
    found = [text for t, text in parse(html).scripts if t == kind]
    assert len(found) == 1, f"expected one {kind} block, found {len(found)}"
    return json.loads(found[0])


async def test_live_page_is_server_rendered_cacheable_and_locked_down(client, blog, editor) -> None:
    first = await post(client, blog, editor, body="Prima notizia", title="Apertura", author="Anna")
    pinned = await post(client, blog, editor, body="Riepilogo", pinned=True)
    key = await post(client, blog, editor, body="Svolta", key_event=True)
    response = await client.get(f"/blogs/{blog}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "public" in response.headers["cache-control"] and "max-age=5" in response.headers["cache-control"]
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    html = response.text
    # Works without JavaScript: every update is in the HTML, pinned first, then newest first.
    order = re.findall(r'<article class="lb-entry[^"]*"\s+id="aggiornamento-(\d+)"', html)
    assert order == [pinned["id"], key["id"], first["id"]]
    assert "aggiornamento ore</span>" in html and f">{first['time_label']}</time>" in html
    assert "Apertura" in html and "Anna" in html and "Momento chiave" in html and "In evidenza" in html
    assert f'href="{first["url"]}"' in html  # share link: the update's own page
    # No inline code: only data blocks and /static scripts.
    for kind, text in parse(html).scripts:
        assert kind in ("application/json", "application/ld+json") or not text.strip()
    assert 'src="/static/live.js?v=' in html


async def test_page_resumes_the_stream_from_its_render_point(client, server, blog, editor) -> None:
    """The ID embedded at render time replays exactly what happened after the render."""
    await post(client, blog, editor, body="già sulla pagina")
    config = block((await client.get(f"/blogs/{blog}")).text, "application/json")
    assert config["stream"] is True and config["events"] == f"/blogs/{blog}/events"
    later = await post(client, blog, editor, body="arrivato dopo il render")
    async with SSEClient(f"{server.url}{config['events']}", params={"last_event_id": config["after"]}) as sse:
        event = await sse.next()
    assert (event.event, event.json["id"]) == ("entry.created", later["id"])


async def test_json_ld_live_blog_posting_follows_edits_deletions_and_the_end(client, blog, editor) -> None:
    one = await post(client, blog, editor, title="Primo", body="Testo **uno**", author="Anna")
    two = await post(client, blog, editor, body="Senza titolo, solo testo")
    doc = block((await client.get(f"/blogs/{blog}")).text, "application/ld+json")
    assert doc["@context"] == "https://schema.org" and doc["@type"] == "LiveBlogPosting"
    assert doc["headline"] == f"Blog {blog}" and doc["coverageStartTime"]
    assert "coverageEndTime" not in doc
    updates = {item["url"]: item for item in doc["liveBlogUpdate"]}
    assert list(updates) == [two["url"], one["url"]]
    item = updates[one["url"]]
    assert item["url"].endswith(f"/blogs/{blog}/updates/{one['id']}")
    assert item["@type"] == "BlogPosting" and item["headline"] == "Primo"
    assert item["articleBody"] == "Testo uno" and item["author"] == {"@type": "Person", "name": "Anna"}
    assert item["datePublished"] == one["published_at"] == item["dateModified"]
    assert updates[two["url"]]["headline"] == "Senza titolo, solo testo"

    edited = (await client.patch(f"/api/blogs/{blog}/entries/{one['id']}", headers=editor,
                                 json={"body": "Testo corretto"})).json()
    assert (await client.delete(f"/api/blogs/{blog}/entries/{two['id']}", headers=editor)).status_code == 204
    assert (await client.patch(f"/api/blogs/{blog}", headers=editor, json={"status": "ended"})).status_code == 200
    doc = block((await client.get(f"/blogs/{blog}")).text, "application/ld+json")
    [item] = doc["liveBlogUpdate"]
    assert item["articleBody"] == "Testo corretto"
    assert item["datePublished"] == one["published_at"]  # never changes
    assert item["dateModified"] == edited["updated_at"] != one["published_at"]
    assert doc["coverageEndTime"] >= doc["coverageStartTime"]


async def test_script_breakout_and_hostile_html_stay_inert(client, blog, editor) -> None:
    title = '</script><script>alert("t")</script><!--'
    await post(client, blog, editor, title=title, author="</script><script>alert(1)</script>",
               body='<img src=x onerror="alert(2)"><script>alert(3)</script><a href="javascript:alert(4)">x</a> ok')
    html = (await client.get(f"/blogs/{blog}")).text
    parsed = parse(html)
    assert parsed.handlers == []
    assert all(kind != "text/javascript" or not text.strip() for kind, text in parsed.scripts)
    assert "alert(3)" not in html and "javascript:" not in html
    # The data blocks still parse, and say exactly what was typed (tags stripped from plain fields).
    ld = block(html, "application/ld+json")
    assert "script" not in ld["liveBlogUpdate"][0]["headline"]
    assert block(html, "application/json")["slug"] == blog


async def test_labels_follow_the_blog_language(client, editor) -> None:
    slug = f"en-{uuid.uuid4().hex[:8]}"
    created = await client.post("/api/blogs", headers=admin(),
                                json={"slug": slug, "title": "Election night", "language": "en",
                                      "timezone": "America/New_York"})
    assert created.status_code == 201
    entry = await post(client, slug, editor, body="Polls close", key_event=True)
    html = (await client.get(f"/blogs/{slug}")).text
    assert '<html lang="en">' in html
    assert "update at</span>" in html and "Key event" in html and "In diretta" not in html
    assert f">{entry['time_label'].replace('.', ':')}</time>" in html


async def test_older_updates_without_javascript_and_the_api_cursor(client, blog, editor) -> None:
    ids = [(await post(client, blog, editor, body=f"numero {n}"))["id"] for n in range(23)]
    html = (await client.get(f"/blogs/{blog}")).text
    shown = re.findall(r'id="aggiornamento-(\d+)"', html)
    assert shown == ids[::-1][:20]
    config = block(html, "application/json")
    assert config["next"] == f"/api/blogs/{blog}/entries?limit=20&before={ids[3]}"
    more = re.search(r'<a class="lb-older" data-lb-older href="([^"]+)"[^>]*>Carica aggiornamenti precedenti</a>', html)
    assert more and more.group(1) == f"/blogs/{blog}?before={ids[3]}"
    archive = (await client.get(more.group(1))).text
    assert re.findall(r'id="aggiornamento-(\d+)"', archive) == ids[2::-1]
    assert block(archive, "application/json")["stream"] is False
    older = (await client.get(config["next"])).json()
    assert [e["id"] for e in older["entries"]] == ids[2::-1] and older["next"] is None


async def test_embed_is_minimal_and_frameable(client, blog, editor) -> None:
    await post(client, blog, editor, body="Dentro il riquadro")
    response = await client.get(f"/blogs/{blog}/embed")
    assert response.status_code == 200
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    html = response.text
    assert "Dentro il riquadro" in html
    assert "application/ld+json" not in html and 'name="robots" content="noindex"' in html
    assert block(html, "application/json")["embed"] is True


async def test_unknown_blog_is_an_html_404(client) -> None:
    for path in ("/blogs/no-such-blog", "/blogs/no-such-blog/embed", "/blogs/NOT_A_SLUG"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "Pagina non trovata" in response.text


async def test_static_files_are_versioned_and_cached(client, blog) -> None:
    html = (await client.get(f"/blogs/{blog}")).text
    script = re.search(r'src="(/static/live\.js\?v=[0-9a-f]+)"', html)
    assert script
    response = await client.get(script.group(1))
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert "immutable" in response.headers["cache-control"] and response.headers.get("etag")
    assert "max-age=300" in (await client.get("/static/live.css")).headers["cache-control"]
    assert (await client.get("/static/nope.js")).status_code == 404


async def test_only_the_current_version_of_a_static_file_is_cached_for_good(client, blog) -> None:
    html = (await client.get(f"/blogs/{blog}")).text
    current = re.search(r'src="/static/live\.js\?v=([0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
    assert "immutable" in (await client.get(f"/static/live.js?v={current}")).headers["cache-control"]
    for query in ("v=0123456789ab", "v=", f"nav={current}", f"xv={current}&y=1", f"v={current}&v=other"):
        response = await client.get(f"/static/live.js?{query}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=300", query


class Fields(HTMLParser):
    """Text of each ``data-field`` element, per entry id (``data-id``) of the rendered updates."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, dict[str, str]] = {}
        self._entry: str | None = None
        self._open: list[str | None] = []  # the data-field (or None) of each open element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "article" and found.get("data-id"):
            self._entry = found["data-id"]
            self.entries[self._entry] = {}
        if tag not in ("img", "br", "hr", "input", "meta", "link"):
            self._open.append(found.get("data-field"))
        if self._entry and found.get("data-field"):
            self.entries[self._entry].setdefault(found["data-field"], "")  # type: ignore[arg-type]

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()
        if tag == "article":
            self._entry = None

    def handle_data(self, data: str) -> None:
        if self._entry:
            for name in {n for n in self._open if n}:
                self.entries[self._entry][name] += data


async def test_untitled_anonymous_entries_render_no_none(client, blog, editor) -> None:
    bare = await post(client, blog, editor, body="Solo il testo", author=None)
    for path in (f"/blogs/{blog}", f"/blogs/{blog}/embed"):
        parser = Fields()
        parser.feed((await client.get(path)).text)
        fields = parser.entries[bare["id"]]
        assert fields["title"].strip() == "" and fields["author"].strip() == "", (path, fields)
        assert "None" not in "".join(fields.values()), (path, fields)


def _rendered_order(html: str) -> list[tuple[str, bool]]:
    """(entry id, shown as pinned) in the order the page renders its updates."""
    return [(m.group(2), m.group(1) is not None)
            for m in re.finditer(r'<article class="lb-entry[^"]*?( is-pinned)?[^"]*"\s+id="aggiornamento-(\d+)"', html)]


async def test_pinned_updates_render_first_and_follow_pin_unpin_delete(client, blog, editor) -> None:
    old = (await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": "vecchio"})).json()
    for i in range(25):  # more than a page, so the old one is not among the newest unpinned
        await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": f"n{i}"})
    await client.patch(f"/api/blogs/{blog}/entries/{old['id']}", headers=editor, json={"pinned": True})
    order = _rendered_order((await client.get(f"/blogs/{blog}")).text)
    assert order[0] == (old["id"], True) and sum(pinned for _, pinned in order) == 1
    assert len(order) == 21  # the pinned one + one page of the newest

    await client.patch(f"/api/blogs/{blog}/entries/{old['id']}", headers=editor, json={"pinned": False})
    assert old["id"] not in [i for i, _ in _rendered_order((await client.get(f"/blogs/{blog}")).text)]

    await client.patch(f"/api/blogs/{blog}/entries/{old['id']}", headers=editor, json={"pinned": True})
    await client.delete(f"/api/blogs/{blog}/entries/{old['id']}", headers=editor)
    order = _rendered_order((await client.get(f"/blogs/{blog}")).text)
    assert old["id"] not in [i for i, _ in order] and not any(pinned for _, pinned in order)


class Rendered(HTMLParser):
    """What a live page shows: entry id -> version, and the blog title."""

    def __init__(self) -> None:
        super().__init__()
        self.versions: dict[str, int] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "article" and found.get("data-id"):
            self.versions[found["data-id"]] = int(found["data-version"] or 0)  # type: ignore[arg-type]
        self._in_title = tag == "h1" and "data-lb-title" in found

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


async def test_page_rendered_during_writes_resumes_with_no_gap_and_no_duplicate(client, server, blog, editor) -> None:
    """Pages loaded while an editor creates, edits, pins, deletes and retitles: each page, replayed from
    its resume point, gets exactly the changes it does not show (every one once, in version order)."""
    pages: list[str] = []
    writing = True

    async def write() -> None:
        nonlocal writing
        live: list[str] = []
        try:
            for i in range(60):
                if i % 3 == 0 or not live:
                    live.append((await post(client, blog, editor, body=f"n. {i}"))["id"])
                elif i % 3 == 1:
                    change = {"body": f"n. {i} corretto"} if i % 2 else {"pinned": i % 4 == 1}
                    response = await client.patch(f"/api/blogs/{blog}/entries/{live[i % len(live)]}",
                                                  headers=editor, json=change)
                    assert response.status_code == 200, response.text
                elif i % 5 == 2 and len(live) > 3:
                    response = await client.delete(f"/api/blogs/{blog}/entries/{live.pop(0)}", headers=editor)
                    assert response.status_code == 204
                else:
                    response = await client.patch(f"/api/blogs/{blog}", headers=editor, json={"title": f"Titolo {i}"})
                    assert response.status_code == 200, response.text
        finally:
            writing = False

    async def read() -> None:
        while writing:
            pages.append((await client.get(f"/blogs/{blog}")).text)

    await asyncio.gather(write(), read(), read(), read())
    final = (await client.get(f"/blogs/{blog}")).text
    end = block(final, "application/json")["after"]
    truth = Rendered()
    truth.feed(final)
    assert len(truth.versions) < 20  # all of them fit on one page, so every page shows every entry
    checked = 0
    for html in {block(p, "application/json")["after"]: p for p in pages}.values():
        shown = Rendered()
        shown.feed(html)
        after = block(html, "application/json")["after"]
        if after != end:
            async with SSEClient(f"{server.url}/blogs/{blog}/events", params={"last_event_id": after}) as sse:
                for event in await sse.until(lambda e: e.id == end):
                    data = event.json
                    if event.event == "entry.created":
                        assert data["id"] not in shown.versions, f"{data['id']} shown and replayed"
                        shown.versions[data["id"]] = data["version"]
                    elif event.event == "entry.updated":
                        assert data["version"] == shown.versions[data["id"]] + 1, (data, shown.versions)
                        shown.versions[data["id"]] = data["version"]
                    elif event.event == "entry.deleted":
                        del shown.versions[data["id"]]
                    elif event.event == "blog.updated":
                        shown.title = data["title"]
        assert (shown.versions, shown.title.strip()) == (truth.versions, truth.title.strip())
        checked += 1
    assert checked > 10
