"""Event-stream limits through a real `liveblog serve`: the spread `retry:`, streams per client (and the
client address behind trusted proxies), the process's connection and stream caps, bounded catch-up."""

from __future__ import annotations

import asyncio

from tests.conftest import Service
from tests.sse_client import SSEClient


async def _retry_of(url: str) -> int:
    async with SSEClient(url) as reader:
        for _ in range(500):
            if reader.retry is not None:
                return reader.retry
            await asyncio.sleep(0.01)
    raise AssertionError("no retry: field")


async def test_retry_is_random_per_stream_within_the_range(service_factory, blog: str) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher",
                          env={"LIVEBLOG_SSE_RETRY_MIN": "1000", "LIVEBLOG_SSE_RETRY_MAX": "1999"})
    values = [await _retry_of(f"{own.url}/blogs/{blog}/events") for _ in range(8)]
    assert all(1000 <= v <= 1999 for v in values), values
    assert len(set(values)) > 1, values
    own.stop()


async def test_default_retry_range(server: Service, blog: str) -> None:
    values = [await _retry_of(f"{server.url}/blogs/{blog}/events") for _ in range(4)]
    assert all(500 <= v <= 3000 for v in values), values
