"""Fan-out: one Redis reader per process, shared by every SSE client of that process.

The reader runs a single blocking read of the change log (``ChangeLog.read``: in Redis one
``XREAD BLOCK`` on its own connection) over all blogs that have at least one local reader. Each change
is presented (``liveblog.present``) and encoded to SSE bytes once and appended to its blog's
channel, a bounded history shared by the blog's local readers; a reader that falls further behind
than that history is cut off (it resumes with ``Last-Event-ID``), so a slow reader never slows the
others, the reader loop, or the process's memory.

A change in the set of blogs (a blog's first local reader) interrupts the blocking read
(``ChangeLog.wake``).

Every change carries its blog's change number (stream field ``n``: 1, 2, 3, ...). The reader keeps
the last one per blog; a number that does not follow it means the store lost or rolled back changes
(emptied, restored from an older backup, failed over to a lagging replica), which stream IDs cannot
show. The blog's readers then get a ``reset`` before anything that follows, and the channel's history
stops serving resumes from before it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import signal
from collections import deque

from sse_starlette import ServerSentEvent

from liveblog import metrics, streamids
from liveblog.changelog import Change, ChangeLog
from liveblog.present import Presenter

log = logging.getLogger(__name__)

BLOCK_MS = 15_000
READ_COUNT = 1_000
TICK = 0.5  # seconds between housekeeping passes (send timeouts, shutdown)
GC_YOUNG_THRESHOLD = 100_000
# Seconds during which a history check that found the store holding the history answers later
# resumes too (see Hub.history_holds).
HISTORY_CHECK_REUSE = 0.1


def encode_event(sid: str, event_type: str, data: str) -> bytes:
    """One SSE frame (LF line ends), by sse-starlette: data with line breaks becomes one ``data:``
    line per line, which the client joins back with ``\n``. Called once per change, not per reader."""
    return ServerSentEvent(data, event=event_type, id=sid, sep="\n").encode()


# A comment (what the contract promises, and what keeps proxies open) plus a named event without an
# ``id:``: EventSource never shows comments to JavaScript, so the page's watchdog listens for
# ``heartbeat`` to tell a quiet stream from a dead one. No ``id:``, so the resume point is unchanged.
HEARTBEAT = b": keep-alive\nevent: heartbeat\ndata: {}\n\n"
# No ``id:``: a client that reconnects keeps its resume point from before the rollback, which the
# resume check then answers with another ``reset``.
ROLLBACK_RESET = b'event: reset\ndata: {"reason":"the store lost changes; reload"}\n\n'


class Channel:
    """One blog's most recent frames, shared by all of its readers in this process.

    Publishing is O(1) whatever the number of readers: the frame is appended once and the one
    future they all wait on is resolved. Each reader keeps its own position (``Subscriber.cursor``)
    in the channel's history; one that falls more than ``limit`` frames behind has lost frames and
    is cut off (it resumes with ``Last-Event-ID``). So a slow reader costs no memory of its own.

    The history also serves resumes: every change after ``floor`` (the stream's newest ID when the
    channel began, later the newest one that left the history) up to ``newest`` is in ``frames``,
    so a reader resuming from an ID in that range catches up from memory, without Redis. That is
    what a reconnect storm mostly is. A resume from before ``floor`` may extend the history back
    (``backfill``, see ``Hub.resume``): a process taking over another's readers sees that first.
    """

    __slots__ = ("_changed", "checked", "checking", "closed", "filling", "first", "floor", "frames", "newest",
                 "readers", "resync", "since", "slug", "timezone", "writing")

    def __init__(self, slug: str, limit: int, timezone: str) -> None:
        self.slug = slug
        self.timezone = timezone  # the blog's, for the time labels of the changes presented here
        self.frames: deque[tuple[streamids.StreamId | None, bytes]] = deque(maxlen=limit)
        self.first = 0  # position of frames[0] in the channel's history
        self.since = 0  # position of the first frame that may serve a resume (moved by a rollback)
        self.resync = False  # after a rollback: the next change starts the history anew
        self.checking: asyncio.Future[bool] | None = None  # the history check resumes share
        self.checked = float("-inf")  # loop time at which the last check that said "held" began
        self.filling: asyncio.Future[None] | None = None  # the backfill resumes share
        self.readers: set[Subscriber] = set()
        self.writing: set[Subscriber] = set()  # readers whose sender is inside a write that blocked
        self.closed = False
        self.floor: streamids.StreamId | None = None  # None until the hub knows where the channel began
        self.newest: streamids.StreamId | None = None
        self._changed: asyncio.Future[None] | None = None

    @property
    def end(self) -> int:
        """Position of the next frame to be published."""
        return self.first + len(self.frames)

    def publish(self, sid: streamids.StreamId | None, frame: bytes) -> None:
        if self.resync and sid is not None:
            self.floor, self.since, self.resync = sid, self.end, False
        if len(self.frames) == self.frames.maxlen:
            dropped = self.frames[0][0]
            if dropped is not None and self.first >= self.since:
                self.floor = dropped
            self.first += 1
        self.frames.append((sid, frame))
        if sid is not None:
            self.newest = sid
        self._notify()

    def changes_after(self, after: streamids.StreamId) -> list[tuple[streamids.StreamId, bytes]] | None:
        """Every change after ``after`` from memory, oldest first; None when the history does not
        hold ``after`` itself (or its floor) and everything after it (the caller asks Redis)."""
        if self.floor is None or after < self.floor or after > (self.newest or self.floor):
            return None
        found = after == self.floor
        changes = []
        for sid, frame in itertools.islice(self.frames, max(0, self.since - self.first), None):
            if sid is not None:
                if sid > after:
                    changes.append((sid, frame))
                elif sid == after:
                    found = True
        return changes if found else None

    def backfill(self, after: streamids.StreamId, changes: list[tuple[streamids.StreamId, bytes]]) -> bool:
        """Extend the history back to ``after`` (a change the store holds): ``changes`` are every
        change after it up to ``floor`` included, oldest first. Done (True) only when they fit in the
        room the history has left and nothing since its start is stale (no rollback inside it).
        Readers' positions do not move: the frames go in before ``first``."""
        if (self.floor is None or self.resync or self.since > self.first or not changes
                or changes[-1][0] != self.floor or after >= changes[0][0]
                or len(changes) > (self.frames.maxlen or 0) - len(self.frames)):
            return False
        self.frames.extendleft(reversed(changes))
        self.first -= len(changes)
        self.newest = self.newest or self.floor
        self.since, self.floor = self.first, after
        return True

    def invalidate(self) -> None:
        """The store lost or rolled back changes: every reader gets a ``reset`` before anything that
        follows, and the history serves no resume until the next change starts it anew."""
        self.publish(None, ROLLBACK_RESET)
        self.since, self.floor, self.resync = self.end, None, True

    def changed(self) -> asyncio.Future[None]:
        """A future resolved at the next publication (or when the channel closes).

        Await it directly and never cancel a task waiting on it: it is shared by every reader.
        """
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
            if self.closed:
                self._changed.set_result(None)
        return self._changed

    def close(self) -> None:
        """Release every reader still parked on this channel (all of them have ended by now)."""
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        waiter, self._changed = self._changed, None
        if waiter is not None:
            waiter.set_result(None)


class Subscriber:
    """One SSE client: its position in its blog's channel, and why its stream ended.

    ``closed`` is set once, by whoever ends the stream: the hub (fell behind, send timeout, server
    shutdown) or the response (client disconnect). ``sending`` is the loop time at which the sender
    started a write that has not returned yet (0.0 when idle): the hub's housekeeping uses it to cut
    off a client that stopped reading, without a timer per write. ``task`` is the sender's task, which
    the hub cancels only while it is stuck in such a write. Only such stuck readers can fall behind
    unnoticed, so only they (``Channel.writing``) are checked at each publication.
    """

    __slots__ = ("channel", "closed", "cursor", "sending", "task")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.cursor = channel.end
        self.closed: str | None = None
        self.sending = 0.0
        self.task: asyncio.Task[None] | None = None

    @property
    def slug(self) -> str:
        return self.channel.slug

    def begin_write(self) -> None:
        """Called just before each write. A write normally returns at once; one that is still
        pending when any other code runs is stuck, which is what the hub looks for."""
        self.sending = asyncio.get_running_loop().time()
        self.channel.writing.add(self)

    def end_write(self) -> None:
        self.sending = 0.0
        self.channel.writing.discard(self)

    def idle(self) -> bool:
        """Nothing to send yet and the stream goes on: the sender should ``await
        self.channel.changed()``. (A disconnect is noticed at the next frame or heartbeat: waking
        one reader would mean waking them all.)"""
        return self.cursor == self.channel.end and not self.closed

    def take(self, last: streamids.StreamId | None) -> tuple[bytes, streamids.StreamId | None]:
        """Every frame published since the last call, as one write, minus frames at or below
        ``last`` (already sent during the catch-up); returns it with the new last stream ID sent.
        A reader that fell behind the channel's history is closed instead."""
        channel = self.channel
        new = channel.end - self.cursor
        self.cursor = channel.end
        if new > len(channel.frames):
            self.closed = "overflow"
            metrics.SSE_CUT_OFF.inc()
            return b"", last
        frames = []
        for i in range(-new, 0):
            sid, frame = channel.frames[i]
            if sid is not None:
                if last is not None and sid <= last:
                    continue
                last = sid
            frames.append(frame)
        return b"".join(frames), last


class Hub:
    """The process-wide reader and registry of local SSE subscribers."""

    def __init__(self, changes: ChangeLog, presenter: Presenter, *, buffer: int = 256, heartbeat: float = 15.0,
                 send_timeout: float = 10.0) -> None:
        self.changes = changes  # its blocking read is this hub's alone
        self.presenter = presenter
        self.buffer = buffer
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.closing = False
        self.channels: dict[str, Channel] = {}
        self.cursors: dict[str, str] = {}
        self.numbers: dict[str, int | None] = {}  # last change number read per blog (None: unknown)
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        _tune_gc()
        self._tasks = [asyncio.create_task(self._read_loop(), name="fanout-reader"),
                       asyncio.create_task(self._housekeeping_loop(), name="fanout-housekeeping")]

    async def stop(self) -> None:
        self.close_all("shutdown")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.changes.close()

    async def subscribe(self, slug: str, timezone: str) -> Subscriber:
        """Register a client of blog ``slug`` (whose timezone is ``timezone``). Every change after this
        call returns reaches its buffer.

        A blog new to this process starts its cursor at the stream's newest ID, read after the
        client is registered; the client's own catch-up (``XRANGE`` after its Last-Event-ID, done
        after this) covers everything up to there, so there is no gap between the two.
        A Redis error on the way unregisters the client again (and drops the blog from the read when
        it was its only reader) before it propagates.
        """
        channel = self.channels.get(slug)
        if channel is None:
            channel = self.channels[slug] = Channel(slug, self.buffer, timezone)
            if slug in self.cursors:  # the read goes on from there, so the channel misses nothing after it
                channel.floor = streamids.parse(self.cursors[slug])
        sub = Subscriber(channel)
        channel.readers.add(sub)
        metrics.SSE_CLIENTS.inc()
        if self.closing:
            self._cut(sub, "shutdown")
        if slug not in self.cursors:
            try:
                newest = await self.changes.newest(slug)
                if slug not in self.cursors:
                    self.cursors[slug] = newest.id if newest else "0-0"
                    self.numbers[slug] = newest.number if newest else None
                if channel.floor is None and not channel.resync and self.channels.get(slug) is channel:
                    channel.floor = streamids.parse(self.cursors[slug])
                await self.changes.wake()  # the read in progress now includes this blog
            except BaseException:
                self.unsubscribe(sub)
                if slug not in self.channels:
                    self._forget(slug)
                raise
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        channel = sub.channel
        if sub in channel.readers:
            channel.readers.discard(sub)
            metrics.SSE_CLIENTS.dec()
            if not channel.readers:
                channel.close()
                if self.channels.get(channel.slug) is channel:
                    del self.channels[channel.slug]

    async def history_holds(self, channel: Channel) -> bool:
        """Whether the store still holds the newest change of ``channel``'s history (so the history
        may serve a resume). A store emptied or restored without any change since is seen here, not
        by the reader; the channel is then invalidated. Concurrent resumes (a reconnect storm) share
        one check in flight, and a check that began less than ``HISTORY_CHECK_REUSE`` ago and said
        "held" answers the resumes that follow it, so a herd of thousands of reconnects a second
        costs about ten round trips a second, not one each. (A store emptied within that window is
        still noticed: by the first resume after it, and by every reader at the next change, whose
        number does not follow.)"""
        now = asyncio.get_running_loop().time()
        if now - channel.checked < HISTORY_CHECK_REUSE:
            return True
        if channel.checking is None:
            channel.checking = asyncio.ensure_future(self._check_history(channel, now))
            channel.checking.add_done_callback(lambda _: setattr(channel, "checking", None))
        return await asyncio.shield(channel.checking)

    async def resume(self, channel: Channel,
                     after: streamids.StreamId) -> list[tuple[streamids.StreamId, bytes]] | None:
        """:meth:`Channel.changes_after`, first extending the history back to ``after`` when it begins
        later (see :meth:`_backfill`). None: the caller asks the store."""
        for _ in range(2):  # the backfill in flight may be another resume point's; then one of our own
            cached = channel.changes_after(after)
            if cached is not None or channel.floor is None or after >= channel.floor:
                return cached
            if channel.filling is None:
                channel.filling = asyncio.ensure_future(self._backfill(channel, after))
                channel.filling.add_done_callback(lambda _: setattr(channel, "filling", None))
            await asyncio.shield(channel.filling)
        return channel.changes_after(after)

    async def _backfill(self, channel: Channel, after: streamids.StreamId) -> None:
        """Read from the store the changes between ``after`` and the history's floor, and put them in
        the history, when they fit. A process that takes over a herd of readers (a deploy: another
        process went away) begins its history at the first reconnect, a little later than where they
        all left off; this one read makes every other reconnect of the herd a memory read. A resume
        point the store does not hold is left to the caller (the answer is a ``reset``)."""
        floor, slug = channel.floor, channel.slug
        room = (channel.frames.maxlen or 0) - len(channel.frames)
        if floor is None or room <= 0 or await self.changes.needs_reset(slug, after):
            return
        found = await self.changes.between(slug, streamids.fmt(after), streamids.fmt(floor), room + 1)
        if not found or len(found) > room or streamids.parse(found[-1].id) != floor or channel.floor != floor:
            return  # too many to keep, or the history moved meanwhile: the caller reads the store
        tz, present = channel.timezone, self.presenter.change
        channel.backfill(after, [(streamids.parse(c.id) or (0, 0),
                                  encode_event(c.id, c.type, present(c.type, c.data, tz))) for c in found])

    async def _check_history(self, channel: Channel, began: float) -> bool:
        newest = channel.newest or channel.floor
        if newest is None or newest == (0, 0):
            return False
        sid = streamids.fmt(newest)
        if await self.changes.kept(channel.slug, sid):
            channel.checked = began
            return True
        if channel.newest == newest and not channel.resync:
            log.warning("blog %s: change %s is gone from the store (emptied or rolled back); resetting its "
                        "readers", channel.slug, sid)
            self.numbers[channel.slug] = None  # the next change starts the sequence anew
            self._publish(channel, None, None, rollback=True)
        return False

    def _forget(self, slug: str) -> None:
        """Drop a blog from the read (nobody here reads it)."""
        self.cursors.pop(slug, None)
        self.numbers.pop(slug, None)

    def _dispatch(self, slug: str, changes: list[Change]) -> None:
        channel = self.channels.get(slug)
        for change in changes:
            sid = change.id
            self.cursors[slug] = sid
            number, last = change.number, self.numbers.get(slug)
            self.numbers[slug] = number
            rollback = number is not None and last is not None and number != last + 1
            if rollback:
                log.warning("blog %s: change %s follows change %s: the store lost or rolled back changes; "
                            "resetting its readers", slug, number, last)
            if channel is not None:
                data = self.presenter.change(change.type, change.data, channel.timezone)
                self._publish(channel, streamids.parse(sid), encode_event(sid, change.type, data), rollback=rollback)
                metrics.SSE_EVENTS_SENT.inc(len(channel.readers))

    def announce(self, slug: str, frame: bytes) -> None:
        """Send ``frame`` (an event with no ``id:``, not part of the change log: it is not replayed on
        resume) to this process's readers of ``slug``, if it has any."""
        channel = self.channels.get(slug)
        if channel is not None:
            self._publish(channel, None, frame)

    def _publish(self, channel: Channel, sid: streamids.StreamId | None, frame: bytes | None, *,
                 rollback: bool = False) -> None:
        """Publish (after a ``reset`` when the store lost changes), then cut off the stuck readers
        that the new frames left behind the history."""
        if rollback:
            channel.invalidate()
        if frame is not None:
            channel.publish(sid, frame)
        if channel.writing:
            for sub in [s for s in channel.writing if s.cursor < channel.first]:
                self._cut(sub, "overflow")

    async def _read_loop(self) -> None:
        backoff = 0.1
        while True:
            # Blogs nobody here reads any more are dropped from the read.
            for slug in [s for s in self.cursors if s not in self.channels]:
                self._forget(slug)
            try:
                found = await self.changes.read(dict(self.cursors), READ_COUNT, BLOCK_MS)
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
            for slug, changes in found.items():
                self._dispatch(slug, changes)

    def close_all(self, reason: str) -> None:
        """End every local stream (their responses finish cleanly) and refuse new ones."""
        self.closing = True
        for channel in tuple(self.channels.values()):
            for sub in tuple(channel.readers):
                self._cut(sub, reason)

    def _cut(self, sub: Subscriber, reason: str) -> None:
        """End one stream. A sender stuck in a write is cancelled (only then: it is otherwise parked
        on its channel's shared future, which a cancellation would cancel for everybody)."""
        if not sub.closed:
            sub.closed = reason
            if reason != "shutdown":
                metrics.SSE_CUT_OFF.inc()
            if sub.sending and sub.task is not None:
                sub.task.cancel()
        self.unsubscribe(sub)

    async def _housekeeping_loop(self) -> None:
        """Heartbeats, send timeouts and the server's shutdown.

        A heartbeat comment goes to every channel at least every ``heartbeat`` seconds. A client
        whose write has not returned for ``send_timeout`` seconds (it stopped reading and the
        buffers are full) is cut off. And because
        uvicorn waits for open responses to finish before it runs the lifespan shutdown, while an
        event stream never finishes by itself, the hub ends every stream once the server exits.
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
            for channel in tuple(self.channels.values()):
                if beat:
                    self._publish(channel, None, HEARTBEAT)
                for sub in [s for s in channel.writing if s.sending < late]:
                    self._cut(sub, "send timeout")


def _tune_gc() -> None:
    """Let a fan-out burst's temporaries die young instead of being collected mid-burst.

    A process holding 10,000 streams has about a million GC-tracked objects (~100 per connection),
    and a change to all of them allocates tens of thousands of short-lived ones. With CPython's
    default first threshold (700) that burst runs dozens of collections, promotes objects that are
    about to die, and now and then triggers a full collection of every connection's objects (0.3-1 s
    measured here, during the fan-out). A first threshold of 100,000 halved the server's CPU per
    fan-out and removed those pauses (see bench/); cycles are still collected, just in larger batches.
    """
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, max(middle, 20), oldest)


def _server_exiting() -> bool:
    """True once uvicorn has been asked to exit (its SIGTERM handler is a method of its Server)."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
