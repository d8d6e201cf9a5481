"""``GET /blogs/{slug}/events``: server-sent events with resume.

The client is registered with the process's hub *before* it catches up from the stream, and every
frame carries its stream ID, so the hand-over from catch-up to live frames has no gap; frames at or
below the last ID already sent are skipped, so it has no duplicate either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog import streamids
from liveblog.fanout import Hub, Subscriber, encode_event
from liveblog.store import Store
from liveblog.webapp.problems import Problem

CATCH_UP_PAGE = 500


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


async def _needs_reset(store: Store, slug: str, after: streamids.StreamId) -> bool:
    """True when changes after ``after`` may have been trimmed away, or the ID is not ours."""
    newest = streamids.parse(await store.last_change_id(slug))
    if newest is not None and after > newest:
        return True
    trimmed = await store.trimmed_upto(slug)
    return trimmed is not None and after < (streamids.parse(trimmed) or (0, 0))


async def _frames(request: Request, sub: Subscriber, after: streamids.StreamId | None) -> AsyncIterator[bytes]:
    store: Store = request.app.state.store
    hub: Hub = request.app.state.hub
    settings = request.app.state.settings
    slug = sub.slug
    try:
        yield f"retry: {settings.retry_ms}\n\n".encode()
        last = after
        if after is not None:
            if await _needs_reset(store, slug, after):
                newest = await store.last_change_id(slug)
                yield encode_event(newest, "reset", '{"reason":"resume point no longer available; reload"}')
                last = streamids.parse(newest)
            else:
                while True:
                    page = await store.changes_after(slug, streamids.fmt(last), CATCH_UP_PAGE)
                    for change in page:
                        yield encode_event(change.id, change.type, change.data)
                        last = streamids.parse(change.id)
                    if len(page) < CATCH_UP_PAGE:
                        break
        while True:
            await sub.wait()
            if sub.overflowed:
                return  # the client reconnects with Last-Event-ID and catches up from Redis
            buffer = sub.buffer
            while buffer:
                sid, frame = buffer.popleft()
                if sid is not None:
                    if last is not None and sid <= last:
                        continue
                    last = sid
                yield frame
    finally:
        hub.unsubscribe(sub)


async def events(request: Request) -> Response:
    slug = request.path_params["slug"]
    store: Store = request.app.state.store
    await store.get_blog(slug)  # 404 for an unknown blog, before the stream starts
    after = _resume_point(request)
    settings = request.app.state.settings
    # Registered before the response starts: once a client has seen the headers, every later
    # change reaches it. (Should the stream never start, the hub drops it when its buffer fills.)
    sub = await request.app.state.hub.subscribe(slug)
    return EventSourceResponse(
        _frames(request, sub, after),
        ping=0,  # the hub sends one shared heartbeat comment to everybody instead
        send_timeout=settings.send_timeout_seconds,
        headers={"Cache-Control": "no-store"},
    )


routes = [Route("/blogs/{slug}/events", events, methods=["GET"])]
