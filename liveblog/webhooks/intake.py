"""From blog change streams to deliveries, through the ``webhooks`` consumer group.

Every worker reads all blog streams with ``XREADGROUP`` under its own consumer name, so each
change is handed to one worker (on a Redis Cluster: one read per slot, when the blog's sharded
channel announces a change, see :meth:`Intake._read`). That worker turns it into one delivery per matching subscription
(``DeliveryQueue.enqueue``, idempotent) and then acknowledges it. Changes a dead worker read but
never acknowledged stay pending in the group; :meth:`Intake.reclaim_loop` takes them over with
``XAUTOCLAIM`` once they have been idle for ``webhook_claim_idle_seconds`` and queues them again
(which adds nothing for deliveries already queued or recently delivered).

Groups are created at ID ``0`` when a blog is first seen: nothing written between a blog's creation
and the first poll is lost, and older changes match no subscription created after them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from liveblog import keys, streamids
from liveblog.clusterlog import ClusterNotifier
from liveblog.present import Presenter
from liveblog.redisconn import execute, log_failed_round
from liveblog.store import DEFAULT_TIMEZONE, NotFound, Store
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.queue import DeliveryQueue, Job
from liveblog.webhooks.subscriptions import Snapshot

log = logging.getLogger(__name__)

BLOCK_MS = 1000  # also bounds how long a new blog waits to be included in the read
CLUSTER_SWEEP_SECONDS = 15.0  # on a cluster, every followed stream is read at least this often
READ_COUNT = 200
INDEX_POLL_SECONDS = 1.0
CONSUMER_SWEEP_SECONDS = 600.0
DEAD_CONSUMER_IDLE_MS = 3600_000


class Intake:
    def __init__(self, pool: aioredis.Redis, reader: aioredis.Redis, queue: DeliveryQueue, snapshot: Snapshot, *,
                 presenter: Presenter, consumer: str, claim_idle_seconds: float,
                 on_queued: Callable[[], None], stopping: Callable[[], bool] = lambda: False) -> None:
        self.pool = pool
        self.store = Store(pool)  # the blogs' timezones, for presenting their changes
        self.presenter = presenter
        # The intake's own client. One Redis: a dedicated connection (XREADGROUP BLOCK never shares
        # it). A cluster: a small cluster client for the per-slot reads, and for its notifier.
        self.reader = reader
        self.notifier = ClusterNotifier(reader) if isinstance(reader, RedisCluster) else None
        self._swept = 0.0  # when every followed stream was last read (cluster)
        self.queue = queue
        self.snapshot = snapshot
        self.consumer = consumer
        self.claim_idle_ms = max(1, int(claim_idle_seconds * 1000))
        self.on_queued = on_queued
        self.stopping = stopping  # the loops end when it says so (besides being cancelled)
        self.streams: set[str] = set()
        self._index_checked = 0.0

    async def _discover(self) -> None:
        """Join new blogs' streams (the blog index is polled, so no restart is needed)."""
        if time.monotonic() - self._index_checked < INDEX_POLL_SECONDS:
            return
        for slug in await self.pool.zrange(keys.BLOGS, 0, -1):
            stream = keys.stream(slug)
            if stream in self.streams:
                continue
            try:
                await self.pool.xgroup_create(stream, whkeys.GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.streams.add(stream)
        self._index_checked = time.monotonic()

    async def _fan_out(self, stream: str, items: list[tuple[str, dict[str, str] | None]]) -> None:
        """Queue one delivery per matching subscription, then acknowledge the changes.

        In that order: a crash in between leaves the changes pending, and queueing them again when
        they are reclaimed adds nothing (``DeliveryQueue.enqueue``). A change's body is presented
        and encoded once, for all the subscriptions that want it."""
        subs = await self.snapshot.current()
        slug = keys.slug_of_stream(stream)
        tz: str | None = None
        jobs: list[Job] = []
        for event_id, fields in items:
            if fields:
                event_ms = (streamids.parse(event_id) or (0, 0))[0]
                event_type = fields.get("type", "")
                wanted = [sub.id for sub in subs if sub.wants(slug, event_type, event_ms)]
                if wanted:
                    tz = tz or await self._timezone(slug)
                    data = self.presenter.change(event_type, fields.get("data", "null"), tz)
                    jobs += Job.for_subscriptions(wanted, slug, event_id, event_type, data)
        queued = await self.queue.enqueue(jobs)
        await self.pool.xack(stream, whkeys.GROUP, *(event_id for event_id, _ in items))
        if queued:
            self.on_queued()

    async def _timezone(self, slug: str) -> str:
        try:
            return await self.store.timezone(slug)
        except NotFound:  # a stream without its blog (removed by hand): its changes still go out
            return DEFAULT_TIMEZONE

    async def read_loop(self) -> None:
        backoff = 0.1
        while not self.stopping():
            try:
                await self._discover()
                if not self.streams:
                    await asyncio.sleep(INDEX_POLL_SECONDS)
                    continue
                response, failure = await self._read()
                for stream, items in response:
                    await self._fan_out(stream, items)
                if failure is not None:
                    raise failure
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever it is, the loop goes on (see log_failed_round)
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    # A stream or group vanished (deleted key, flushed DB): rejoin at once.
                    self.streams.clear()
                    self._index_checked = 0.0
                    continue
                log_failed_round(log, "webhook intake", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _read(self) -> tuple[list[Any], Exception | None]:
        """New changes of the followed streams as ``[(stream, [(id, fields)...])...]``, and the
        failure of a part of the read if any (the other parts are still fanned out).

        One Redis: one ``XREADGROUP BLOCK`` over every stream, on the reader's own connection. A
        cluster refuses a read across slots: it waits for the blogs' announcements
        (:class:`ClusterNotifier`), then reads the announced streams without blocking, one
        ``XREADGROUP`` per slot, pipelined (one round trip per primary). Every followed stream is
        also read every ``CLUSTER_SWEEP_SECONDS``, as a safety net."""
        if self.notifier is None:
            found = await self.reader.xreadgroup(whkeys.GROUP, self.consumer, dict.fromkeys(self.streams, ">"),
                                                 count=READ_COUNT, block=BLOCK_MS)
            return list(found or ()), None
        self.notifier.follow(keys.slug_of_stream(stream) for stream in self.streams)
        # Short waits, so that a new blog is followed within INDEX_POLL_SECONDS.
        announced = await self.notifier.wait(INDEX_POLL_SECONDS)
        if announced is None and time.monotonic() - self._swept >= CLUSTER_SWEEP_SECONDS:
            self._swept = time.monotonic()
            due = sorted(self.streams)
        else:
            due = sorted(stream for stream in map(keys.stream, announced or ()) if stream in self.streams)
        by_slot: dict[int, list[str]] = {}
        for stream in due:
            by_slot.setdefault(self.reader.keyslot(stream), []).append(stream)
        groups = list(by_slot.values())
        async with self.reader.pipeline(transaction=False) as pipe:
            for streams in groups:
                # The node is named: redis-py would otherwise ask a node for XREADGROUP's keys
                # (COMMAND GETKEYS) before each read. A slot that moved meanwhile answers MOVED,
                # which the cluster client follows.
                pipe.execute_command("XREADGROUP", "GROUP", whkeys.GROUP, self.consumer, "COUNT", READ_COUNT,
                                     "STREAMS", *streams, *([">"] * len(streams)),
                                     target_nodes=self.reader.get_node_from_key(streams[0]))
            results = await execute(self.reader, pipe, raise_on_error=False) if groups else []
        response: list[Any] = []
        failure: Exception | None = None
        for streams, result in zip(groups, results, strict=True):
            if isinstance(result, Exception):
                failure = failure or result
                self.notifier.again(map(keys.slug_of_stream, streams))  # read them again next time
                continue
            for stream, items in result or ():
                response.append((stream, items))
                if len(items) >= READ_COUNT:  # more may be waiting
                    self.notifier.again([keys.slug_of_stream(stream)])
        return response, failure

    async def close(self) -> None:
        """Close the cluster notifier's connections, if any (the clients are the caller's)."""
        if self.notifier is not None:
            await self.notifier.close()

    async def _reclaim(self) -> None:
        """Take over changes idle in other consumers' pending lists (their worker died) and fan them out."""
        streams = sorted(self.streams)
        while streams:
            async with self.pool.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xautoclaim(stream, whkeys.GROUP, self.consumer, self.claim_idle_ms, "0-0", count=100,
                                    justid=True)
                claimed = await execute(self.pool, pipe, raise_on_error=False)
            again = []
            for stream, ids in zip(streams, claimed, strict=True):
                if isinstance(ids, Exception) or not ids:
                    continue
                log.info("webhook intake: reclaimed %d change(s) of %s from a stalled worker", len(ids), stream)
                async with self.pool.pipeline(transaction=False) as pipe:
                    for event_id in ids:
                        pipe.xrange(stream, event_id, event_id)
                    found = await execute(self.pool, pipe)
                # A change trimmed away meanwhile has nothing left to send; it is only acknowledged.
                items: list[tuple[str, Any]] = [(event_id, rows[0][1] if rows else None)
                                                for event_id, rows in zip(ids, found, strict=True)]
                await self._fan_out(stream, items)
                again.append(stream)
            streams = again

    async def _sweep_consumers(self) -> None:
        """Forget consumers of workers long gone (nothing pending, idle for an hour)."""
        for stream in sorted(self.streams):
            for consumer in await self.pool.xinfo_consumers(stream, whkeys.GROUP):
                if (consumer["name"] != self.consumer and int(consumer["pending"]) == 0
                        and int(consumer["idle"]) > DEAD_CONSUMER_IDLE_MS):
                    await self.pool.xgroup_delconsumer(stream, whkeys.GROUP, consumer["name"])

    async def reclaim_loop(self) -> None:
        interval = max(0.5, self.claim_idle_ms / 2000)
        swept = time.monotonic()
        while not self.stopping():
            await asyncio.sleep(interval)
            try:
                await self._reclaim()
                if time.monotonic() - swept > CONSUMER_SWEEP_SECONDS:
                    await self._sweep_consumers()
                    swept = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever it is, the loop goes on (see log_failed_round)
                log_failed_round(log, "webhook intake (reclaiming)", exc, interval)
