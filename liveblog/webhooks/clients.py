"""One small guarded HTTP transport (a connection pool) per subscription, created on first use and
closed when idle.

Why not one shared client: httpcore's connection pool walks all of its connections (quadratically)
whenever a request is queued or a response closed, so a pool sized for the dispatcher's whole
concurrency spent most of a delivery's CPU time there. A subscription never has more attempts in
flight than its per-subscription limit, so a pool of that size never makes it wait, and the walk
stays short. Each pool still dials through the SSRF-guarded transport (resolve, check, connect to
the checked address on every new connection). A slow partner's connections sit in its own pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from liveblog.webhooks.ssrf import KEEPALIVE_SECONDS, AddressPolicy, GuardedTransport

SWEEP_SECONDS = 10.0  # idle transports are looked for at most this often


@dataclass
class _Entry:
    transport: GuardedTransport
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Clients:
    def __init__(self, policy: AddressPolicy, *, per_subscription: int) -> None:
        self.policy = policy
        self.per_subscription = per_subscription
        self._ssl = httpx.create_ssl_context()
        self._entries: dict[str, _Entry] = {}
        self._swept = time.monotonic()
        self._closing: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def use(self, sub_id: str) -> AsyncIterator[GuardedTransport]:
        """The subscription's transport for one attempt."""
        entry = self._entries.get(sub_id)
        if entry is None:
            transport = GuardedTransport(self.policy, max_connections=self.per_subscription, ssl_context=self._ssl)
            entry = self._entries[sub_id] = _Entry(transport)
        entry.users += 1
        try:
            yield entry.transport
        finally:
            entry.users -= 1
            entry.last_used = time.monotonic()

    def sweep(self) -> None:
        """Close (in the background) transports unused for longer than a pooled connection lives, so a
        subscription that went quiet or was deleted holds no sockets and no memory."""
        now = time.monotonic()
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        for sub_id, entry in list(self._entries.items()):
            if entry.users == 0 and now - entry.last_used > KEEPALIVE_SECONDS:
                del self._entries[sub_id]
                task = asyncio.create_task(entry.transport.aclose())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        await asyncio.gather(*(entry.transport.aclose() for entry in entries), *self._closing, return_exceptions=True)
