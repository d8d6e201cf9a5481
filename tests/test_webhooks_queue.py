"""The delivery queue's promises, checked on its scripts directly: on the session's Redis and on a
real 3-primary Redis Cluster, where every script call must touch one slot (a call that touched
another subscription's keys, or ``lb:wh:active``, would be refused there with CROSSSLOT).

- Queueing is idempotent: a change queued again (its worker died before acknowledging it) adds
  nothing while its delivery is queued, leased or recently done.
- ``lb:wh:active`` never loses a subscription that has work.
- The room of one claim is never exceeded and goes to subscriptions that have something due.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from liveblog.redisconn import pool_client
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.queue import Attempted, Claim, DeliveryQueue, Job
from liveblog.webhooks.ssrf import AddressPolicy
from liveblog.webhooks.subscriptions import Snapshot, Subscriptions
from tests.clusters import ClusterSetup
from tests.conftest import RedisServer, running

DB = 9  # no other test uses it: no dispatcher claims from these queues
LEASE_MS = 60_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with running(ClusterSetup(Path(tmp_path_factory.mktemp("queue-cluster")))) as setup:
        yield setup


@pytest.fixture(params=["redis", "cluster"])
async def store(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    if request.param == "redis":
        client = pool_client(redis_server.url.rsplit("/", 1)[0] + f"/{DB}")
    else:
        setup: ClusterSetup = request.getfixturevalue("cluster")
        client = RedisCluster(host="127.0.0.1", port=setup.ports[0], decode_responses=True)  # type: ignore[assignment]
    await client.flushdb()  # on the cluster: on every primary
    yield client
    await client.aclose()


async def subscribe(store: aioredis.Redis) -> str:
    subs = Subscriptions(store, AddressPolicy(["127.0.0.0/8"]))
    return str((await subs.create({"url": "http://127.0.0.1:9/hook", "blogs": ["*"]}))["id"])


def change(sub_id: str, n: int = 1, slug: str = "blog") -> Job:
    return Job.for_change(sub_id, slug, f"1764000000000-{n}", "entry.created", f'{{"id":"{n}"}}')


async def finish(queue: DeliveryQueue, claim: Claim, outcome: str, **kwargs: Any) -> list[Any]:
    return await queue.finish([Attempted(claim, outcome, log_entry={"outcome": outcome}, **kwargs)],
                              disable_after_ms=3_600_000)


async def claim_all(queue: DeliveryQueue, *, limit: int = 100, per_subscription: int = 4) -> list[Claim]:
    _, claims = await queue.claim(limit=limit, per_subscription=per_subscription, lease_ms=LEASE_MS)
    return claims


async def test_queueing_a_change_again_adds_nothing_while_queued_leased_or_done(store: aioredis.Redis) -> None:
    queue = DeliveryQueue(store)
    sub_id = await subscribe(store)
    job = change(sub_id)
    assert await queue.enqueue([job]) == 1
    assert await queue.enqueue([job]) == 0  # queued
    (claim,) = await claim_all(queue)
    assert claim.job == job and claim.subscription["id"] == sub_id
    assert await queue.enqueue([job]) == 0  # leased
    assert await finish(queue, claim, "delivered") == ["active"]
    assert await queue.enqueue([job]) == 0  # done a moment ago
    assert await claim_all(queue) == []
    assert await queue.enqueue([job], replay=True) == 1  # a replay sends it again, same id
    (again,) = await claim_all(queue)
    assert again.job.id == job.id and again.job.attempts == 0


async def test_a_retry_queued_again_keeps_its_attempt_count(store: aioredis.Redis) -> None:
    queue = DeliveryQueue(store)
    sub_id = await subscribe(store)
    job = change(sub_id)
    await queue.enqueue([job])
    (claim,) = await claim_all(queue)
    await finish(queue, claim, "retrying", retry_ms=0)
    assert await queue.enqueue([job]) == 0
    (retry,) = await claim_all(queue)
    assert retry.job.attempts == 1


async def test_finished_deliveries_are_forgotten_after_done_keep(store: aioredis.Redis) -> None:
    """The memory of finished deliveries is bounded in time: each finish drops the markers older
    than ``done_keep_ms``; queueing such a change again then delivers it a second time."""
    queue = DeliveryQueue(store, done_keep_ms=1)
    sub_id = await subscribe(store)
    first, second = change(sub_id, 1), change(sub_id, 2)
    await queue.enqueue([first, second])
    claims = {c.job.id: c for c in await claim_all(queue)}
    await finish(queue, claims[first.id], "delivered")
    await asyncio.sleep(0.01)
    await finish(queue, claims[second.id], "failed")
    assert await store.zrange(whkeys.done(sub_id), 0, -1) == [second.id]
    assert await queue.enqueue([first, second]) == 1


async def test_a_subscription_with_work_is_never_lost_from_the_active_set(store: aioredis.Redis) -> None:
    queue = DeliveryQueue(store)
    sub_id = await subscribe(store)
    await queue.enqueue([change(sub_id)])
    assert await store.smembers(whkeys.ACTIVE) == {sub_id}
    (claim,) = await claim_all(queue)
    assert await store.smembers(whkeys.ACTIVE) == {sub_id}  # leased is work too
    await finish(queue, claim, "delivered")
    assert await claim_all(queue) == []
    assert await store.smembers(whkeys.ACTIVE) == set()  # found empty: out
    # The race: a claim found it empty, then the intake queued a delivery and added it to the set
    # (already there), then the claimer removed it. The claimer's second look puts it back.
    await store.hset(whkeys.jobs(sub_id), "late", change(sub_id, 2).to_json())
    await store.zadd(whkeys.queue(sub_id), {"late": 0})
    await queue._forget([sub_id])
    assert await store.smembers(whkeys.ACTIVE) == {sub_id}
    assert [c.job.id for c in await claim_all(queue)] == [change(sub_id, 2).id]


async def test_a_deleted_subscription_is_cleaned_up_by_the_next_claim(store: aioredis.Redis) -> None:
    queue = DeliveryQueue(store)
    sub_id = await subscribe(store)
    await queue.enqueue([change(sub_id, n) for n in range(3)])
    await store.delete(whkeys.sub(sub_id))  # as if deleted between the intake's read and its queueing
    assert await queue.enqueue([change(sub_id, 9)]) == 0
    assert await claim_all(queue) == []
    assert await store.smembers(whkeys.ACTIVE) == set()
    assert await store.exists(whkeys.queue(sub_id), whkeys.jobs(sub_id)) == 0


async def test_the_room_goes_to_subscriptions_with_something_due(store: aioredis.Redis) -> None:
    """Four subscriptions, room for 4 deliveries (less than 4 subscriptions x 4 each): only one has
    something due (the others wait for retries), and it gets 3 of the room, whatever the order."""
    queue = DeliveryQueue(store)
    waiting = [await subscribe(store) for _ in range(3)]
    busy = await subscribe(store)
    for sub_id in waiting:
        await queue.enqueue([change(sub_id)])
    for claim in await claim_all(queue):
        await finish(queue, claim, "retrying", retry_ms=600_000)
    await queue.enqueue([change(busy, n) for n in range(3)])
    for _ in range(5):
        claims = await claim_all(queue, limit=4)
        assert {c.job.sub_id for c in claims} == {busy} and len(claims) == 3
        for claim in claims:
            await finish(queue, claim, "release")


async def test_a_claim_never_takes_more_than_its_room_nor_the_per_subscription_limit(store: aioredis.Redis) -> None:
    queue, other_worker = DeliveryQueue(store), DeliveryQueue(store)
    subs = [await subscribe(store) for _ in range(5)]
    for sub_id in subs:
        await queue.enqueue([change(sub_id, n) for n in range(3)])
    first = await claim_all(queue, limit=6, per_subscription=2)
    assert len(first) == 6
    second = await claim_all(other_worker, limit=100, per_subscription=2)
    leased = [c.job.sub_id for c in first + second]
    assert sorted(leased) == sorted(subs * 2)  # 2 each, across both workers; 1 each still queued
    assert await queue.claim(limit=100, per_subscription=2, lease_ms=LEASE_MS) == (None, [])  # no room anywhere
    assert sorted(c.job.sub_id for c in await claim_all(other_worker, per_subscription=3)) == sorted(subs)


async def test_a_disabling_attempt_changes_the_version_once(store: aioredis.Redis) -> None:
    queue = DeliveryQueue(store)
    sub_id = await subscribe(store)
    await queue.enqueue([change(sub_id, 1), change(sub_id, 2)])
    version = await store.get(whkeys.VERSION)
    first, second = await claim_all(queue)
    assert await finish(queue, first, "gone") == ["disabled"]
    disabled = await store.get(whkeys.VERSION)
    assert disabled not in (None, version)
    assert await finish(queue, second, "gone") == ["disabled"]  # already disabled: no reload needed
    assert await store.get(whkeys.VERSION) == disabled


async def test_the_workers_snapshot_sees_subscriptions_created_after_the_store_was_emptied(
        store: aioredis.Redis) -> None:
    """After FLUSHALL a version counter would start again at the value a worker still held (one
    subscription before, one after: 1 both times), and the worker would keep the wiped subscription."""
    snapshot = Snapshot(Subscriptions(store, AddressPolicy(["127.0.0.0/8"])))
    before = await subscribe(store)
    assert [sub.id for sub in await snapshot.current()] == [before]
    await store.flushdb()
    after = await subscribe(store)  # (no worker looked in between)
    assert [sub.id for sub in await snapshot.current()] == [after]


async def test_scripts_are_loaded_again_when_redis_forgot_them(store: aioredis.Redis) -> None:
    queue = DeliveryQueue(store)
    sub_id = await subscribe(store)
    await store.script_flush()
    assert await queue.enqueue([change(sub_id)]) == 1
    await store.script_flush()
    (claim,) = await claim_all(queue)
    await store.script_flush()
    assert await finish(queue, claim, "delivered") == ["active"]


async def test_subscriptions_on_every_shard_are_served_in_one_claim(cluster: ClusterSetup) -> None:
    """On the cluster: subscriptions whose keys sit on all three primaries, one claim call each."""
    store = RedisCluster(host="127.0.0.1", port=cluster.ports[0], decode_responses=True)
    try:
        subs: dict[int, str] = {}
        while len(subs) < 3:
            sub_id = await subscribe(store)  # type: ignore[arg-type]
            subs.setdefault(cluster.owner(whkeys.sub(sub_id)), sub_id)
        queue = DeliveryQueue(store)  # type: ignore[arg-type]
        jobs = [change(sub_id, n, slug=f"b-{uuid.uuid4().hex[:6]}") for sub_id in subs.values() for n in range(2)]
        assert await queue.enqueue(jobs) == 6
        claims = await claim_all(queue)
        assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)
        assert set(await finish_all(queue, claims)) == {"active"}
        assert await queue.enqueue(jobs) == 0
    finally:
        await store.aclose()


async def finish_all(queue: DeliveryQueue, claims: list[Claim]) -> list[Any]:
    return await queue.finish([Attempted(c, "delivered", log_entry={}) for c in claims])


async def test_subscription_changes_change_the_version_each_without_a_transaction(
        store: aioredis.Redis) -> None:
    """Admin changes touch the subscription's hash, the index and the version, which live in
    different slots of a cluster: no MULTI across them, a new version for every change, a
    deleted subscription's keys and active-set entry gone."""
    subs, queue = Subscriptions(store, AddressPolicy(["127.0.0.0/8"])), DeliveryQueue(store)
    sub_id = await subscribe(store)
    versions = [await store.get(whkeys.VERSION)]
    assert (await subs.update(sub_id, {"state": "disabled"}))["state"] == "disabled"
    versions.append(await store.get(whkeys.VERSION))
    assert (await subs.update(sub_id, {"state": "active", "description": "partner"}))["state"] == "active"
    versions.append(await store.get(whkeys.VERSION))
    await queue.enqueue([change(sub_id)])
    await subs.delete(sub_id)
    versions.append(await store.get(whkeys.VERSION))
    assert None not in versions and len(set(versions)) == 4
    assert await store.smembers(whkeys.ACTIVE) == set() and await store.zrange(whkeys.SUBS, 0, -1) == []
    assert [await store.exists(key) for key in whkeys.all_of(sub_id)] == [0] * 6
