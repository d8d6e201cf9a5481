"""What both baselines share: the stream, the publish endpoint and readiness."""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

STREAM = "bench:stream"
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:0")
publisher = aioredis.from_url(URL, decode_responses=True)


async def publish(request: Request) -> Response:
    sid = await publisher.xadd(STREAM, {"type": "entry.created", "data": (await request.body()).decode()})
    return PlainTextResponse(sid, status_code=201)


async def readyz(_request: Request) -> Response:
    await publisher.ping()
    return PlainTextResponse("ok")


routes = [Route("/publish", publish, methods=["POST"]), Route("/readyz", readyz)]
