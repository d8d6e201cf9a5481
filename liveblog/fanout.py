"""Fan-out: one Redis reader per process, shared by every SSE client of that process.

The reader runs a single ``XREAD BLOCK`` over the streams of all blogs that have at least one local
reader, on its own connection. Each change is encoded to SSE bytes once and offered to every local
subscriber's bounded buffer; a subscriber whose buffer is full is cut off (it resumes with
``Last-Event-ID``), so a slow reader never slows the others or the reader loop.

A change in the set of streams (a blog's first local reader) interrupts the blocking read by adding
an item to this process's wake-up stream, which the read always includes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections import deque

from liveblog import keys, metrics, streamids
from liveblog.redisconn import blocking_client, pool_client

log = logging.getLogger(__name__)

BLOCK_MS = 15_000
READ_COUNT = 1_000
TICK = 0.5  # seconds between housekeeping passes (send timeouts, shutdown)


def encode_event(sid: str, event_type: str, data: str) -> bytes:
    """One SSE frame. ``data`` is single-line JSON (orjson never writes a newline)."""
    return f"id: {sid}\nevent: {event_type}\ndata: {data}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"


class Subscriber:
    """One SSE client: a bounded buffer of encoded frames, a way to wake its sender, and why it ended.

    ``closed`` is set once, by whoever ends the stream: the hub (buffer overflow, send timeout, server
    shutdown) or the response (client disconnect). ``sending`` is the loop time at which the sender
    started a write that has not returned yet (0.0 when idle): the hub's housekeeping uses it to cut
    off a client that stopped reading, without a timer per write.
    """

    __slots__ = ("_waiter", "buffer", "closed", "limit", "sending", "slug", "task")

    def __init__(self, slug: str, limit: int) -> None:
        self.slug = slug
        self.limit = limit
        self.buffer: deque[tuple[streamids.StreamId | None, bytes]] = deque()
        self.closed: str | None = None
        self.sending = 0.0
        self.task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, sid: streamids.StreamId | None, frame: bytes) -> None:
        if self.closed:
            return
        if len(self.buffer) >= self.limit:
            self.closed = "overflow"
            metrics.SSE_CUT_OFF.inc()
        else:
            self.buffer.append((sid, frame))
        self._wake()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = reason
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return when there is something to send (or the stream has ended)."""
        if self.buffer or self.closed:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self, last: streamids.StreamId | None) -> tuple[bytes, streamids.StreamId | None]:
        """Everything buffered as one write, minus frames at or below ``last`` (already sent during
        the catch-up); returns it with the new last stream ID sent."""
        frames = []
        buffer = self.buffer
        while buffer:
            sid, frame = buffer.popleft()
            if sid is not None:
                if last is not None and sid <= last:
                    continue
                last = sid
            frames.append(frame)
        return b"".join(frames), last


class Hub:
    """The process-wide reader and registry of local SSE subscribers."""

    def __init__(self, redis_url: str, *, buffer: int = 256, heartbeat: float = 15.0,
                 send_timeout: float = 10.0) -> None:
        self.redis_url = redis_url
        self.buffer = buffer
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.closing = False
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.cursors: dict[str, str] = {}
        self.wake_key = f"lb:wake:{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake_cursor = "0-0"
        self._pool = pool_client(redis_url, max_connections=10)
        self._reader = blocking_client(redis_url, read_timeout=BLOCK_MS / 1000 + 10)
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read_loop(), name="fanout-reader"),
                       asyncio.create_task(self._housekeeping_loop(), name="fanout-housekeeping")]

    async def stop(self) -> None:
        self.close_all("shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await self._pool.delete(self.wake_key)
        except Exception:  # Redis may be gone at shutdown; the key expires anyway.
            pass
        await self._reader.aclose()
        await self._pool.aclose()

    @property
    def client_count(self) -> int:
        return sum(len(subs) for subs in self.subscribers.values())

    async def subscribe(self, slug: str) -> Subscriber:
        """Register a client. Every change after this call returns reaches its buffer.

        A blog new to this process starts its cursor at the stream's newest ID, read after the
        client is registered; the client's own catch-up (``XRANGE`` after its Last-Event-ID, done
        after this) covers everything up to there, so there is no gap between the two.
        """
        sub = Subscriber(slug, self.buffer)
        if self.closing:
            sub.close("shutdown")
        self.subscribers.setdefault(slug, set()).add(sub)
        metrics.SSE_CLIENTS.inc()
        if slug not in self.cursors:
            newest = await self._pool.xrevrange(keys.stream(slug), count=1)
            self.cursors.setdefault(slug, newest[0][0] if newest else "0-0")
            await self._wake()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self.subscribers.get(sub.slug)
        if subs is not None and sub in subs:
            subs.discard(sub)
            metrics.SSE_CLIENTS.dec()
            if not subs:
                del self.subscribers[sub.slug]

    async def _wake(self) -> None:
        """Interrupt the blocking read so that it includes the streams added since it started.

        Every addition wakes it: skipping a wake while another is in flight could leave a blog
        out of the read until the block times out.
        """
        async with self._pool.pipeline(transaction=False) as pipe:
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
            pipe.expire(self.wake_key, 3600)
            await pipe.execute()

    def _dispatch(self, slug: str, items: list[tuple[str, dict[str, str]]]) -> None:
        subs = self.subscribers.get(slug)
        for sid, fields in items:
            self.cursors[slug] = sid
            if not subs:
                continue
            frame = encode_event(sid, fields.get("type", "message"), fields.get("data", "{}"))
            parsed = streamids.parse(sid)
            for sub in tuple(subs):
                sub.offer(parsed, frame)
                if sub.closed:
                    self.unsubscribe(sub)
            metrics.SSE_EVENTS_SENT.inc(len(subs))

    async def _read_loop(self) -> None:
        backoff = 0.1
        while True:
            # Blogs nobody here reads any more are dropped from the read.
            for slug in [s for s in self.cursors if s not in self.subscribers]:
                del self.cursors[slug]
            streams = {keys.stream(slug): cursor for slug, cursor in self.cursors.items()}
            streams[self.wake_key] = self._wake_cursor
            try:
                response = await self._reader.xread(streams, count=READ_COUNT, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection refused/reset, Redis restarting, loading...
                self.connected.clear()
                log.warning("fan-out reader: Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.connected.set()
            backoff = 0.1
            for stream_key, items in response or ():
                if stream_key == self.wake_key:
                    self._wake_cursor = items[-1][0]
                else:
                    self._dispatch(keys.slug_of_stream(stream_key), items)

    def close_all(self, reason: str) -> None:
        """End every local stream (their responses finish cleanly) and refuse new ones."""
        self.closing = True
        for subs in tuple(self.subscribers.values()):
            for sub in tuple(subs):
                sub.close(reason)
                self.unsubscribe(sub)

    async def _housekeeping_loop(self) -> None:
        """Heartbeats, send timeouts and the server's shutdown, for every client in one pass.

        A heartbeat comment goes to every client at least every ``heartbeat`` seconds, encoded once.
        A client whose write has not returned for ``send_timeout`` seconds (it stopped reading and the
        server's buffers are full) is cut off. And because uvicorn waits for open responses to finish
        before it runs the lifespan shutdown, while an event stream never finishes by itself, the hub
        ends every stream as soon as the server starts to exit.
        """
        loop = asyncio.get_running_loop()
        tick = min(TICK, self.heartbeat, self.send_timeout)
        next_beat = loop.time() + self.heartbeat
        while True:
            await asyncio.sleep(max(0.0, min(tick, next_beat - loop.time())))
            if not self.closing and _server_exiting():
                self.close_all("shutdown")
            now = loop.time()
            beat = now >= next_beat
            if beat:
                next_beat = now + self.heartbeat
            late = now - self.send_timeout
            for subs in tuple(self.subscribers.values()):
                for sub in tuple(subs):
                    if sub.sending and sub.sending < late:
                        self._time_out(sub)
                    elif beat:
                        sub.offer(None, HEARTBEAT)
                    if sub.closed:
                        self.unsubscribe(sub)

    def _time_out(self, sub: Subscriber) -> None:
        sub.close("send timeout")
        metrics.SSE_CUT_OFF.inc()
        if sub.task is not None:
            sub.task.cancel()


def _server_exiting() -> bool:
    """True once uvicorn has been asked to exit (its SIGTERM handler is a method of its Server)."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
