"""Reader counts across processes: how many event streams of a blog are open, everywhere.

No per-reader Redis traffic: every few seconds each web process writes, per blog it serves, one
field of the blog's ``readers`` hash (its own count, with an expiry in Redis time); a count is the
sum of the fields that have not expired, so a crashed process's readers vanish within two intervals.
The same loop tells this process's readers the total (a ``blog.readers`` event without an ``id:``)
at most every ``BROADCAST_ROUNDS`` intervals, and only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid

import orjson
import redis.asyncio as aioredis

from liveblog import keys
from liveblog.fanout import Hub

log = logging.getLogger(__name__)

BROADCAST_ROUNDS = 2

# KEYS[1] readers hash. ARGV: field, count ("0": remove), ttl ms. Times are Redis's own clock.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
end
return 1
"""

# KEYS[1] readers hash -> the sum of the counts that have not expired (expired ones are removed).
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local count, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count and tonumber(expires) > now then
    total = total + tonumber(count)
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return total
"""


class Presence:
    def __init__(self, redis: aioredis.Redis, hub: Hub, *, interval: float) -> None:
        self.redis = redis
        self.hub = hub
        self.interval = interval
        self.field = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._publish = redis.register_script(_PUBLISH)
        self._count = redis.register_script(_COUNT)
        self._published: dict[str, int] = {}  # what this process last wrote, per blog
        self._told: dict[str, int] = {}  # the total this process's readers were last told, per blog
        self._task: asyncio.Task[None] | None = None

    async def readers(self, slug: str) -> int:
        """Open event streams of ``slug`` across every process (at most two intervals old)."""
        return int(await self._count(keys=[keys.readers(slug)]))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):  # leave no count behind (it would expire anyway)
            async with asyncio.timeout(1.0):
                for slug in [s for s, n in self._published.items() if n]:
                    await self._publish(keys=[keys.readers(slug)], args=[self.field, 0, 0])

    async def _loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.interval)
            rounds += 1
            try:
                await self._round(tell=rounds % BROADCAST_ROUNDS == 0)
            except Exception as exc:  # Redis away: try again next round, counts expire meanwhile
                log.warning("reader counts: could not publish (%s); next try in %.1fs", exc, self.interval)

    async def _round(self, *, tell: bool) -> None:
        ttl_ms = int(self.interval * 2000)
        counts = {slug: len(channel.readers) for slug, channel in self.hub.channels.items()}
        for slug in set(self._published) | set(counts):
            count = counts.get(slug, 0)
            # Rewritten every round while non-zero (it expires); a zero is written once.
            if count or self._published.get(slug):
                await self._publish(keys=[keys.readers(slug)], args=[self.field, count, ttl_ms])
            if count:
                self._published[slug] = count
            else:
                self._published.pop(slug, None)
                self._told.pop(slug, None)
        if tell:
            for slug in counts:
                total = await self.readers(slug)
                if self._told.get(slug) != total:
                    self._told[slug] = total
                    frame = b"event: blog.readers\ndata: " + orjson.dumps({"readers": total}) + b"\n\n"
                    self.hub.announce(slug, frame)
