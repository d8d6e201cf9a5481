"""The tutorial design: every SSE client runs its own blocking ``XREAD`` on the shared client.

redis-py's async pool holds at most 100 connections by default and raises "Too many connections"
past that (redis-py #2517); its default socket timeout (5 s) would also cut a longer ``BLOCK``, so
this uses 4 s. Run: ``uvicorn bench.baselines.per_reader:app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from bench.baselines.common import STREAM, URL, routes

redis = aioredis.from_url(URL, decode_responses=True)


async def events(_request: Request) -> EventSourceResponse:
    async def stream() -> AsyncIterator[ServerSentEvent]:
        last = "$"
        while True:
            for _key, items in await redis.xread({STREAM: last}, block=4000) or ():
                for sid, fields in items:
                    last = sid
                    yield ServerSentEvent(data=fields["data"], id=sid, event=fields["type"])

    return EventSourceResponse(stream())


app = Starlette(routes=[*routes, Route("/events", events)])
