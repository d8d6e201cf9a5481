"""Presentation at read time: links and time labels are computed when served, never stored.

The end-to-end test writes a blog under one ``LIVEBLOG_PUBLIC_URL``, plants an entry as the previous
version stored it (with its own url and labels), restarts ``serve`` under another public URL, and
checks every way out: API, SSE catch-up, live SSE, the page and its JSON-LD, Atom, JSON Feed and
webhook payloads (live and replayed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
import redis

from liveblog import keys
from liveblog.present import Presenter
from tests.conftest import RedisServer, admin
from tests.receivers import Receiver, private_db
from tests.sse_client import SSEClient

DB = 8
OLD = "https://old.example"
NEW = "https://live.ore12.example"
TZ = "America/New_York"
LINK = re.compile(r"https?://[^\s\"'<>#]+")


def label(stamp: str, tz: str = TZ) -> str:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(ZoneInfo(tz)).strftime("%H.%M")


def assert_links_new(text: str) -> None:
    """Every absolute link of this service in ``text`` is under the new public URL."""
    assert OLD not in text and "stale.invalid" not in text
    ours = [link for link in LINK.findall(text) if "example" in link or "invalid" in link]
    assert ours and all(link.startswith(NEW) for link in ours), ours


def assert_entry_presented(entry: dict[str, Any], slug: str) -> None:
    assert entry["url"] == f"{NEW}/blogs/{slug}/updates/{entry['id']}"
    assert entry["time_label"] == label(entry["published_at"])
    edited = entry["updated_at"] > entry["published_at"]
    assert entry["updated_label"] == (label(entry["updated_at"]) if edited else None)


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return private_db(redis_server, DB)


@pytest.fixture(scope="module")
def written(service_factory, redis_url: str) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """A blog with entries written under ``OLD`` (then that server stops), one of them as the
    previous version stored it: with a stale url and labels in its state and its stream item."""
    old = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_REDIS_URL": redis_url,
                                                           "LIVEBLOG_PUBLIC_URL": OLD})
    slug = "moved-host"
    with httpx.Client(base_url=old.url, headers=admin(), timeout=10) as http:
        assert http.post("/api/blogs", json={"slug": slug, "title": "Trasloco", "timezone": TZ}).status_code == 201
        first = http.post(f"/api/blogs/{slug}/entries", json={"body": "primo", "title": "Uno"}).json()
        second = http.post(f"/api/blogs/{slug}/entries", json={"body": "secondo"}).json()
        http.patch(f"/api/blogs/{slug}/entries/{second['id']}", json={"body": "secondo, corretto"})
    old.stop()
    db = redis.Redis.from_url(redis_url, decode_responses=True)
    stored = orjson.loads(db.hget(keys.entries(slug), first["id"]))
    assert not {"url", "time_label", "updated_label"} & set(stored)  # facts only
    stale = {**stored, "url": f"http://stale.invalid/blogs/{slug}#aggiornamento-{first['id']}",
             "time_label": "99.99", "updated_label": "98.98"}
    db.hset(keys.entries(slug), first["id"], orjson.dumps(stale))
    db.xadd(keys.stream(slug), {"type": "entry.updated", "data": orjson.dumps(stale)})
    first_change = db.xrange(keys.stream(slug), count=1)[0][0]
    db.close()
    yield {"slug": slug, "first_change": first_change, "ids": [first["id"], second["id"]]}


@pytest.fixture(scope="module")
def moved(service_factory, redis_url: str, written: dict[str, Any]) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """``serve`` (with its webhook dispatcher) restarted under the new public URL."""
    service = service_factory("serve", env={"LIVEBLOG_REDIS_URL": redis_url, "LIVEBLOG_PUBLIC_URL": NEW})
    yield service.url
    service.stop()


def test_api_links_and_labels_follow_the_current_public_url(moved: str, written: dict[str, Any]) -> None:
    slug = written["slug"]
    with httpx.Client(base_url=moved, timeout=10) as http:
        blog = http.get(f"/api/blogs/{slug}").json()
        listed = http.get("/api/blogs").json()["blogs"]
        entries = http.get(f"/api/blogs/{slug}/entries").json()["entries"]
        one = http.get(f"/api/blogs/{slug}/entries/{written['ids'][0]}").json()
    assert blog["urls"]["page"] == f"{NEW}/blogs/{slug}" and blog["urls"]["api"] == f"{NEW}/api/blogs/{slug}"
    assert_links_new(json.dumps([blog, listed, entries, one]))
    assert len(entries) == 2
    for entry in [*entries, one]:
        assert_entry_presented(entry, slug)
    assert one["time_label"] != "99.99" and one["updated_label"] is None
    assert entries[0]["updated_label"] is not None  # the edited one


async def test_sse_catch_up_and_live_links_follow_the_current_public_url(moved: str, written: dict[str, Any]
                                                                         ) -> None:
    slug = written["slug"]
    async with SSEClient(f"{moved}/blogs/{slug}/events", last_event_id=written["first_change"]) as reader:
        caught_up = await reader.take(4)  # created, created, updated, the stale-format updated
        async with httpx.AsyncClient(base_url=moved, headers=admin(), timeout=10) as http:
            response = await http.patch(f"/api/blogs/{slug}/entries/{written['ids'][0]}", json={"key_event": True})
            assert response.status_code == 200
        live = await reader.next()
    assert [e.event for e in caught_up] == ["entry.created", "entry.created", "entry.updated", "entry.updated"]
    assert live.event == "entry.updated" and live.json["key_event"] is True
    assert_links_new(" ".join(e.data for e in [*caught_up, live]))
    for event in [*caught_up, live]:
        assert_entry_presented(event.json, slug)


def test_page_jsonld_and_feeds_follow_the_current_public_url(moved: str, written: dict[str, Any]) -> None:
    slug = written["slug"]
    with httpx.Client(base_url=moved, timeout=10) as http:
        page = http.get(f"/blogs/{slug}").text
        embed = http.get(f"/blogs/{slug}/embed").text
        atom = http.get(f"/blogs/{slug}/feed.atom").text
        feed = http.get(f"/blogs/{slug}/feed.json").json()
    assert_links_new(page)
    assert_links_new(embed)
    assert_links_new(atom)
    assert_links_new(json.dumps(feed))
    assert f'<link rel="canonical" href="{NEW}/blogs/{slug}">' in page
    jsonld = json.loads(re.search(r'<script type="application/ld\+json"[^>]*>(.*?)</script>', page, re.S)[1])
    assert jsonld["url"] == f"{NEW}/blogs/{slug}"
    assert {u["url"] for u in jsonld["liveBlogUpdate"]} == {
        f"{NEW}/blogs/{slug}/updates/{entry_id}" for entry_id in written["ids"]}
    assert {item["url"] for item in feed["items"]} == {
        f"{NEW}/blogs/{slug}/updates/{entry_id}" for entry_id in written["ids"]}
    assert f'<link rel="alternate" type="text/html" href="{NEW}/blogs/{slug}/updates/' in atom


def test_webhook_payloads_follow_the_current_public_url(moved: str, written: dict[str, Any]) -> None:
    slug = written["slug"]
    with Receiver() as receiver, httpx.Client(base_url=moved, headers=admin(), timeout=10) as http:
        sub = http.post("/api/webhooks", json={"url": receiver.url, "blogs": [slug]}).json()
        response = http.patch(f"/api/blogs/{slug}/entries/{written['ids'][1]}", json={"title": "Nuovo titolo"})
        assert response.status_code == 200
        live = receiver.wait_count(1)[0].verify(sub["secret"])
        assert http.post(f"/api/webhooks/{sub['id']}/replay", json={"since_event_id": "0"}).status_code == 202
        replayed = [r.verify(sub["secret"]) for r in receiver.wait_for(
            lambda r: len({x.webhook_id for x in r}) >= 6, 30, "the replayed changes")]
    assert live["data"]["title"] == "Nuovo titolo"
    entries = [p["data"] for p in [live, *replayed] if p["type"].startswith("entry.")]
    assert len(entries) >= 5
    assert_links_new(json.dumps(entries))
    for entry in entries:
        assert_entry_presented(entry, slug)


# ---- the presenter itself (no server) ---------------------------------------------------------

STORED = {"id": "7", "blog": "b", "title": None, "body": "**x**", "body_html": "<p><strong>x</strong></p>",
          "author": None, "published_at": "2026-07-01T12:25:00.000Z", "updated_at": "2026-07-01T12:25:00.000Z",
          "key_event": False, "pinned": True, "version": 2}


def test_public_presentation_leaves_out_the_editor_only_source() -> None:
    presenter = Presenter("https://x.example/")
    public = presenter.entry(STORED, "Europe/Rome")
    assert "body" not in public and public["url"] == "https://x.example/blogs/b/updates/7"
    assert presenter.entry(STORED, "Europe/Rome", for_editor=True)["body"] == "**x**"
    assert "body" not in orjson.loads(presenter.change("entry.updated", orjson.dumps(STORED).decode(), "UTC"))


def test_labels_come_from_utc_times_in_the_timezone_given_when_served() -> None:
    presenter = Presenter("https://x.example")
    assert presenter.entry(STORED, "Europe/Rome")["time_label"] == "14.25"
    assert presenter.entry(STORED, "America/New_York")["time_label"] == "08.25"
    # Not edited since publication (a pin bumps the version, not the edit time): no "aggiornato alle".
    assert presenter.entry(STORED, "Europe/Rome")["updated_label"] is None
    edited = {**STORED, "updated_at": "2026-07-01T13:00:00.000Z"}
    assert presenter.entry(edited, "Europe/Rome")["updated_label"] == "15.00"
