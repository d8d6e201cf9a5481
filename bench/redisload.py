"""Redis commands per change, measured on a scenario's private redis-server with ``INFO commandstats``.

A busy window (the updates posted and delivered) is compared with an idle window of the same length
right after it, with the same readers connected: web processes talk to Redis also when nothing is
posted (the fan-out reader's blocking ``XREAD`` returning empty after its timeout, the reader-count
presence script, the scheduler's look for due drafts), and that background is subtracted in
proportion to time. Commands that scripts run (``XADD`` inside the write script's ``EVALSHA``) are
counted by Redis like any other, so a change's ``EVALSHA`` and the ``XADD`` inside it both appear.
The bench's own ``INFO`` calls are left out; nothing else of the bench talks to Redis inside a window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

OWN = frozenset({"info"})  # the measuring itself


@dataclass(frozen=True)
class Stats:
    """One ``INFO commandstats`` reading: calls and Redis CPU microseconds per command name."""

    at: float  # time.monotonic() of the reading
    calls: dict[str, int]
    usec: dict[str, int]


async def snapshot(client: aioredis.Redis) -> Stats:
    info = await client.info("commandstats")
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    for key, value in info.items():
        name = key.removeprefix("cmdstat_").lower()
        if name not in OWN:
            calls[name] = int(value["calls"])
            usec[name] = int(value["usec"])
    return Stats(time.monotonic(), calls, usec)


def _delta(before: Stats, after: Stats, table: str) -> dict[str, int]:
    old, new = getattr(before, table), getattr(after, table)
    return {name: count - old.get(name, 0) for name, count in new.items() if count - old.get(name, 0)}


@dataclass(frozen=True)
class RedisLoad:
    """What ``changes`` changes cost Redis, background subtracted; and that background."""

    changes: int
    busy_seconds: float
    idle_seconds: float
    busy_calls: dict[str, int]  # raw counts in the busy window
    idle_calls: dict[str, int]  # raw counts in the idle window
    busy_usec: int
    idle_usec: int

    def scale(self) -> float:
        """Idle counts times this give the background expected in the busy window."""
        return self.busy_seconds / self.idle_seconds if self.idle_seconds > 0 else 0.0

    def per_change(self) -> dict[str, float]:
        """Commands per change by name, net of the background (largest first; names with a net of
        less than 0.05 per change left out)."""
        names = set(self.busy_calls) | set(self.idle_calls)
        net = {name: (self.busy_calls.get(name, 0) - self.idle_calls.get(name, 0) * self.scale()) / self.changes
               for name in names}
        return dict(sorted(((n, v) for n, v in net.items() if v >= 0.05), key=lambda item: (-item[1], item[0])))

    def usec_per_change(self) -> float:
        return (self.busy_usec - self.idle_usec * self.scale()) / self.changes

    def idle_per_second(self) -> float:
        return sum(self.idle_calls.values()) / self.idle_seconds if self.idle_seconds > 0 else 0.0

    def describe(self) -> str:
        net = self.per_change()
        parts = ", ".join(f"{value:.1f} {name.upper()}" for name, value in net.items())
        idle = ", ".join(f"{name.upper()} {count / self.idle_seconds:.1f}/s"
                         for name, count in sorted(self.idle_calls.items(), key=lambda item: -item[1]))
        return (f"Redis per change, net of an idle {self.idle_seconds:.0f} s with the same readers: "
                f"{sum(net.values()):.1f} commands ({parts or 'none'}; script-internal commands included), "
                f"{self.usec_per_change():.0f} µs Redis CPU; idle background {self.idle_per_second():.1f} "
                f"commands/s ({idle or 'none'})")


async def measure(client: aioredis.Redis, busy: tuple[Stats, Stats], changes: int) -> RedisLoad:
    """Wait through an idle window as long as ``busy`` (from now) and put the two together."""
    before, after = busy
    idle_from = await snapshot(client)
    await asyncio.sleep(after.at - before.at)
    idle_to = await snapshot(client)
    return RedisLoad(changes=changes, busy_seconds=after.at - before.at, idle_seconds=idle_to.at - idle_from.at,
                     busy_calls=_delta(before, after, "calls"), idle_calls=_delta(idle_from, idle_to, "calls"),
                     busy_usec=sum(_delta(before, after, "usec").values()),
                     idle_usec=sum(_delta(idle_from, idle_to, "usec").values()))
