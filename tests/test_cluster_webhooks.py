"""Webhooks on a real 3-primary Redis Cluster (``tests/clusters.py``): `liveblog serve` and `liveblog
worker` processes pointed at one node, blogs whose streams sit on different primaries, subscriptions
whose queues sit on different primaries, real receivers on loopback.

A cluster refuses any command or script that spans slots, so everything passing here is also proof
that the intake reads per slot and the queue scripts touch one subscription's slot each. The
migration test changes the cluster's shape and runs after the others on that cluster; the failover
test has a cluster of its own, with replicas.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
import redis

from liveblog import keys
from liveblog.webhooks import keys as whkeys
from tests.clusters import ClusterSetup
from tests.conftest import running, wait_until
from tests.receivers import Api, Receiver, Reply, StartWorker, sequence, serving, worker_pool

FAST = {"LIVEBLOG_WEBHOOK_TIMEOUT": "3", "LIVEBLOG_WEBHOOK_CLAIM_IDLE": "1"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with running(ClusterSetup(tmp_path_factory.mktemp("webhooks-cluster"))) as setup:
        yield setup


@pytest.fixture(scope="module")
def api(service_factory, cluster: ClusterSetup) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    with serving(service_factory, cluster.url) as api:
        yield api


@pytest.fixture
def workers(service_factory, cluster: ClusterSetup, api: Api) -> Iterator[StartWorker]:  # type: ignore[no-untyped-def]
    with worker_pool(service_factory, cluster.url, **FAST) as start:
        yield start


def blogs_on_every_primary(api: Api, cluster: ClusterSetup) -> list[str]:
    """Three new blogs whose streams three different primaries serve."""
    found: dict[int, str] = {}
    while len(found) < 3:
        slug = f"wc-{uuid.uuid4().hex[:10]}"
        found.setdefault(cluster.owner(keys.stream(slug)), slug)
    return [api.blog(slug) for slug in found.values()]


def subscriptions_on_every_primary(api: Api, cluster: ClusterSetup, urls: list[str], blogs: list[str]
                                   ) -> list[dict[str, Any]]:
    """One subscription per URL, the three of them queued on three different primaries (others
    made on the way are deleted)."""
    found: dict[int, dict[str, Any]] = {}
    while len(found) < 3:
        sub = api.subscribe(urls[len(found)], blogs, events=["entry.created"])
        owner = cluster.owner(whkeys.sub(sub["id"]))
        if owner in found:
            assert api.http.delete(f"/api/webhooks/{sub['id']}").status_code == 204
        else:
            found[owner] = sub
    return list(found.values())


def test_every_change_reaches_every_subscription_and_replay_resends(api: Api, cluster: ClusterSetup,
                                                                     workers: StartWorker) -> None:
    workers()
    workers()
    slugs = blogs_on_every_primary(api, cluster)
    with ExitStack() as stack:
        receivers = [stack.enter_context(Receiver()) for _ in range(3)]
        subs = subscriptions_on_every_primary(api, cluster, [r.url for r in receivers], slugs)
        posted = {(slug, api.entry(slug, f"aggiornamento {n}")["id"]) for slug in slugs for n in range(4)}
        for receiver, sub in zip(receivers, subs, strict=True):
            requests = receiver.wait_for(lambda r: len({x.webhook_id for x in r}) >= len(posted),
                                         what=f"{len(posted)} deliveries")
            assert {(p["data"]["blog"], p["data"]["id"]) for p in (r.verify(sub["secret"]) for r in requests)} \
                == posted
        first, sub = receivers[0], subs[0]
        before = {r.webhook_id for r in first.requests}
        replayed = api.check(api.http.post(f"/api/webhooks/{sub['id']}/replay", json={"since_event_id": "0"}), 202)
        assert replayed["queued"] == len(posted) and replayed["trimmed_blogs"] == []
        again = first.wait_count(2 * len(posted))[len(posted):]
        assert {r.webhook_id for r in again} == before
        assert {r.verify(sub["secret"])["data"]["id"] for r in again} == {entry_id for _, entry_id in posted}


def test_a_worker_killed_mid_delivery_loses_nothing(api: Api, cluster: ClusterSetup, workers: StartWorker) -> None:
    """The killed worker held a lease, and had read changes of every blog without queueing them
    (simulated: the same consumer-group reads under its name). The next worker sends the held
    delivery again once the lease expired (same ``webhook-id``) and takes the read changes over
    from the killed worker's pending lists (``XAUTOCLAIM`` on each blog's primary)."""
    doomed = workers()
    slugs = blogs_on_every_primary(api, cluster)
    with Receiver(sequence(Reply(hang=True))) as receiver:
        sub = api.subscribe(receiver.url, slugs, events=["entry.created"])
        first = api.entry(slugs[0], "prima")
        receiver.wait_count(1)  # the worker is in the middle of that attempt
        doomed.stop(signal.SIGKILL)
        later = {(slug, api.entry(slug, "dopo")["id"]) for slug in slugs}
        direct = cluster.client()
        for slug in slugs:
            with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: the worker had found the blog
                direct.xgroup_create(keys.stream(slug), whkeys.GROUP, id="0")
            assert direct.xreadgroup(whkeys.GROUP, "killed-worker", {keys.stream(slug): ">"})
        workers()
        requests = receiver.wait_count(5, timeout=60)  # the held delivery twice, three later ones
        payloads = [(r.webhook_id, r.verify(sub["secret"])["data"]) for r in requests]
    held = payloads[0][0]
    assert [data["id"] for webhook_id, data in payloads if webhook_id == held] == [first["id"]] * 2
    assert {(data["blog"], data["id"]) for webhook_id, data in payloads if webhook_id != held} == later
    log = api.wait_deliveries(sub["id"], lambda d: len(d) == 4)
    assert [e["outcome"] for e in log] == ["delivered"] * 4  # the killed attempt was never recorded
    wait_until(lambda: all(direct.xpending(keys.stream(slug), whkeys.GROUP)["pending"] == 0 for slug in slugs),
               what="every read change to be acknowledged")


def write_through(api: Api, slug: str, body: str) -> str:
    """Post one entry, retrying 503s (a slot in mid-move) with the same Idempotency-Key until 201."""
    key = uuid.uuid4().hex
    for _ in range(100):
        response = api.http.post(f"/api/blogs/{slug}/entries", json={"body": body}, headers={"Idempotency-Key": key})
        if response.status_code == 201:
            return str(response.json()["id"])
        assert response.status_code == 503, response.text
        time.sleep(0.1)
    raise AssertionError(f"{body!r} never succeeded")


def test_slot_migrations_of_a_blog_and_of_a_subscription_lose_nothing(api: Api, cluster: ClusterSetup,
                                                                       workers: StartWorker) -> None:
    """The blog's slot, then the subscription's, moved key by key to another primary (as
    ``redis-cli --cluster reshard`` does) while an editor starts a write after every moved key
    (it succeeds once the move is over) and two workers deliver: every acknowledged change reaches
    the partner."""
    workers()
    workers()
    slug = blogs_on_every_primary(api, cluster)[0]
    with Receiver() as receiver, ThreadPoolExecutor(4) as editor:
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        posted = [write_through(api, slug, "prima")]
        during: list[Future[str]] = []

        def between_keys() -> None:
            during.append(editor.submit(write_through, api, slug, f"durante {len(during)}"))

        for key in (keys.stream(slug), whkeys.sub(sub["id"])):
            target = next(p for p in cluster.primaries() if p != cluster.owner(key))
            cluster.migrate_slot_of(key, target, between_keys=between_keys)
            posted.append(write_through(api, slug, f"dopo {len(posted)}"))
        posted += [future.result() for future in during]
        requests = receiver.wait_for(lambda r: len({x.webhook_id for x in r}) >= len(posted), timeout=60,
                                     what=f"{len(posted)} deliveries")
    assert {r.verify(sub["secret"])["data"]["id"] for r in requests} == set(posted)
    assert len(during) > 4  # writes were started while the keys of either slot were moving


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with running(ClusterSetup(tmp_path_factory.mktemp("webhooks-failover"), replicas=1)) as setup:
        yield setup


def test_deliveries_resume_after_the_primary_of_a_subscriptions_queue_is_killed(
        service_factory, replicated: ClusterSetup) -> None:  # type: ignore[no-untyped-def]
    """The primary holding a subscription's queue (and none of the global keys, nor the blog) is
    SIGKILLed and its replica promoted: the changes written meanwhile are delivered."""
    cluster = replicated
    busy = {cluster.owner(key) for key in (whkeys.ACTIVE, whkeys.VERSION, whkeys.SUBS, keys.BLOGS)}
    victim = next((p for p in cluster.primaries() if p not in busy), cluster.primaries()[-1])
    with serving(service_factory, cluster.url) as api, worker_pool(service_factory, cluster.url, **FAST) as workers, \
            Receiver() as receiver:
        workers()
        slug = next(s for s in blogs_on_every_primary(api, cluster) if cluster.owner(keys.stream(s)) != victim)
        sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        while cluster.owner(whkeys.sub(sub["id"])) != victim:
            assert api.http.delete(f"/api/webhooks/{sub['id']}").status_code == 204
            sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
        posted = [write_through(api, slug, "prima")]
        receiver.wait_count(1)
        cluster.kill_primary_of(whkeys.sub(sub["id"]))
        posted += [write_through(api, slug, f"dopo {n}") for n in range(3)]
        requests = receiver.wait_for(lambda r: len({x.webhook_id for x in r}) >= len(posted), timeout=60,
                                     what=f"{len(posted)} deliveries")
    assert {r.verify(sub["secret"])["data"]["id"] for r in requests} == set(posted)
