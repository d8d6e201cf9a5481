"""Faults at the store: a Redis that stalls, runs out of memory, is emptied or rolled back.

These tests run against a private redis-server of their own (not the session one), because they
freeze it, fill it, flush it and restore old backups of it.
"""

from __future__ import annotations

import shutil
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RedisServer, Service, admin, wait_until
from tests.sse_client import SSEClient
from tests.support import post


@pytest.fixture(scope="module")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("fault-redis"))
    server.start()
    yield server
    if server.process is not None:
        server.process.send_signal(signal.SIGCONT)
    server.stop()


@pytest.fixture(scope="module")
def faulty(service_factory, fault_redis: RedisServer):  # type: ignore[no-untyped-def]
    """Start `liveblog serve` processes on the private Redis, with a short Redis timeout."""
    def make(*extra: str) -> Service:
        return service_factory("serve", "--no-dispatcher", *extra,
                               env={"LIVEBLOG_REDIS_URL": fault_redis.url, "LIVEBLOG_REDIS_TIMEOUT": "1"})
    return make


@pytest.fixture(scope="module")
def fault_server(faulty) -> Service:  # type: ignore[no-untyped-def]
    return faulty()


async def _new_blog(http: httpx.AsyncClient, slug: str | None = None) -> str:
    slug = slug or f"fault-{uuid.uuid4().hex[:8]}"
    response = await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": f"Blog {slug}"})
    assert response.status_code == 201, response.text
    return slug


def _ready(service: Service) -> None:
    wait_until(service._ready, timeout=30, what="the service to be ready again")


# ---- a store that loses or rolls back changes ----------------------------------------------------


async def test_readers_get_reset_before_anything_that_follows_an_emptied_store(
        fault_server: Service, fault_redis: RedisServer) -> None:
    async with httpx.AsyncClient(base_url=fault_server.url, timeout=10) as http:
        slug = await _new_blog(http)
        url = f"{fault_server.url}/blogs/{slug}/events"
        first = await post(http, slug, admin(), "prima")
        async with SSEClient(url) as live:
            second = await post(http, slug, admin(), "seconda")
            seen = await live.next()
            assert seen.json["id"] == second["id"]
            async with SSEClient(url, last_event_id=seen.id) as resumed:
                fault_redis.client().flushall()
                await _new_blog(http, slug)
                again = await post(http, slug, admin(), "di nuovo")
                assert again["id"] == first["id"]  # the emptied store hands out the same id again
                for reader in (live, resumed):
                    got = await reader.until(lambda event: event.event == "entry.created")
                    assert [event.event for event in got] == ["reset", "blog.updated", "entry.created"]


async def test_a_resume_from_a_change_the_store_lost_gets_reset_on_warm_and_fresh_processes(
        fault_server: Service, fault_redis: RedisServer, faulty, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=fault_server.url, timeout=10) as http:
        slug = await _new_blog(http)
        url = f"{fault_server.url}/blogs/{slug}/events"
        async with SSEClient(url) as watching:  # keeps the blog's history warm in the process
            await post(http, slug, admin(), "salvata")
            kept = (await watching.next()).id
            backup = tmp_path / "appendonly.aof"
            shutil.copy(fault_redis.directory / "appendonly.aof", backup)
            await post(http, slug, admin(), "persa 1")
            await post(http, slug, admin(), "persa 2")
            lost = (await watching.take(2))[-1].id
            # Restore the older backup.
            fault_redis.stop()
            shutil.copy(backup, fault_redis.directory / "appendonly.aof")
            fault_redis.start()
            _ready(fault_server)
            fresh = faulty()
            for service in (fault_server, fresh):
                async with SSEClient(f"{service.url}/blogs/{slug}/events", last_event_id=lost) as resumed:
                    assert (await resumed.next()).event == "reset"
            assert (await watching.next()).event == "reset"  # told as soon as the process noticed
            # New writes after the rollback get IDs above the lost ones; that must not hide it.
            after = await post(http, slug, admin(), "dopo il ripristino")
            for service in (fault_server, fresh):
                async with SSEClient(f"{service.url}/blogs/{slug}/events", last_event_id=lost) as resumed:
                    assert (await resumed.next()).event == "reset"
                # A resume point the store still holds is not reset: it gets exactly what followed.
                async with SSEClient(f"{service.url}/blogs/{slug}/events", last_event_id=kept) as resumed:
                    event = await resumed.next()
                    assert (event.event, event.json["id"]) == ("entry.created", after["id"])
