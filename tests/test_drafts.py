"""Drafts and scheduled entries: for editors only until published; publication is one entry.created.

All through real `liveblog serve`/`worker` processes on a real Redis.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from liveblog.config import SettingError, Settings
from liveblog.drafts import Drafts
from liveblog.redisconn import pool_client
from liveblog.scheduler import Scheduler
from liveblog.store import Store
from tests.conftest import RedisServer, Service, admin, free_port
from tests.receivers import Receiver, private_db, serving
from tests.sse_client import SSEClient
from tests.support import post

DB = 14  # scheduling tests run their own processes on a database of their own


def path(slug: str, entry_id: str = "") -> str:
    return f"/api/blogs/{slug}/entries" + (f"/{entry_id}" if entry_id else "")


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_a_draft_is_invisible_until_published_then_one_entry_created(
        client: httpx.AsyncClient, server: Service, blog: str, editor: dict[str, str]) -> None:
    before = await post(client, blog, editor, "pubblico prima")
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        made = await client.post(path(blog), headers=editor, json={"body": "SEGRETO bozza", "status": "draft"})
        assert made.status_code == 201, made.text
        draft = made.json()
        assert draft["status"] == "draft" and draft["id"].startswith("d") and draft["body"] == "SEGRETO bozza"
        edited = await client.patch(path(blog, draft["id"]), headers=editor, json={"body": "SEGRETO ritoccata"})
        assert edited.status_code == 200 and edited.json()["version"] == 2
        # Nowhere public: API list, the entry itself, the page, both feeds.
        listed = (await client.get(path(blog))).json()["entries"]
        assert [entry["id"] for entry in listed] == [before["id"]]
        assert (await client.get(path(blog, draft["id"]))).status_code == 401
        for url in (f"/blogs/{blog}", f"/blogs/{blog}/feed.atom", f"/blogs/{blog}/feed.json"):
            page = await client.get(url)
            assert page.status_code == 200 and "SEGRETO" not in page.text and draft["id"] not in page.text
        # Editors see it.
        drafts = (await client.get(path(blog), params={"status": "draft"}, headers=editor)).json()["entries"]
        assert [(d["id"], d["body"]) for d in drafts] == [(draft["id"], "SEGRETO ritoccata")]
        # Publishing: exactly one entry.created, the first event this reader gets.
        published = await client.patch(path(blog, draft["id"]), headers=editor, json={"status": "published"})
        assert published.status_code == 200, published.text
        entry = published.json()
        assert entry["status"] == "published" and entry["id"] == str(int(before["id"]) + 1)
        assert entry["body_html"] == "<p>SEGRETO ritoccata</p>" and entry["published_at"] >= draft["published_at"]
        await client.patch(f"/api/blogs/{blog}", headers=editor, json={"title": "marcatore"})
        events = await reader.until(lambda event: event.event == "blog.updated")
    assert [(e.event, e.json["id"]) for e in events[:-1]] == [("entry.created", entry["id"])]
    assert "SEGRETO" not in events[-1].data
    assert (await client.get(path(blog, draft["id"]), headers=editor)).status_code == 404
    listed = (await client.get(path(blog))).json()["entries"]
    assert [e["id"] for e in listed] == [entry["id"], before["id"]]


async def test_unpublished_lists_need_an_editor_and_publish_at_must_be_future(
        client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    for status in ("draft", "scheduled"):
        assert (await client.get(path(blog), params={"status": status})).status_code == 401
    assert (await client.get(path(blog), params={"status": "nonsense"})).status_code == 400
    past = await client.post(path(blog), headers=editor, json={"body": "x", "publish_at": soon(-60)})
    assert past.status_code == 422 and "future" in past.json()["detail"]
    made = await client.post(path(blog), headers=editor, json={"body": "x", "publish_at": soon(3600)})
    assert made.status_code == 201 and made.json()["status"] == "scheduled"
    listed = (await client.get(path(blog), params={"status": "scheduled"}, headers=editor)).json()["entries"]
    assert [e["id"] for e in listed] == [made.json()["id"]]
    assert (await client.get(path(blog), params={"status": "draft"}, headers=editor)).json()["entries"] == []
    assert (await client.get(path(blog))).json()["entries"] == []


def test_drafts_reach_no_webhook_and_publication_is_delivered_once(service_factory, redis_server: RedisServer
                                                                  ) -> None:  # type: ignore[no-untyped-def]
    url = private_db(redis_server, DB)
    with serving(service_factory, url, dispatcher=True) as api, Receiver() as receiver:
        slug = api.blog()
        sub = api.subscribe(receiver.url, [slug])
        draft = api.check(api.http.post(path(slug), json={"body": "SEGRETO", "status": "draft"}), 201)
        api.check(api.http.patch(path(slug, draft["id"]), json={"body": "SEGRETO 2"}), 200)
        entry = api.check(api.http.patch(path(slug, draft["id"]), json={"status": "published"}), 200)
        api.entry(slug, "marcatore")
        requests = receiver.wait_count(2)
        api.wait_deliveries(sub["id"], lambda log: len(log) >= 2)
    payloads = [request.verify(sub["secret"]) for request in requests]
    assert [(p["type"], p["data"]["id"]) for p in payloads[:1]] == [("entry.created", entry["id"])]
    assert payloads[1]["data"]["body_html"] == "<p>marcatore</p>"
    assert all(draft["id"] not in request.body.decode() for request in requests)


# ---- scheduling ---------------------------------------------------------------------------------

@pytest.fixture
def sched_url(redis_server: RedisServer) -> Iterator[str]:
    yield private_db(redis_server, DB)


def created_ids(url: str, slug: str) -> list[str]:
    """The ids of the blog's entry.created changes, in change order (what every reader and partner gets)."""
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [json.loads(fields["data"])["id"] for _sid, fields in r.xrange(f"lb:{{{slug}}}:stream")
                if fields["type"] == "entry.created"]
    finally:
        r.close()


def new_blog(http: httpx.Client) -> str:
    slug = f"sc-{uuid.uuid4().hex[:10]}"
    assert http.post("/api/blogs", json={"slug": slug, "title": "Programmati"}).status_code == 201
    return slug


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_scheduled_entries_go_out_once_with_two_servers_and_two_workers(
        service_factory, sched_url: str) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": sched_url}
    servers = [service_factory("serve", "--no-dispatcher", env=env) for _ in range(2)]
    workers = [service_factory("worker", env=env) for _ in range(2)]
    try:
        await _three_scheduled_go_out_once(servers, sched_url)
    finally:
        for service in (*servers, *workers):
            service.stop()


async def _three_scheduled_go_out_once(servers: list[Service], sched_url: str) -> None:
    async with httpx.AsyncClient(base_url=servers[0].url, headers=admin(), timeout=30) as http:
        slug = f"sc-{uuid.uuid4().hex[:10]}"
        assert (await http.post("/api/blogs", json={"slug": slug, "title": "Programmati"})).status_code == 201
        async with SSEClient(f"{servers[1].url}/blogs/{slug}/events") as reader:
            for i in range(3):
                made = await http.post(path(slug), json={"body": f"programmato {i}", "publish_at": soon(2 + i * 0.1)})
                assert made.status_code == 201, made.text
            events = [await reader.next(timeout=30) for _ in range(3)]
        assert [e.event for e in events] == ["entry.created"] * 3
        assert [e.json["body_html"] for e in events] == [f"<p>programmato {i}</p>" for i in range(3)]
        assert len(created_ids(sched_url, slug)) == 3
        assert (await http.get(path(slug), params={"status": "scheduled"})).json()["entries"] == []
        assert len((await http.get(path(slug))).json()["entries"]) == 3


def test_entries_due_while_nothing_ran_go_out_at_once_in_publish_at_order(
        service_factory, sched_url: str) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": sched_url}
    first = service_factory("serve", "--no-dispatcher", env=env)
    with httpx.Client(base_url=first.url, headers=admin(), timeout=30) as http:
        slug = new_blog(http)
        due = datetime.now(UTC) + timedelta(seconds=4)
        # Made in another order than they fall due.
        for i, offset in ((2, 0.4), (0, 0.0), (1, 0.2)):
            when = (due + timedelta(seconds=offset)).isoformat()
            made = http.post(path(slug), json={"body": f"n{i}", "publish_at": when})
            assert made.status_code == 201, made.text
    first.stop()
    wait_until(lambda: datetime.now(UTC) > due + timedelta(seconds=1), what="the due time to pass")
    assert created_ids(sched_url, slug) == []
    worker = service_factory("worker", env=env)
    try:
        wait_until(lambda: len(created_ids(sched_url, slug)) == 3, what="the three entries")
    finally:
        worker.stop()
    r = redis.Redis.from_url(sched_url, decode_responses=True)
    bodies = [json.loads(f["data"])["body_html"] for _s, f in r.xrange(f"lb:{{{slug}}}:stream")
              if f["type"] == "entry.created"]
    r.close()
    assert bodies == ["<p>n0</p>", "<p>n1</p>", "<p>n2</p>"]


def test_scheduler_interval_is_a_checked_setting() -> None:
    assert Settings.from_env({}).scheduler_interval_seconds == 0.5
    assert Settings.from_env({"LIVEBLOG_SCHEDULER_INTERVAL": "0.2"}).scheduler_interval_seconds == 0.2
    for bad in ("0", "-1", "3", "soon"):
        with pytest.raises(SettingError):
            Settings.from_env({"LIVEBLOG_SCHEDULER_INTERVAL": bad})


async def test_a_failing_scheduler_logs_keeps_its_pace_and_stops_promptly(caplog: pytest.LogCaptureFixture) -> None:
    redis_down = pool_client(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    scheduler = Scheduler(Drafts(Store(redis_down)), interval=0.05)
    scheduler.start()
    try:
        for _ in range(600):  # up to 30 s: wait until three rounds have failed
            if sum("scheduler:" in r.getMessage() for r in caplog.records) >= 3:
                break
            await asyncio.sleep(0.05)
        assert sum("scheduler:" in r.getMessage() for r in caplog.records) >= 3
    finally:
        await scheduler.stop()
        await redis_down.aclose()
    assert scheduler._task is not None and scheduler._task.done()


# ---- revisions ----------------------------------------------------------------------------------

async def test_every_version_is_kept_and_restoring_is_a_new_version(
        client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "prima *versione*")
    target = path(blog, entry["id"])
    assert (await client.patch(target, headers=editor, json={"body": "seconda", "title": "T2"})).status_code == 200
    assert (await client.patch(target, headers=editor, json={"pinned": True})).status_code == 200
    assert (await client.get(f"{target}/revisions")).status_code == 401
    revisions = (await client.get(f"{target}/revisions", headers=editor)).json()["revisions"]
    assert [(r["version"], r["body"], r["title"], r["by"]) for r in revisions] == [
        (1, "prima *versione*", None, "Redazione test"), (2, "seconda", "T2", "Redazione test"),
        (3, "seconda", "T2", "Redazione test")]
    assert revisions[2]["pinned"] is True and all(r["updated_at"] for r in revisions)
    # Restoring the first version is an ordinary PATCH: a fourth version.
    first = revisions[0]
    restored = await client.patch(target, headers=editor, json={"body": first["body"], "title": first["title"]})
    assert restored.json()["version"] == 4 and restored.json()["body_html"] == "<p>prima <em>versione</em></p>"
    revisions = (await client.get(f"{target}/revisions", headers=editor)).json()["revisions"]
    assert [r["version"] for r in revisions] == [1, 2, 3, 4] and revisions[3]["body"] == "prima *versione*"


async def test_a_drafts_revisions_follow_it_when_published(client: httpx.AsyncClient, blog: str,
                                                         editor: dict[str, str]) -> None:
    draft = (await client.post(path(blog), headers=editor, json={"body": "bozza 1", "status": "draft"})).json()
    await client.patch(path(blog, draft["id"]), headers=editor, json={"body": "bozza 2"})
    entry = (await client.patch(path(blog, draft["id"]), headers=editor, json={"status": "published"})).json()
    revisions = (await client.get(f"{path(blog, entry['id'])}/revisions", headers=editor)).json()["revisions"]
    assert [(r["version"], r["body"]) for r in revisions] == [(1, "bozza 1"), (2, "bozza 2")]
    assert (await client.get(f"{path(blog, draft['id'])}/revisions", headers=editor)).status_code == 404
