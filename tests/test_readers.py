"""Reader counts across processes (CONTRACT "Editorial workflow and discovery": `readers`)."""

from __future__ import annotations

import asyncio
import re
import signal
import uuid
from contextlib import AsyncExitStack

import httpx

from tests.conftest import admin
from tests.sse_client import SSEClient

FAST = {"LIVEBLOG_READERS_INTERVAL": "0.3"}


async def readers_become(http: httpx.AsyncClient, slug: str, expected: int, timeout: float = 20.0) -> None:
    seen = None
    for _ in range(int(timeout / 0.1)):
        seen = (await http.get(f"/api/blogs/{slug}")).json()["readers"]
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"readers stayed {seen}, expected {expected}")


async def told(reader: SSEClient, expected: int) -> None:
    """Waits for the ``blog.readers`` event that says ``expected`` (it carries no ``id:``)."""
    while True:
        event = await asyncio.wait_for(reader.presence.get(), 20)
        assert event.id is None  # not part of the change log: never replayed on resume
        if event.json["readers"] == expected:
            return


async def test_readers_are_counted_across_processes_and_a_killed_one_vanishes(service_factory) -> None:  # type: ignore[no-untyped-def]
    first = service_factory("serve", "--no-dispatcher", env=FAST)
    second = service_factory("serve", "--no-dispatcher", env=FAST)
    slug = f"lettori-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=first.url, timeout=10) as http, AsyncExitStack() as streams:
        assert (await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "T"})).status_code == 201
        assert (await http.get(f"/api/blogs/{slug}")).json()["readers"] == 0
        watcher = await streams.enter_async_context(SSEClient(f"{first.url}/blogs/{slug}/events"))
        for _ in range(2):
            await streams.enter_async_context(SSEClient(f"{first.url}/blogs/{slug}/events"))
        for _ in range(2):
            await streams.enter_async_context(SSEClient(f"{second.url}/blogs/{slug}/events"))
        await readers_become(http, slug, 5)
        await told(watcher, 5)
        page = (await http.get(f"/blogs/{slug}")).text
        assert re.search(r"data-lb-readers>\s*5 lettori\s*<", page)
        second.stop(signal.SIGKILL)
        await readers_become(http, slug, 3)
        await told(watcher, 3)


async def test_readers_drop_when_streams_close(service_factory) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher", env=FAST)
    slug = f"lettori-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        assert (await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "T"})).status_code == 201
        async with SSEClient(f"{own.url}/blogs/{slug}/events"), SSEClient(f"{own.url}/blogs/{slug}/events"):
            await readers_become(http, slug, 2)
        await readers_become(http, slug, 0)
