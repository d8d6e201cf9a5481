"""Waiting for changes on a Redis Cluster: sharded pub/sub, one connection per primary.

A single Redis lets the fan-out block in one ``XREAD`` over every followed blog's stream. A cluster
refuses that (``CROSSSLOT``: the streams live in different slots, even on one node), so there the
write script also publishes each change's number on the blog's sharded channel (``SPUBLISH
lb:{slug}:changed``, in the blog's own slot, see store.py), and readers wait on those channels
instead:

- :class:`ClusterNotifier` keeps one connection per primary that holds a followed blog's slot, and
  ``SSUBSCRIBE``s there to those blogs' channels (one command per slot). Its :meth:`wait` returns the
  blogs that were announced, or None (check every followed blog) after a timeout. The fan-out and the
  webhook intake both wait with it.
- :class:`ClusterChangeLog` is the fan-out's change log on a cluster: its :meth:`read` waits with a
  notifier, then reads the announced blogs' streams without blocking (``XRANGE`` after each cursor,
  pipelined per node through the cluster client, which follows ``MOVED``/``ASK``).

Nothing is lost between a subscription and a read: the server's confirmation of a subscription
counts as an announcement of its blog, so every (re)subscription -- a blog newly followed, a
connection that came back, a channel resubscribed at its slot's new owner -- is followed by a read
of that blog after its cursor, which catches whatever was written while nobody listened. A slot that
migrates makes Redis 7 end its channels' subscriptions (``sunsubscribe``), and a primary that dies
ends its connection: either way the notifier reloads the slot map and subscribes at the new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException, RedisError, SlotNotCoveredError

from liveblog import keys
from liveblog.changelog import Change, RedisChangeLog, changes_of

log = logging.getLogger(__name__)

IDLE_PING = 30.0  # seconds of silence on a subscription connection before it is checked with a PING
RETRY_DELAY = 0.5  # first wait before subscribing again after a failure (doubles up to RETRY_MAX)
RETRY_MAX = 5.0


class _Shard:
    """One subscription connection to one primary, and the task that reads it.

    Replies are handed to the notifier as they come; any error (connection lost, a ``MOVED`` reply
    to a subscription, no answer to a PING) ends the shard, and the notifier places its blogs again.
    """

    def __init__(self, notifier: ClusterNotifier, node: ClusterNode) -> None:
        self.notifier = notifier
        self.name = node.name
        # The cluster's connection settings (credentials, TLS, decoding), but no read timeout: the
        # connection waits for announcements as long as it takes (idle ones are checked by PING).
        kwargs = {**node.connection_kwargs, "socket_timeout": None}
        self.connection: AbstractConnection = node.connection_class(**kwargs)
        self.channels: set[str] = set()  # subscribed (or asked for)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.connection.connect()
        self._task = asyncio.create_task(self._run(), name=f"cluster-notifier-{self.name}")

    async def subscribe(self, channels: Iterable[str], slot_of: Callable[[str], int]) -> None:
        """One ``SSUBSCRIBE`` per slot (several slots in one would be refused, even on one node)."""
        by_slot: dict[int, list[str]] = defaultdict(list)
        for channel in channels:
            by_slot[slot_of(channel)].append(channel)
        for group in by_slot.values():
            self.channels.update(group)
            await self.connection.send_command("SSUBSCRIBE", *group)

    async def unsubscribe(self, channels: Iterable[str], slot_of: Callable[[str], int]) -> None:
        by_slot: dict[int, list[str]] = defaultdict(list)
        for channel in channels:
            if channel in self.channels:
                self.channels.discard(channel)
                by_slot[slot_of(channel)].append(channel)
        for group in by_slot.values():
            await self.connection.send_command("SUNSUBSCRIBE", *group)

    async def _run(self) -> None:
        pinged = False
        try:
            while True:
                reply = await self.connection.read_response(timeout=IDLE_PING, push_request=True)
                if reply is None:  # silence: is the server still there?
                    if pinged:
                        raise ConnectionError(f"no answer to PING from {self.name}")
                    pinged = True
                    await self.connection.send_command("PING")
                    continue
                pinged = False
                self._handle(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever ended it, the notifier places the blogs again
            with contextlib.suppress(Exception):
                await self.connection.disconnect()
            self.notifier._shard_ended(self, exc)

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 2:
            return
        kind, channel = str(reply[0]), str(reply[1])
        if kind in ("smessage", "ssubscribe"):
            # A confirmed subscription counts as an announcement: whatever was written before it is
            # read now, and everything after it is announced.
            self.notifier._announce(keys.slug_of_channel(channel))
        elif kind == "sunsubscribe" and channel in self.channels:
            # Not asked for: the slot moved to another primary (Redis 7 ends those subscriptions).
            self.channels.discard(channel)
            self.notifier._moved(keys.slug_of_channel(channel))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.connection.disconnect()


class ClusterNotifier:
    """Tells a reader which followed blogs changed, on a Redis Cluster.

    :meth:`follow` sets the blogs to watch; :meth:`wait` (re)subscribes as needed and returns the
    blogs announced since the last call (a newly subscribed blog counts as announced), waiting up to
    ``timeout`` seconds for one; None after a timeout, when the caller should check every followed
    blog (a safety net: nothing should have been missed). :meth:`wake` ends a wait early (empty set).
    Used by one task at a time.
    """

    def __init__(self, cluster: RedisCluster, channel_of: Callable[[str], str] = keys.changed) -> None:
        self.cluster = cluster
        self.channel_of = channel_of
        self._wanted: set[str] = set()
        self._placed: dict[str, _Shard] = {}  # slug -> the shard its channel is subscribed on
        self._shards: dict[str, _Shard] = {}  # node name -> shard
        self._pending: set[str] = set()
        self._event = asyncio.Event()
        self._stale = False  # the slot map must be reloaded before placing blogs again
        self._retry_at = 0.0  # loop time before which failed placements are not tried again
        self._retry_delay = RETRY_DELAY

    @property
    def nodes(self) -> set[str]:
        """The primaries (``host:port``) this notifier holds a subscription connection to."""
        return set(self._shards)

    def follow(self, slugs: Iterable[str]) -> None:
        """Watch exactly these blogs from the next :meth:`wait` on."""
        self._wanted = set(slugs)

    def wake(self) -> None:
        self._event.set()

    def again(self, slugs: Iterable[str]) -> None:
        """Report ``slugs`` as announced at the next :meth:`wait` (their read stopped at its count)."""
        self._pending.update(slugs)

    async def wait(self, timeout: float) -> set[str] | None:
        loop = asyncio.get_running_loop()
        await self._place()
        if not self._pending:
            limit = timeout
            if self._unplaced():
                limit = min(limit, max(0.0, self._retry_at - loop.time()))
            try:
                await asyncio.wait_for(self._event.wait(), limit)
            except TimeoutError:
                if self._unplaced():
                    return set()  # time to try placing them again (the caller calls back)
                return None
            finally:
                self._event.clear()
        announced, self._pending = self._pending & self._wanted, set()
        return announced

    async def close(self) -> None:
        for shard in list(self._shards.values()):
            await shard.close()
        self._shards.clear()
        self._placed.clear()

    # ---- from the shards --------------------------------------------------------------------

    def _announce(self, slug: str) -> None:
        self._pending.add(slug)
        self._event.set()

    def _moved(self, slug: str) -> None:
        self._placed.pop(slug, None)
        self._stale = True
        self._event.set()

    def _shard_ended(self, shard: _Shard, exc: BaseException) -> None:
        if self._shards.get(shard.name) is shard:
            log.warning("cluster notifier: subscriptions on %s ended (%s); subscribing again", shard.name, exc)
            del self._shards[shard.name]
        for slug in [s for s, placed in self._placed.items() if placed is shard]:
            del self._placed[slug]
        self._stale = True
        self._event.set()

    # ---- placing subscriptions ----------------------------------------------------------------

    def _unplaced(self) -> bool:
        return bool(self._wanted - self._placed.keys())

    async def _place(self) -> None:
        """Subscribe every followed blog on the primary of its slot, unsubscribe the others. A failure
        (a primary down, the slot map reloading) is logged and tried again after a growing delay."""
        loop = asyncio.get_running_loop()
        slot_of = self.cluster.keyslot
        for slug in [s for s in self._placed if s not in self._wanted]:
            shard = self._placed.pop(slug)
            with contextlib.suppress(RedisError, OSError):
                await shard.unsubscribe([self.channel_of(slug)], slot_of)
        if not self._unplaced() and not self._stale:
            await self._close_idle()
            return
        if loop.time() < self._retry_at:
            return
        try:
            await self.cluster.initialize()
            if self._stale:
                self._stale = False
                await self.cluster.nodes_manager.initialize()
            # A blog whose slot the (reloaded) map puts on another primary moves there.
            for slug, shard in list(self._placed.items()):
                node = self.cluster.get_node_from_key(self.channel_of(slug))
                if node is None or node.name != shard.name:
                    del self._placed[slug]
                    with contextlib.suppress(RedisError, OSError):
                        await shard.unsubscribe([self.channel_of(slug)], slot_of)
            by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
            for slug in self._wanted - self._placed.keys():
                node = self.cluster.get_node_from_key(self.channel_of(slug))
                if node is not None:
                    by_node.setdefault(node.name, (node, []))[1].append(slug)
            for name, (node, slugs) in by_node.items():
                shard = self._shards.get(name) or _Shard(self, node)
                if name not in self._shards:
                    await shard.start()
                    self._shards[name] = shard
                await shard.subscribe([self.channel_of(slug) for slug in slugs], slot_of)
                for slug in slugs:
                    self._placed[slug] = shard
            if self._unplaced():
                raise SlotNotCoveredError("no primary serves the slot of some followed blogs")
        except (RedisError, RedisClusterException, OSError) as exc:  # slots not covered: a failover
            self._stale = True
            self._retry_at = loop.time() + self._retry_delay
            log.warning("cluster notifier: cannot subscribe to every followed blog (%s); trying again in %.1fs",
                        exc, self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
            return
        self._retry_delay = RETRY_DELAY
        await self._close_idle()

    async def _close_idle(self) -> None:
        used = {shard.name for shard in self._placed.values()}
        for name in [n for n in self._shards if n not in used]:
            await self._shards.pop(name).close()


class ClusterChangeLog(RedisChangeLog):
    """The blogs' change logs on a Redis Cluster: reads as :class:`RedisChangeLog` (every other read
    touches one key), but :meth:`read` waits with a :class:`ClusterNotifier` and then reads the
    announced streams without blocking."""

    def __init__(self, pool: RedisCluster) -> None:
        super().__init__(pool)  # same commands, routed by key
        self.cluster = pool
        self.notifier = ClusterNotifier(pool)

    async def read(self, cursors: dict[str, str], count: int, block_ms: int) -> dict[str, list[Change]]:
        self.notifier.follow(cursors)
        announced = await self.notifier.wait(block_ms / 1000)
        due = cursors if announced is None else {slug: cursors[slug] for slug in announced if slug in cursors}
        if not due:
            return {}
        try:
            found = await self._read_now(due, count)
        except BaseException:
            self.notifier.again(due)  # read them at the next call (after the caller's backoff)
            raise
        self.notifier.again(slug for slug, changes in found.items() if len(changes) >= count)
        return found

    async def _read_now(self, cursors: dict[str, str], count: int) -> dict[str, list[Change]]:
        """Up to ``count`` changes after each cursor, without blocking: one ``XRANGE`` per blog, sent
        per node in one round trip. (Not ``XREAD`` over a slot's streams: its keys move with its
        arguments, and redis-py asks a node to find them (``COMMAND GETKEYS``) -- the node it started
        from, which may be the one that just died.)"""
        slugs = list(cursors)
        async with self.cluster.pipeline() as pipe:
            for slug in slugs:
                pipe.xrange(keys.stream(slug), min=f"({cursors[slug]}", max="+", count=count)
            replies = await pipe.execute()
        return {slug: changes_of(items) for slug, items in zip(slugs, replies, strict=True) if items}

    async def wake(self) -> None:
        self.notifier.wake()

    async def close(self) -> None:
        await self.notifier.close()
        await self.cluster.aclose()
