"""The change log: every read of a blog's changes goes through a :class:`ChangeLog`.

The store (the newest change, for pages and feeds), the event stream's catch-up (resume checks and
pages of changes) and the hub (its start point per blog, its history check and its blocking read of
all followed blogs) share this one owner. :class:`RedisChangeLog` reads the blogs' Redis streams
(written by the store's scripts); :class:`MemoryChangeLog` keeps changes in memory, so the fan-out
can be tested in-process (like Mercure's hub with its local and persistent transports).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

import redis.asyncio as aioredis

from liveblog import keys, streamids

log = logging.getLogger(__name__)

# How many changes follow ARGV[1] (an exclusive XRANGE start), counting no further than ARGV[2]:
# only the number leaves Redis.
_COUNT_AFTER = """
return #redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
"""


@dataclass(frozen=True)
class Change:
    """One item of a blog's change log."""

    id: str
    type: str
    data: str  # the record's facts (JSON) as stored; presented when served
    number: int | None = None  # the blog's change counter (None: written before counters existed)


def change_number(fields: dict[str, str]) -> int | None:
    raw = fields.get("n")
    return int(raw) if raw is not None and raw.isdigit() else None


class ChangeLog(ABC):
    """Reads of the blogs' change logs. Stream IDs are ``<ms>-<seq>`` strings, oldest first."""

    @abstractmethod
    async def newest(self, slug: str) -> Change | None:
        """The newest change, or None for an empty log."""

    @abstractmethod
    async def trimmed(self, slug: str) -> str | None:
        """The highest ID trimmed away (resuming before it needs a reset), or None."""

    @abstractmethod
    async def holds(self, slug: str, sid: str) -> bool:
        """Whether the log holds a change with exactly this ID."""

    @abstractmethod
    async def count_after(self, slug: str, after: str, limit: int) -> int:
        """How many changes follow ``after``, counted up to ``limit``."""

    @abstractmethod
    async def after(self, slug: str, after: str, count: int) -> list[Change]:
        """At most ``count`` changes strictly after ``after``, oldest first."""

    async def between(self, slug: str, after: str, upto: str, count: int) -> list[Change]:
        """At most ``count`` changes strictly after ``after`` and up to ``upto`` included, oldest first."""
        end = streamids.parse(upto) or (0, 0)
        return [c for c in await self.after(slug, after, count) if (streamids.parse(c.id) or (0, 0)) <= end]

    @abstractmethod
    async def read(self, cursors: dict[str, str], count: int, block_ms: int) -> dict[str, list[Change]]:
        """Changes after each blog's cursor (``{slug: id}``), waiting up to ``block_ms`` for the first
        one; returns early, possibly empty, when :meth:`wake` is called (the cursors changed)."""

    @abstractmethod
    async def wake(self) -> None:
        """Interrupt a :meth:`read` in progress (or the next one)."""

    async def close(self) -> None:  # noqa: B027 -- most logs hold nothing to release
        """Release connections."""

    async def newest_id(self, slug: str) -> str:
        """The newest change's ID, or ``0-0``: a page rendered now resumes its stream from here."""
        newest = await self.newest(slug)
        return newest.id if newest else "0-0"

    async def kept(self, slug: str, sid: str) -> bool:
        """Whether change ``sid`` is still accounted for: held, or at or below the trimmed mark."""
        if await self.holds(slug, sid):
            return True
        trimmed = await self.trimmed(slug)
        return trimmed is not None and (streamids.parse(sid) or (0, 0)) <= (streamids.parse(trimmed) or (0, 0))

    async def needs_reset(self, slug: str, after: streamids.StreamId) -> bool:
        """True unless the log holds ``after`` itself (or it is exactly where trimming stopped, or
        ``0-0`` with nothing trimmed): an ID older than the trimmed part, from another stream, or from
        changes the store lost or rolled back. (Ordering alone cannot tell: after a rollback, new
        changes get IDs above the lost ones.)"""
        trimmed = await self.trimmed(slug)
        if trimmed is not None:
            start = streamids.parse(trimmed) or (0, 0)
            if after <= start:
                return streamids.lost_to_trimming(after, trimmed)
        elif after == (0, 0):
            return False
        return not await self.holds(slug, streamids.fmt(after))


class RedisChangeLog(ChangeLog):
    """The blogs' Redis streams (``lb:{slug}:stream``, ``lb:{slug}:trimmed``).

    :meth:`read` is one ``XREAD BLOCK`` over the followed streams on ``reader`` (a dedicated
    connection); :meth:`wake` interrupts it by adding an item to this log's wake-up stream, which
    every read includes.
    """

    def __init__(self, pool: aioredis.Redis, reader: aioredis.Redis | None = None) -> None:
        self.pool = pool
        self.reader = reader
        self.wake_key = f"lb:wake:{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake_cursor = "0-0"
        self._count_after = pool.register_script(_COUNT_AFTER)

    async def newest(self, slug: str) -> Change | None:
        items = await self.pool.xrevrange(keys.stream(slug), count=1)
        return changes_of(items)[0] if items else None

    async def trimmed(self, slug: str) -> str | None:
        raw = await self.pool.get(keys.trimmed(slug))
        return None if raw is None else str(raw)

    async def holds(self, slug: str, sid: str) -> bool:
        return bool(await self.pool.xrange(keys.stream(slug), min=sid, max=sid, count=1))

    async def count_after(self, slug: str, after: str, limit: int) -> int:
        return int(await self._count_after(keys=[keys.stream(slug)], args=[f"({after}", limit]))

    async def after(self, slug: str, after: str, count: int) -> list[Change]:
        return changes_of(await self.pool.xrange(keys.stream(slug), min=f"({after}", max="+", count=count))

    async def between(self, slug: str, after: str, upto: str, count: int) -> list[Change]:
        return changes_of(await self.pool.xrange(keys.stream(slug), min=f"({after}", max=upto, count=count))

    async def read(self, cursors: dict[str, str], count: int, block_ms: int) -> dict[str, list[Change]]:
        if self.reader is None:
            raise RuntimeError("this change log has no blocking reader")
        streams = {keys.stream(slug): cursor for slug, cursor in cursors.items()}
        streams[self.wake_key] = self._wake_cursor
        response = await self.reader.xread(streams, count=count, block=block_ms)
        found: dict[str, list[Change]] = {}
        for stream_key, items in response or ():
            if stream_key == self.wake_key:
                self._wake_cursor = items[-1][0]
            else:
                found[keys.slug_of_stream(stream_key)] = changes_of(items)
        return found

    async def wake(self) -> None:
        """Every call wakes the read: skipping one while another is in flight could leave a blog out
        of the read until the block times out."""
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self.wake_key, 3600)
            await pipe.execute()

    async def close(self) -> None:
        try:
            await self.pool.delete(self.wake_key)
        except Exception:  # Redis may be gone at shutdown; the key expires anyway.
            pass
        if self.reader is not None:
            await self.reader.aclose()
        await self.pool.aclose()


def changes_of(items: list[tuple[str, dict[str, str]]]) -> list[Change]:
    return [Change(sid, fields.get("type", "message"), fields.get("data", "{}"), change_number(fields))
            for sid, fields in items]


class MemoryChangeLog(ChangeLog):
    """Change logs in this process's memory: for tests of the fan-out without Redis.

    :meth:`append` and :meth:`trim` stand in for the store's writes; :meth:`fail_next` makes the
    next read call of any kind raise, as a Redis outage would."""

    def __init__(self) -> None:
        self.logs: dict[str, list[Change]] = {}
        self.trimmed_at: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        self._last = (0, 0)
        self._changed = asyncio.Event()
        self._failure: Exception | None = None

    def append(self, slug: str, event_type: str, data: str) -> Change:
        ms = int(time.time() * 1000)
        sid = (ms, 0) if ms > self._last[0] else (self._last[0], self._last[1] + 1)
        self._last = sid
        self.counters[slug] = self.counters.get(slug, 0) + 1
        change = Change(streamids.fmt(sid), event_type, data, self.counters[slug])
        self.logs.setdefault(slug, []).append(change)
        self._changed.set()
        return change

    def trim(self, slug: str, keep: int) -> None:
        """Keep only the newest ``keep`` changes of ``slug`` (``keep`` > 0)."""
        held = self.logs.get(slug, [])
        if len(held) > keep:
            self.trimmed_at[slug] = held[-keep - 1].id
            self.logs[slug] = held[-keep:]

    def fail_next(self, error: Exception) -> None:
        self._failure = error

    def _check(self) -> None:
        error, self._failure = self._failure, None
        if error is not None:
            raise error

    def _after(self, slug: str, after: str) -> list[Change]:
        start = streamids.parse(after) or (0, 0)
        return [c for c in self.logs.get(slug, []) if (streamids.parse(c.id) or (0, 0)) > start]

    async def newest(self, slug: str) -> Change | None:
        self._check()
        held = self.logs.get(slug)
        return held[-1] if held else None

    async def trimmed(self, slug: str) -> str | None:
        self._check()
        return self.trimmed_at.get(slug)

    async def holds(self, slug: str, sid: str) -> bool:
        self._check()
        return any(c.id == sid for c in self.logs.get(slug, []))

    async def count_after(self, slug: str, after: str, limit: int) -> int:
        self._check()
        return min(limit, len(self._after(slug, after)))

    async def after(self, slug: str, after: str, count: int) -> list[Change]:
        self._check()
        return self._after(slug, after)[:count]

    async def read(self, cursors: dict[str, str], count: int, block_ms: int) -> dict[str, list[Change]]:
        self._check()
        found = {slug: changes[:count] for slug, cursor in cursors.items() if (changes := self._after(slug, cursor))}
        if found:
            return found
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), block_ms / 1000)
        except TimeoutError:
            return {}
        self._check()
        return {slug: changes[:count] for slug, cursor in cursors.items() if (changes := self._after(slug, cursor))}

    async def wake(self) -> None:
        self._check()
        self._changed.set()
