"""``GET /blogs/{slug}/events``: server-sent events with resume.

The client is registered with the process's hub *before* it catches up from the stream, and every
frame carries its stream ID, so the hand-over from catch-up to live frames has no gap; frames at or
below the last ID already sent are skipped, so it has no duplicate either.
"""

from __future__ import annotations

import asyncio
import random

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from liveblog import streamids
from liveblog.changelog import ChangeLog
from liveblog.fanout import Hub, Subscriber, encode_event
from liveblog.httpserver import stream_connection
from liveblog.store import Store
from liveblog.webapp.clients import StreamSlots, client_key
from liveblog.webapp.inputs import slug_param
from liveblog.webapp.problems import Problem

CATCH_UP_PAGE = 100  # changes read from Redis at a time (their frames are written by bytes: _Batch)
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]


def _resume_point(request: Request) -> streamids.StreamId | None:
    raw = request.headers.get("last-event-id")
    if raw is None or raw == "":
        raw = request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    parsed = streamids.parse(raw)
    if parsed is None:
        raise Problem(400, f"Last-Event-ID must be a stream ID such as 1732540000000-0, not {raw[:80]!r}")
    return parsed


class EventStream:
    """The ASGI response of one reader: its catch-up, then a hand-over to the hub.

    The response task sends the ``retry:`` and the catch-up, then hands the connection to the hub
    (``Hub.go_live``) and returns: from then on, each change's frame, encoded and chunk-framed once,
    is written by the hub straight to every live reader's connection, so an idle reader holds no task
    and no coroutine frames (this request's middleware stack included), and a change costs one write
    per reader, no task step. The connection (``httpserver``'s protocol, found in the scope's
    extensions) reports the client's disconnect and its write buffer filling and draining to the
    subscriber directly: no listener task either. The send timeout and the heartbeats are the hub's:
    one pass over all clients, not a timer each.
    """

    def __init__(self, request: Request, sub: Subscriber, after: streamids.StreamId | None) -> None:
        self.request = request
        self.sub = sub
        self.after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.sub
        hub: Hub = self.request.app.state.hub
        try:
            connection = stream_connection(scope)
            connection.listen(sub)  # a disconnect now ends the stream at once
            sub.task = asyncio.current_task()
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            last = await self._catch_up(send)
            if hub.go_live(sub, connection, last):
                connection.take_over()  # this task returns; the response goes on
                return
            if sub.closed != "disconnect":
                await _send(send, sub, b"", more=False)
        except asyncio.CancelledError:
            if sub.closed is None:
                raise
            # Cut off by the hub while stuck in a write: the server closes the connection.
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            sub.task = None
            if sub.sink is None:
                hub.unsubscribe(sub)

    async def _catch_up(self, send: Send) -> streamids.StreamId | None:
        """``retry:``, then every change after the client's resume point (or a ``reset``): from the
        channel's history when it covers the resume point or can be extended back to it (one read
        shared by a herd of resumes, ``Hub.resume``), else from the stream in Redis."""
        changes: ChangeLog = self.request.app.state.store.changes
        sub, after = self.sub, self.after
        slug = sub.slug
        settings = self.request.app.state.settings
        out = _Batch(send, sub, settings.sse_catch_up_bytes)
        # A random reconnect delay per stream spreads the herd when a process goes away.
        await out.add(f"retry: {random.randint(settings.retry_min_ms, settings.retry_max_ms)}\n\n".encode())
        last = after
        limit = settings.sse_max_catch_up
        hub: Hub = self.request.app.state.hub
        cached = None if after is None else await hub.resume(sub.channel, after)
        if cached is not None and not await hub.history_holds(sub.channel):
            cached = None  # the store lost what the history holds: ask it (the answer is a reset)
        if cached is not None and len(cached) <= limit:
            for _, frame in cached:
                await out.add(frame)
            if cached:
                last = cached[-1][0]
        elif cached is not None:
            frame, last = await _reset(changes, slug, "too far behind")
            await out.add(frame)
        elif after is not None:
            if await changes.needs_reset(slug, after):
                frame, last = await _reset(changes, slug, "resume point no longer available")
                await out.add(frame)
            else:
                # One page of changes at a time, their frames written whenever they reach the byte
                # budget: a resume holds at most one page of changes and about the budget of frames.
                # More than `limit` behind gets a reset instead; counting is needed only when the first
                # page is full (most resumes are a few changes behind).
                page = await changes.after(slug, streamids.fmt(after), min(CATCH_UP_PAGE, limit + 1))
                if len(page) > limit or (len(page) == CATCH_UP_PAGE and await changes.count_after(
                        slug, streamids.fmt(after), limit + 1) > limit):
                    frame, last = await _reset(changes, slug, "too far behind")
                    await out.add(frame)
                    page = []
                present, tz = self.request.app.state.presenter.change, sub.channel.timezone
                while page:
                    for change in page:
                        await out.add(encode_event(change.id, change.type, present(change.type, change.data, tz)))
                    last = streamids.parse(page[-1].id)
                    if len(page) < CATCH_UP_PAGE:
                        break
                    page = await changes.after(slug, page[-1].id, CATCH_UP_PAGE)
        await out.flush()
        return last


class _Batch:
    """Frames gathered into few writes: written as soon as they reach ``budget`` bytes (and by
    :meth:`flush`), so a catch-up of large changes never holds much more than ``budget`` of frames."""

    __slots__ = ("budget", "frames", "send", "size", "sub")

    def __init__(self, send: Send, sub: Subscriber, budget: int) -> None:
        self.send, self.sub, self.budget = send, sub, budget
        self.frames: list[bytes] = []
        self.size = 0

    async def add(self, frame: bytes) -> None:
        self.frames.append(frame)
        self.size += len(frame)
        if self.size >= self.budget:
            await self.flush()

    async def flush(self) -> None:
        if self.frames:
            data, self.frames, self.size = b"".join(self.frames), [], 0
            await _send(self.send, self.sub, data)


async def _reset(changes: ChangeLog, slug: str, reason: str) -> tuple[bytes, streamids.StreamId | None]:
    """The ``reset`` frame (the page reloads) and the position it leaves the reader at."""
    newest = await changes.newest_id(slug)
    return encode_event(newest, "reset", f'{{"reason":"{reason}; reload"}}'), streamids.parse(newest)


async def _send(send: Send, sub: Subscriber, data: bytes, more: bool = True) -> None:
    sub.begin_write()
    try:
        await send({"type": "http.response.body", "body": data, "more_body": more})
    finally:
        sub.end_write()


async def events(request: Request) -> Response | EventStream:
    slug = slug_param(request)
    store: Store = request.app.state.store
    hub: Hub = request.app.state.hub
    # 404 for an unknown blog, before the stream starts (cached: a storm of readers costs no lookups)
    timezone = await store.timezone(slug)
    after = _resume_point(request)
    slots: StreamSlots = request.app.state.streams
    client = client_key(request.scope)
    slots.acquire(client)  # 429/503 past the per-client or the process's stream cap
    # Registered before the response starts: once a client has seen the headers, every later change
    # reaches it. The hub gives the slot back when the subscriber leaves (a failure here included).
    sub = await hub.subscribe(slug, timezone, client)
    return EventStream(request, sub, after)


routes = [Route("/blogs/{slug}/events", events, methods=["GET"])]
