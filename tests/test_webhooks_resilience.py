"""Isolation, crash safety, no loss under load, restarts, connect-time SSRF refusals.

Every test starts its own `liveblog worker` processes (on this module's private database, emptied
before each test) with the settings it needs, and stops them at the end.
"""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import redis

from liveblog.redisconn import pool_client
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.queue import DeliveryQueue, Job
from tests.conftest import RedisServer, wait_until
from tests.receivers import Api, Receiver, Reply, StartWorker, always, private_db, sequence, serving, webhook_fixtures

DB = 13
FAST = {"LIVEBLOG_WEBHOOK_TIMEOUT": "2", "LIVEBLOG_WEBHOOK_CLAIM_IDLE": "1"}

api, redis_url, workers = webhook_fixtures(DB)


def post_entries(api: Api, slug: str, count: int) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: api.entry(slug, f"aggiornamento {n}"), range(count)))


def test_a_partner_that_never_answers_does_not_delay_a_healthy_one(api: Api, workers: StartWorker) -> None:
    # 8 attempts at once in this worker, at most 4 per subscription; the stuck partner holds its
    # 4 for the whole 30 s timeout, far longer than this test waits for the healthy one.
    workers(LIVEBLOG_WEBHOOK_CONCURRENCY="8", LIVEBLOG_WEBHOOK_TIMEOUT="30")
    slug = api.blog()
    with Receiver(always(hang=True)) as stuck, Receiver() as healthy:
        stuck_sub = api.subscribe(stuck.url, [slug], events=["entry.created"])
        healthy_sub = api.subscribe(healthy.url, [slug], events=["entry.created"])
        post_entries(api, slug, 20)
        stuck.wait_count(4)
        delivered = healthy.wait_for(lambda r: len({x.webhook_id for x in r}) == 20, timeout=20,
                                     what="all 20 deliveries to the healthy partner")
        assert len(stuck.requests) == 4 and stuck.max_holding == 4  # its backlog waits in its own queue
        assert healthy.max_holding <= 4
        for request in delivered:
            request.verify(healthy_sub["secret"])
        assert api.subscription(stuck_sub["id"])["pending"] == 20
        assert api.http.delete(f"/api/webhooks/{stuck_sub['id']}").status_code == 204


def test_disabled_after_a_period_without_success_and_reenabled(api: Api, workers: StartWorker) -> None:
    workers(LIVEBLOG_WEBHOOK_DISABLE_AFTER="1", LIVEBLOG_WEBHOOK_RETRY_SCHEDULE="0.4,0.4,0.4,0.4,0.4,0.4")
    slug = api.blog()
    with Receiver(always(500)) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        api.entry(slug)
        deadline = time.monotonic() + 30
        while api.subscription(sub["id"])["state"] != "disabled":
            assert time.monotonic() < deadline, api.deliveries(sub["id"])
            time.sleep(0.1)
        shown = api.subscription(sub["id"])
        assert "no successful delivery" in shown["disabled_reason"] and shown["consecutive_failures"] >= 2
        # The retry left in the queue waits while disabled and resumes when an admin enables it again.
        assert shown["pending"] == 1
        attempts = len(receiver.requests)
        receiver.behaviour = always(200)
        api.check(api.http.patch(f"/api/webhooks/{sub['id']}", json={"state": "active"}), 200)
        receiver.wait_count(attempts + 1)
        log = api.wait_deliveries(sub["id"], lambda d: d[0]["outcome"] == "delivered")
    assert log[0]["attempt"] == attempts + 1
    assert api.subscription(sub["id"])["consecutive_failures"] == 0


def test_sigkill_mid_delivery_is_delivered_by_another_worker(api: Api, workers: StartWorker) -> None:
    slow_enough = {**FAST, "LIVEBLOG_WEBHOOK_TIMEOUT": "3"}  # the held attempt must outlive the kill
    first = workers(**slow_enough)
    slug = api.blog()
    with Receiver(sequence(Reply(hang=True))) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        entry = api.entry(slug)
        receiver.wait_count(1)  # the first worker is now in the middle of the attempt
        first.stop(signal.SIGKILL)
        workers(**slow_enough)
        held, delivered = receiver.wait_count(2, timeout=60)
    assert delivered.webhook_id == held.webhook_id
    assert delivered.verify(sub["secret"])["data"]["id"] == entry["id"]
    log = api.wait_deliveries(sub["id"], lambda d: bool(d))
    assert [e["outcome"] for e in log] == ["delivered"]  # the killed attempt was never recorded


def test_change_read_by_a_dead_worker_is_reclaimed(api: Api, redis_server: RedisServer, workers: StartWorker) -> None:
    """A worker that died between reading a change and queueing its deliveries (simulated with the
    same consumer-group read a worker does) leaves it pending; a live worker takes it over."""
    slug = api.blog()
    with Receiver() as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        entry = api.entry(slug)
        stream = f"lb:{{{slug}}}:stream"
        direct = redis.Redis(port=redis_server.port, db=DB, decode_responses=True)
        direct.xgroup_create(stream, "webhooks", id="0")
        read = direct.xreadgroup("webhooks", "dead-worker", {stream: ">"})
        assert [fields["type"] for _, fields in read[0][1]] == ["blog.updated", "entry.created"]
        workers(**FAST)
        (request,) = receiver.wait_count(1)
    assert request.verify(sub["secret"])["data"]["id"] == entry["id"]
    assert direct.xpending(stream, "webhooks")["pending"] == 0


def test_change_queued_by_a_worker_that_died_before_acknowledging_it_is_delivered_once(
        api: Api, redis_url: str, workers: StartWorker) -> None:
    """A worker queues a change's deliveries first and acknowledges the change after. One that died
    in between (simulated: the same consumer-group read, then the queue's own enqueue) leaves the
    change pending: a live worker delivers the queued delivery, reclaims the change and queues it
    again, which adds nothing (the delivery is remembered as done), so the partner gets it once."""
    slug = api.blog()
    with Receiver() as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        entry = api.entry(slug)
        stream = f"lb:{{{slug}}}:stream"
        direct = redis.Redis.from_url(redis_url, decode_responses=True)
        direct.xgroup_create(stream, "webhooks", id="0")
        ((_, items),) = direct.xreadgroup("webhooks", "dead-worker", {stream: ">"})
        event_id, fields = items[-1]
        job = Job.for_change(sub["id"], slug, event_id, fields["type"], fields["data"])
        assert asyncio.run(_enqueue(redis_url, job)) == 1
        workers(**{**FAST, "LIVEBLOG_WEBHOOK_CLAIM_IDLE": "2"})  # the reclaim comes after the delivery
        api.wait_deliveries(sub["id"], lambda log: [e["outcome"] for e in log] == ["delivered"])
        wait_until(lambda: direct.xpending(stream, "webhooks")["pending"] == 0, timeout=30,
                   what="the change to be reclaimed, queued again and acknowledged")
        # Queued again before it was acknowledged: a second delivery would be queued, leased or sent by now.
        assert [direct.zcard(whkeys.queue(sub["id"])), direct.zcard(whkeys.leases(sub["id"])),
                direct.hlen(whkeys.jobs(sub["id"]))] == [0, 0, 0]
        (request,) = receiver.requests
    assert request.webhook_id == job.id and request.verify(sub["secret"])["data"]["id"] == entry["id"]


async def _enqueue(redis_url: str, job: Job) -> int:
    store = pool_client(redis_url)
    try:
        return await DeliveryQueue(store).enqueue([job])
    finally:
        await store.aclose()


def test_two_workers_few_hundred_changes_each_delivered_once(api: Api, workers: StartWorker) -> None:
    settings = {"LIVEBLOG_WEBHOOK_TIMEOUT": "5", "LIVEBLOG_WEBHOOK_CLAIM_IDLE": "10"}
    workers(**settings)
    workers(**settings)
    slugs = [api.blog(), api.blog()]
    with Receiver() as receiver:
        sub = api.subscribe(receiver.url, slugs, events=["entry.created"])
        started = time.monotonic()
        for slug in slugs:
            post_entries(api, slug, 150)
        requests = receiver.wait_for(lambda r: len({x.webhook_id for x in r}) >= 300, timeout=60,
                                     what="300 distinct deliveries")
        elapsed = time.monotonic() - started
    assert len(requests) == 300  # in normal operation, each delivery is sent once
    payloads = [r.verify(sub["secret"]) for r in requests]
    assert {(p["data"]["blog"], p["data"]["id"]) for p in payloads} == {
        (slug, str(n)) for slug in slugs for n in range(1, 151)}
    print(f"\n300 changes posted and delivered through 2 workers in {elapsed:.2f}s")


def test_no_loss_when_a_worker_is_killed_under_load(api: Api, workers: StartWorker) -> None:
    doomed = workers(**FAST)
    workers(**FAST)
    slug = api.blog()
    with Receiver(always(200, delay=0.01)) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        with ThreadPoolExecutor(1) as background:
            posting = background.submit(post_entries, api, slug, 200)
            receiver.wait_count(40)
            doomed.stop(signal.SIGKILL)
            workers(**FAST)
            posting.result()
        requests = receiver.wait_for(lambda r: len({x.webhook_id for x in r}) >= 200, timeout=60,
                                     what="200 distinct deliveries")
    ids = {r.verify(sub["secret"])["data"]["id"] for r in requests}
    assert ids == {str(n) for n in range(1, 201)}  # duplicates are allowed (at least once), gaps are not


def test_pending_retry_survives_restart_of_everything(api: Api, redis_server: RedisServer,
                                                      workers: StartWorker) -> None:
    worker = workers(LIVEBLOG_WEBHOOK_RETRY_SCHEDULE="3")
    slug = api.blog()
    with Receiver(sequence(Reply(503))) as receiver:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        entry = api.entry(slug)
        api.wait_deliveries(sub["id"], lambda d: bool(d) and d[0]["outcome"] == "retrying")
        worker.stop()
        redis_server.restart()  # persistent (append-only file): the scheduled retry is kept
        workers(LIVEBLOG_WEBHOOK_RETRY_SCHEDULE="3")
        first, retried = receiver.wait_count(2, timeout=60)
    assert retried.webhook_id == first.webhook_id
    assert retried.verify(sub["secret"])["data"]["id"] == entry["id"]
    log = api.wait_deliveries(sub["id"], lambda d: d[0]["outcome"] == "delivered")
    assert [(e["attempt"], e["status"]) for e in reversed(log)] == [(1, 503), (2, 200)]


def test_connect_time_ssrf_refusal(api: Api, workers: StartWorker) -> None:
    """Saved while loopback was allowed; a worker without the allow-list refuses to connect (as it
    would after a DNS change) and says so in the delivery log."""
    workers(LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS="")
    slug = api.blog()
    with Receiver() as receiver:
        by_address = api.subscribe(receiver.url, [slug], events=["entry.created"])
        by_name = api.subscribe(receiver.url.replace("127.0.0.1", "localhost"), [slug], events=["entry.created"])
        api.entry(slug)
        for sub, fragment in ((by_address, "refused: 127.0.0.1, a loopback address"),
                              (by_name, "refused: localhost resolves to")):
            log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "failed" for e in d))
            assert len(log) == 4 and all(fragment in e["error"] and e["status"] is None for e in log), log
        assert receiver.requests == []


def test_serve_runs_the_dispatcher(service_factory, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    with serving(service_factory, private_db(redis_server, DB + 1), dispatcher=True) as api, Receiver() as receiver:
        slug = api.blog()
        sub = api.subscribe(receiver.url, [slug])
        entry = api.entry(slug)
        (request,) = receiver.wait_count(1)
    assert request.verify(sub["secret"])["data"]["id"] == entry["id"]
