"""The short sse-starlette app with one shared reader: one ``XREAD BLOCK`` loop per process puts
each change on every client's ``asyncio.Queue``; each client's generator encodes it again.
Run: ``uvicorn bench.baselines.shared_reader:app``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from bench.baselines.common import STREAM, URL, routes

queues: set[asyncio.Queue[tuple[str, dict[str, str]]]] = set()


async def read_forever() -> None:
    reader = aioredis.from_url(URL, decode_responses=True, socket_timeout=None)
    last = "$"
    while True:
        for _key, items in await reader.xread({STREAM: last}, block=15000) or ():
            for sid, fields in items:
                last = sid
                for queue in queues:
                    queue.put_nowait((sid, fields))


@contextlib.asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(read_forever())
    yield
    task.cancel()


async def events(_request: Request) -> EventSourceResponse:
    queue: asyncio.Queue[tuple[str, dict[str, str]]] = asyncio.Queue()
    queues.add(queue)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            while True:
                sid, fields = await queue.get()
                yield ServerSentEvent(data=fields["data"], id=sid, event=fields["type"])
        finally:
            queues.discard(queue)

    return EventSourceResponse(stream())


app = Starlette(routes=[*routes, Route("/events", events)], lifespan=lifespan)
