"""Publishes scheduled entries when they are due; run by every web process and every worker.

Each round reads the set of blogs with scheduled entries, then each blog's due ids (soonest first)
and publishes each through ``Drafts.publish_due``, whose write script does nothing for an entry that
another process published first: however many schedulers run, an entry is published once. Entries
that fell due while nothing ran (a restart) go out in the first round, in ``publish_at`` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from liveblog import keys, metrics, timefmt
from liveblog.drafts import Drafts

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, drafts: Drafts, *, interval: float) -> None:
        self.drafts = drafts
        self.redis = drafts.redis
        self.interval = interval
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=2)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.round()
            except Exception:  # a failed round is retried at the next one; the loop keeps its pace
                log.exception("scheduler: publishing due entries failed; retrying in %.1f s", self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)

    async def round(self) -> int:
        """Publish every due entry now; returns how many this process published."""
        published = 0
        now = timefmt.now()
        for slug in sorted(await self.redis.smembers(keys.SCHEDULED)):
            due = await self.redis.zrangebyscore(keys.scheduled(slug), "-inf", int(now.timestamp() * 1000))
            for draft_id in due:
                if self._stop.is_set():
                    return published
                if await self.drafts.publish_due(slug, draft_id, now) is not None:
                    published += 1
                    metrics.CHANGES_PUBLISHED.labels("entry.created").inc()
            if not await self.redis.zcard(keys.scheduled(slug)):
                # A draft scheduled meanwhile adds its blog back after writing its zset: removing
                # and then checking again never loses one.
                await self.redis.srem(keys.SCHEDULED, slug)
                if await self.redis.zcard(keys.scheduled(slug)):
                    await self.redis.sadd(keys.SCHEDULED, slug)
        return published
