"""Fan-out: one Redis reader per process, shared by every SSE client of that process.

The reader runs a single blocking read of the change log (``ChangeLog.read``: in Redis one
``XREAD BLOCK`` on its own connection) over all blogs that have at least one local reader. Each change
is presented (``liveblog.present``), encoded to SSE bytes and chunk-framed once, appended to its blog's
channel (a bounded history shared by the blog's local readers) and written straight to the connection
of every reader that is live: no task per reader and no task step per reader per change. A reader
whose connection stopped draining (its write buffer is past the transport's high-water mark) gets
nothing more until it drains; one that falls further behind than the history is cut off (it resumes
with ``Last-Event-ID``), so a slow reader never slows the others, the reader loop, or the process's
memory.

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
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from sse_starlette import ServerSentEvent

from liveblog import metrics, streamids
from liveblog.changelog import Change, ChangeLog
from liveblog.httpserver import server_exiting
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


def chunked(data: bytes) -> bytes:
    """``data`` as one chunk of an HTTP/1.1 chunked body: the transfer coding of an event stream
    (uvicorn's for a response without a length, which the stream's head announces), byte for byte as
    uvicorn's own ``send`` frames a body, so a live frame is framed once for all readers."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Sink(Protocol):
    """A reader's connection, as the hub writes to it once the reader is live (``httpserver``'s
    protocol). Its events come back through :meth:`Subscriber.paused`, :meth:`Subscriber.resumed`
    and :meth:`Subscriber.lost`."""

    @property
    def transport(self) -> asyncio.WriteTransport: ...

    def end_stream(self, clean: bool) -> None:
        """End the response: with its last chunk when ``clean``, else by dropping the connection
        (a client that stopped reading would never take the last chunk)."""


class Channel:
    """One blog's most recent frames, shared by all of its readers in this process.

    Publishing appends the frame once and writes it, chunk-framed once, to every live reader's
    connection. A reader that is not live (catching up) or whose connection stopped draining keeps
    its own position (``Subscriber.cursor``) in the channel's history and takes what it missed from
    there; one that falls more than ``limit`` frames behind has lost frames and is cut off (it
    resumes with ``Last-Event-ID``). So a slow reader costs no memory of its own.

    The history also serves resumes: every change after ``floor`` (the stream's newest ID when the
    channel began, later the newest one that left the history) up to ``newest`` is in ``frames``,
    so a reader resuming from an ID in that range catches up from memory, without Redis. That is
    what a reconnect storm mostly is. A resume from before ``floor`` may extend the history back
    (``backfill``, see ``Hub.resume``): a process taking over another's readers sees that first.
    """

    __slots__ = ("beat_at", "checked", "checking", "filling", "first", "floor", "frames", "newest", "readers",
                 "resync", "since", "slug", "timezone", "writing")

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
        self.writing: set[Subscriber] = set()  # readers inside a write that blocked (connection not draining)
        self.floor: streamids.StreamId | None = None  # None until the hub knows where the channel began
        self.newest: streamids.StreamId | None = None
        self.beat_at = time.monotonic()  # when its readers were last written a heartbeat (see Hub._housekeeping_loop)

    @property
    def end(self) -> int:
        """Position of the next frame to be published."""
        return self.first + len(self.frames)

    def publish(self, sid: streamids.StreamId | None, frame: bytes, lead: bytes = b"") -> None:
        """Append ``frame`` to the history and write it to every live reader, after ``lead`` (a
        heartbeat riding along: written in the same chunk, not kept in the history)."""
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
        chunk = chunked(lead + frame)
        for sub in tuple(self.readers):  # (a copy: a write never ends a stream at once, but be safe)
            if sub.sink is not None and not sub.sending:
                if sub.skip_to is not None and sid is not None:
                    if sid <= sub.skip_to:
                        continue  # its catch-up already had it
                    sub.skip_to = None
                sub.sink.transport.write(chunk)

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


class Subscriber:
    """One SSE client: its position in its blog's channel, its connection once live, and why its
    stream ended.

    A stream has two phases. While it catches up, its response task sends (``task``; ``sink`` is
    None) and ``sending`` is the loop time at which a write that has not returned yet started (0.0
    when idle): the hub's housekeeping uses it to cut off a client that stopped reading, without a
    timer per write, and cancels the task only while it is stuck in such a write. Once live
    (:meth:`Hub.go_live`), the response task has returned and the channel writes every frame to
    ``sink``; ``sending`` is then the time at which the connection stopped draining (:meth:`paused`),
    from which point the reader takes what it missed from the history when it drains again
    (:meth:`resumed`). Only such stuck readers (``Channel.writing``) can fall behind, so only they are
    checked at each publication.

    ``closed`` is set once, by whoever ends the stream: the hub (fell behind, send timeout, server
    shutdown) or the connection (client disconnect, :meth:`lost`). ``client`` is the address the
    stream is counted by (``Hub.released`` hands it back). ``skip_to`` is set when the catch-up, read
    from Redis, went past what the hub had published yet: the stream ID up to which frames are not
    written again.
    """

    __slots__ = ("channel", "client", "closed", "cursor", "hub", "sending", "sink", "skip_to", "task")

    def __init__(self, hub: Hub, channel: Channel, client: str = "") -> None:
        self.hub = hub
        self.channel = channel
        self.client = client
        self.cursor = channel.end
        self.closed: str | None = None
        self.sending = 0.0
        self.sink: Sink | None = None
        self.skip_to: streamids.StreamId | None = None
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

    def take(self, last: streamids.StreamId | None) -> tuple[bytes, streamids.StreamId | None] | None:
        """Every frame published since the last call, as one write, minus frames at or below
        ``last`` (already sent during the catch-up); returns it with the new last stream ID sent.
        None when the reader fell behind the channel's history (the caller cuts it off)."""
        channel = self.channel
        new = channel.end - self.cursor
        self.cursor = channel.end
        if new > len(channel.frames):
            return None
        frames = []
        for i in range(-new, 0):
            sid, frame = channel.frames[i]
            if sid is not None:
                if last is not None and sid <= last:
                    continue
                last = sid
            frames.append(frame)
        return b"".join(frames), last

    # Connection events (from the sink's protocol).
    def paused(self) -> None:
        """The connection's write buffer is full: the client is not reading. Every frame published so
        far has been written; the next ones wait in the history."""
        if self.sink is not None and not self.closed and not self.sending:
            self.cursor = self.channel.end
            self.begin_write()

    def resumed(self) -> None:
        """The connection drains again: write what was published meanwhile (or cut the reader off if
        that has left the history)."""
        if self.sink is None or self.closed or not self.sending:
            return
        self.end_write()
        taken = self.take(self.skip_to)
        if taken is None:
            self.hub.cut(self, "overflow")
            return
        data, last = taken
        if last != self.skip_to:
            self.skip_to = None
        if data:
            self.sink.transport.write(chunked(data))

    def lost(self) -> None:
        """The client went away (or half-closed its side): the stream ends now, not at the next write."""
        self.sink = None
        self.closed = self.closed or "disconnect"
        self.hub.unsubscribe(self)


class Hub:
    """The process-wide reader and registry of local SSE subscribers."""

    def __init__(self, changes: ChangeLog, presenter: Presenter, *, buffer: int = 256, heartbeat: float = 15.0,
                 send_timeout: float = 10.0, released: Callable[[str], None] | None = None,
                 publishing: Callable[[], None] | None = None) -> None:
        self.changes = changes  # its blocking read is this hub's alone
        self.released = released  # called with a subscriber's ``client`` once, when it leaves
        # Called before and after each batch of changes that has local readers is written to them (the
        # photo decoders step aside from the first write until a while after the last, ``liveblog.pausing``).
        self.publishing = publishing
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

    async def subscribe(self, slug: str, timezone: str, client: str = "") -> Subscriber:
        """Register a client of blog ``slug`` (whose timezone is ``timezone``), counted by the address
        ``client``. Every change after this call returns reaches it.

        A blog new to this process starts its cursor at the stream's newest ID, read after the
        client is registered; the client's own catch-up (``XRANGE`` after its Last-Event-ID, done
        after this) covers everything up to there, so there is no gap between the two.
        A Redis error on the way unregisters the client again (``released`` is called, and the blog
        is dropped from the read when it was its only reader) before it propagates.
        """
        channel = self.channels.get(slug)
        if channel is None:
            channel = self.channels[slug] = Channel(slug, self.buffer, timezone)
            if slug in self.cursors:  # the read goes on from there, so the channel misses nothing after it
                channel.floor = streamids.parse(self.cursors[slug])
        sub = Subscriber(self, channel, client)
        channel.readers.add(sub)
        metrics.SSE_CLIENTS.inc()
        if self.closing:
            self.cut(sub, "shutdown")
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
        """``sub`` leaves (idempotent)."""
        channel = sub.channel
        if sub in channel.readers:
            channel.readers.discard(sub)
            channel.writing.discard(sub)
            metrics.SSE_CLIENTS.dec()
            if not channel.readers and self.channels.get(channel.slug) is channel:
                del self.channels[channel.slug]
            if self.released is not None:
                self.released(sub.client)

    def go_live(self, sub: Subscriber, sink: Sink, last: streamids.StreamId | None) -> bool:
        """Hand ``sub``'s stream over to its channel once its catch-up (everything up to ``last``) has
        been sent: what was published meanwhile is written now, and every later frame by the channel
        as it is published, straight to ``sink``, so the response task may return. False when the
        stream has ended instead (the caller finishes the response)."""
        taken = None if sub.closed else sub.take(last)
        if taken is None:
            self.cut(sub, "overflow")  # (a no-op for a stream that had already ended)
            return False
        data, last = taken
        sub.sink = sink
        if last is not None and (sub.channel.newest is None or last > sub.channel.newest):
            sub.skip_to = last
        if data:
            sink.transport.write(chunked(data))
        return True

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
                self._publish(channel, streamids.parse(sid), encode_event(sid, change.type, data), rollback=rollback,
                              lead=self._heartbeat_lead(channel))
                metrics.SSE_EVENTS_SENT.inc(len(channel.readers))

    def announce(self, slug: str, frame: bytes) -> None:
        """Send ``frame`` (an event with no ``id:``, not part of the change log: it is not replayed on
        resume) to this process's readers of ``slug``, if it has any."""
        channel = self.channels.get(slug)
        if channel is not None:
            self._publish(channel, None, frame)

    def _heartbeat_lead(self, channel: Channel) -> bytes:
        """The heartbeat, to go out with a change, when the channel's last one is half an interval old;
        else nothing (see :meth:`_housekeeping_loop`)."""
        now = time.monotonic()
        if now - channel.beat_at < self.heartbeat / 2:
            return b""
        channel.beat_at = now
        return HEARTBEAT

    def _publish(self, channel: Channel, sid: streamids.StreamId | None, frame: bytes | None, *,
                 rollback: bool = False, lead: bytes = b"") -> None:
        """Publish (after a ``reset`` when the store lost changes), then cut off the stuck readers
        that the new frames left behind the history."""
        if rollback:
            channel.invalidate()
        if frame is not None:
            channel.publish(sid, frame, lead)
        if channel.writing:
            for sub in [s for s in channel.writing if s.cursor < channel.first]:
                self.cut(sub, "overflow")

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
            publishing = self.publishing if any(slug in self.channels for slug in found) else None
            if publishing is not None:
                publishing()
            for slug, changes in found.items():
                self._dispatch(slug, changes)
            if publishing is not None:
                publishing()  # again: the pause lasts its ``seconds`` past the batch's last write

    def close_all(self, reason: str) -> None:
        """End every local stream (their responses finish cleanly) and refuse new ones."""
        self.closing = True
        for channel in tuple(self.channels.values()):
            for sub in tuple(channel.readers):
                self.cut(sub, reason)

    def cut(self, sub: Subscriber, reason: str) -> None:
        """End one stream. A live one ends here (dropping a connection that stopped draining); a
        catching-up one ends in its response task, which is cancelled only while stuck in a write
        (it otherwise sees ``closed`` when it goes live)."""
        if not sub.closed:
            sub.closed = reason
            if reason != "shutdown":
                metrics.SSE_CUT_OFF.inc()
            sink, sub.sink = sub.sink, None
            if sink is not None:
                sink.end_stream(clean=not sub.sending)
            elif sub.sending and sub.task is not None:
                sub.task.cancel()
        self.unsubscribe(sub)

    async def _housekeeping_loop(self) -> None:
        """Heartbeats, send timeouts and the server's shutdown.

        Every stream gets a heartbeat at least every ``heartbeat`` seconds (the contract's comment line
        for proxies). On a blog with changes it rides along with a change, in the same write, once the
        last one is half an interval old (:meth:`_heartbeat_lead`); only a channel that had none for
        ``heartbeat`` seconds less one tick gets a pass of its own. A pass writing to every one of
        10,000 readers takes as long as a change's fan-out (0.1-0.2 s), and a change arriving meanwhile
        waited for it. A client
        that has not drained its connection for ``send_timeout`` seconds (it stopped reading and the
        buffers are full: a catch-up write has not returned, or a live connection stayed past its
        high-water mark) is cut off. And because
        uvicorn waits for open responses to finish before it runs the lifespan shutdown, while an
        event stream never finishes by itself, the hub ends every stream once the server exits.
        """
        loop = asyncio.get_running_loop()
        tick = min(TICK, self.heartbeat, self.send_timeout)
        while True:
            await asyncio.sleep(tick)
            if not self.closing and server_exiting():
                self.close_all("shutdown")
            late = loop.time() - self.send_timeout
            now = time.monotonic()  # (the channels' clock)
            for channel in tuple(self.channels.values()):
                if channel.beat_at <= now - (self.heartbeat - tick):
                    channel.beat_at = now
                    self._publish(channel, None, HEARTBEAT)
                for sub in [s for s in channel.writing if s.sending < late]:
                    self.cut(sub, "send timeout")


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
