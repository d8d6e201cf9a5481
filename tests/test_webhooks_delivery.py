"""Webhook deliveries end to end: `liveblog serve` (API) + `liveblog worker` + real receivers.

The worker here uses a 1 s attempt timeout, a 1 s claim idle time and the 0.2 s retry schedule
(4 attempts) from the test environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import RedisServer, Service, wait_until
from tests.receivers import Api, Receiver, Reply, private_db, sequence, serving

DB = 12
WORKER_ENV = {"LIVEBLOG_WEBHOOK_TIMEOUT": "1", "LIVEBLOG_WEBHOOK_CLAIM_IDLE": "1"}


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return private_db(redis_server, DB)


@pytest.fixture(scope="module")
def api(service_factory, redis_url: str) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    with serving(service_factory, redis_url) as api:
        yield api


@pytest.fixture(scope="module")
def worker(service_factory, redis_url: str, api: Api) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    # Links in payloads are built by the worker when it takes a change in: same public URL as the API.
    public_url = str(api.http.base_url).rstrip("/")
    env = {"LIVEBLOG_REDIS_URL": redis_url, "LIVEBLOG_PUBLIC_URL": public_url, **WORKER_ENV}
    service: Service = service_factory("worker", env=env)
    yield service
    service.stop()


def test_signed_payloads_for_created_updated_deleted(api: Api, worker: Service) -> None:
    slug = api.blog()
    with Receiver() as receiver:
        sub = api.subscribe(receiver.url, [slug])
        assert sub["secret"].startswith("whsec_") and sub["state"] == "active"
        entry = api.entry(slug, "Primo *aggiornamento*", title="Apertura", key_event=True)
        edited = api.check(api.http.patch(f"/api/blogs/{slug}/entries/{entry['id']}", json={"body": "Corretto"}), 200)
        assert api.http.delete(f"/api/blogs/{slug}/entries/{entry['id']}").status_code == 204
        requests = receiver.wait_count(3)
    payloads = {}
    for request in requests:
        assert request.method == "POST" and request.headers["content-type"] == "application/json"
        payload = request.verify(sub["secret"])  # raises unless the signature is right
        assert set(payload) == {"type", "timestamp", "data"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["timestamp"])
        assert request.webhook_id.startswith("msg_") and "." not in request.webhook_id
        payloads[payload["type"]] = payload["data"]
    assert set(payloads) == {"entry.created", "entry.updated", "entry.deleted"}
    # The editor's answer carries the source; partners get everything else, not the source.
    assert entry.pop("body") == "Primo *aggiornamento*" and edited.pop("body") == "Corretto"
    assert payloads["entry.created"] == entry
    assert payloads["entry.updated"] == edited and payloads["entry.updated"]["version"] == 2
    assert not any("body" in data for data in payloads.values())
    deleted = payloads["entry.deleted"]
    assert deleted["deleted"] is True and deleted["id"] == entry["id"] and deleted["blog"] == slug
    for field in ("id", "blog", "title", "body_html", "author", "published_at", "time_label", "key_event",
                  "pinned", "version", "updated_at"):
        assert field in payloads["entry.created"]
    assert len({r.webhook_id for r in requests}) == 3
    api.wait_deliveries(sub["id"], lambda log: len(log) == 3)
    shown = api.subscription(sub["id"])
    assert "secret" not in shown and shown["delivered_total"] == 3 and shown["last_success_at"]


def test_two_failures_then_success_on_third_attempt(api: Api, worker: Service) -> None:
    slug = api.blog()
    with Receiver(sequence(Reply(500), Reply(500))) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        api.entry(slug)
        requests = receiver.wait_count(3)
        log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "delivered" for e in d))
    assert len({r.webhook_id for r in requests}) == 1  # the same message each time
    for request in requests:
        request.verify(sub["secret"])
    assert [(e["attempt"], e["status"], e["outcome"]) for e in reversed(log)] == [
        (1, 500, "retrying"), (2, 500, "retrying"), (3, 200, "delivered")]
    shown = api.subscription(sub["id"])
    assert shown["consecutive_failures"] == 0 and shown["state"] == "active" and shown["pending"] == 0


def test_client_error_is_retried_then_failed_and_replay_resends(api: Api, worker: Service) -> None:
    slug = api.blog()
    with Receiver(sequence(*[Reply(400, body=b"bad payload " * 200)] * 4)) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        entry = api.entry(slug)
        log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "failed" for e in d))
        assert [(e["attempt"], e["status"]) for e in reversed(log)] == [(1, 400), (2, 400), (3, 400), (4, 400)]
        assert log[0]["response"].startswith("bad payload") and len(log[0]["response"]) <= 500
        shown = api.subscription(sub["id"])
        assert shown["consecutive_failures"] == 4 and shown["failed_total"] == 1 and shown["pending"] == 0
        assert shown["last_error"] == "HTTP 400"
        # The receiver is fixed; replaying from before the change sends it again, same webhook-id.
        replayed = api.check(api.http.post(f"/api/webhooks/{sub['id']}/replay", json={"since_event_id": "0"}), 202)
        assert replayed["queued"] == 1
        requests = receiver.wait_count(5)
    assert requests[4].verify(sub["secret"])["data"]["id"] == entry["id"]
    assert requests[4].webhook_id == requests[0].webhook_id
    log = api.wait_deliveries(sub["id"], lambda d: d[0]["outcome"] == "delivered")
    assert log[0]["attempt"] == 1
    # The secret is in no log: neither the delivery log nor the worker's own output.
    assert sub["secret"] not in api.http.get(f"/api/webhooks/{sub['id']}/deliveries").text
    assert sub["secret"] not in worker.log_path.read_text() and sub["secret"][6:] not in worker.log_path.read_text()


def test_redirects_are_not_followed_and_answers_are_capped(api: Api, worker: Service) -> None:
    slug = api.blog()
    with Receiver() as elsewhere, Receiver() as receiver:
        receiver.behaviour = sequence(Reply(307, headers={"Location": elsewhere.url}),
                                      then=Reply(200, body=b"x" * 2_000_000))
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        api.entry(slug)
        log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "delivered" for e in d))
        assert elsewhere.requests == []
    assert [(e["status"], e["outcome"]) for e in reversed(log)] == [(307, "retrying"), (200, "delivered")]
    assert log[0]["response"] == "x" * 500  # a capped excerpt of a 2 MB answer


def test_timeout_then_success(api: Api, worker: Service) -> None:
    slug = api.blog()
    with Receiver(sequence(Reply(hang=True))) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        api.entry(slug)
        requests = receiver.wait_count(2)
        log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "delivered" for e in d))
    assert requests[0].webhook_id == requests[1].webhook_id
    first = log[-1]
    assert first["status"] is None and "timed out" in first["error"] and first["outcome"] == "retrying"


def test_connection_refused_is_retried_then_failed(api: Api, worker: Service) -> None:
    slug = api.blog()
    receiver = Receiver()  # never started: nothing listens on its port
    sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
    api.entry(slug)
    log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "failed" for e in d))
    assert len(log) == 4 and all(e["status"] is None and "connection failed" in e["error"] for e in log)


def wait_fanned_out(redis_url: str, slug: str) -> None:
    """Until the dispatchers have taken every change of the blog (read and acknowledged)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    stream = f"lb:{{{slug}}}:stream"
    newest = client.xrevrange(stream, count=1)[0][0]

    def done() -> bool:
        groups = {g["name"]: g for g in client.xinfo_groups(stream)}
        group = groups.get("webhooks")
        return bool(group) and group["last-delivered-id"] == newest and group["pending"] == 0

    wait_until(done, timeout=30, what=f"the dispatcher to take every change of {slug}")


def test_410_disables_and_admin_reenables(api: Api, worker: Service, redis_url: str) -> None:
    slug = api.blog()
    with Receiver(sequence(Reply(410))) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        api.entry(slug, "prima")
        api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "gone" for e in d))
        shown = api.subscription(sub["id"])
        assert shown["state"] == "disabled" and "410" in shown["disabled_reason"]
        api.entry(slug, "mentre è disattivato")
        wait_fanned_out(redis_url, slug)
        assert len(receiver.requests) == 1
        enabled = api.check(api.http.patch(f"/api/webhooks/{sub['id']}", json={"state": "active"}), 200)
        assert enabled["state"] == "active" and enabled["disabled_reason"] is None
        assert enabled["consecutive_failures"] == 0
        api.entry(slug, "dopo")
        requests = receiver.wait_count(2)
    assert requests[1].verify(sub["secret"])["data"]["body_html"] == "<p>dopo</p>"


def test_retry_after_is_honoured(api: Api, worker: Service) -> None:
    slug = api.blog()
    with Receiver(sequence(Reply(429, headers={"Retry-After": "2"}))) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        api.entry(slug)
        first, second = receiver.wait_count(2)[:2]
    # The schedule alone would retry after ~0.2 s; the receiver asked for 2 s.
    assert second.at - first.at >= 1.9
    assert first.webhook_id == second.webhook_id
    log = api.wait_deliveries(sub["id"], lambda d: len(d) == 2)
    assert [(e["status"], e["outcome"]) for e in reversed(log)] == [(429, "retrying"), (200, "delivered")]


def test_star_and_event_filters(api: Api, worker: Service) -> None:
    """This module's database holds only its own blogs, so "*" can be checked exactly."""
    with Receiver() as all_blogs, Receiver() as entries_only:
        star = api.subscribe(all_blogs.url, ["*"], events=["blog.updated"])
        slug = api.blog()  # created after the subscription: its creation is delivered too
        entries = api.subscribe(entries_only.url, [slug], events=["entry.created"])
        entry = api.entry(slug)
        api.check(api.http.patch(f"/api/blogs/{slug}", json={"status": "ended"}), 200)
        blog_events = [r.verify(star["secret"]) for r in all_blogs.wait_count(2)]
        entry_events = [r.verify(entries["secret"]) for r in entries_only.wait_count(1)]
    assert {(p["type"], p["data"]["slug"], p["data"]["status"]) for p in blog_events} == {
        ("blog.updated", slug, "live"), ("blog.updated", slug, "ended")}
    assert [(p["type"], p["data"]["id"]) for p in entry_events] == [("entry.created", entry["id"])]
    assert len(all_blogs.requests) == 2 and len(entries_only.requests) == 1
    assert api.http.delete(f"/api/webhooks/{star['id']}").status_code == 204
    assert api.http.get(f"/api/webhooks/{star['id']}").status_code == 404
