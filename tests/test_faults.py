"""Faults at the store: a Redis that stalls, runs out of memory, is emptied or rolled back.

These tests run against a private redis-server of their own (not the session one), because they
freeze it, fill it, flush it and restore old backups of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from liveblog.store import _COMMIT
from tests.conftest import RedisServer, Service, admin, wait_until
from tests.sse_client import Event, SSEClient
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


async def _changes(reader: SSEClient, count: int) -> list[Event]:
    """The reader's next ``count`` events of the change log (or ``reset``s), skipping the readers'
    count (``blog.readers``), which comes on its own schedule."""
    got: list[Event] = []
    while len(got) < count:
        event = await reader.next()
        if event.event != "blog.readers":
            got.append(event)
    return got


async def _change(reader: SSEClient) -> Event:
    return (await _changes(reader, 1))[0]


async def _until(reader: SSEClient, predicate: Callable[[Event], bool]) -> list[Event]:
    return [event for event in await reader.until(predicate) if event.event != "blog.readers"]


def _ready(service: Service) -> None:
    wait_until(service._ready, timeout=30, what="the service to be ready again")


class StallingLink:
    """A TCP relay from a service to Redis that freezes Redis (SIGSTOP) the moment a chosen command
    passes through it once armed, so that the stall hits exactly that command; the command waits in
    Redis's socket buffer and runs when Redis is resumed, as after any real stall. Redis is resumed
    when the service sends anything more on the connection that carried it (a retry, say), or by the
    test; the service's other connections (reader counts, the scheduler) just wait like real clients.
    Runs on its own thread (the fixtures that start services block the test's event loop)."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.command: bytes | None = None
        self.sent = 0  # times the armed command went through since it was armed
        self.stalled = threading.Event()
        self._stalled_on: object | None = None  # the connection that carried the armed command
        self.port = 0
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self._loop.run_forever()

    def arm(self, command: bytes) -> None:
        self.stalled.clear()
        self.sent = 0
        self.command = b"\r\n" + command + b"\r\n"

    def resume(self) -> None:
        assert self.redis.process is not None
        self.redis.process.send_signal(signal.SIGCONT)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.redis.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, watch: bool) -> None:
            try:
                while data := await src.read(65536):
                    if watch and self.command is not None:
                        if self.stalled.is_set() and self._stalled_on is src:
                            self.resume()
                        if self.command in data:
                            self.sent += data.count(self.command)
                            if not self.stalled.is_set():
                                assert self.redis.process is not None
                                os.kill(self.redis.process.pid, signal.SIGSTOP)
                                self._stalled_on = src
                                self.stalled.set()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(client_r, redis_w, True), pipe(redis_r, client_w, False))


@pytest.fixture
def stalling(fault_redis: RedisServer, service_factory) -> Iterator[tuple[StallingLink, Service]]:  # type: ignore[no-untyped-def]
    link = StallingLink(fault_redis)
    service = service_factory("serve", "--no-dispatcher",
                              env={"LIVEBLOG_REDIS_URL": link.url, "LIVEBLOG_REDIS_TIMEOUT": "1"})
    try:
        yield link, service
    finally:
        link.resume()
        service.stop()


# ---- a Redis that stalls ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_write_that_meets_a_redis_stall_answers_503_and_runs_exactly_once(
        stalling: tuple[StallingLink, Service], fault_redis: RedisServer, method: str) -> None:
    link, service = stalling
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        slug = await _new_blog(http)
        entry = await post(http, slug, admin(), "prima versione")
        path = f"/api/blogs/{slug}/entries/{entry['id']}"
        async with SSEClient(f"{service.url}/blogs/{slug}/events") as reader:
            # The write script itself (by its SHA): other scripts run meanwhile, e.g. reader counts.
            link.arm(hashlib.sha1(_COMMIT.encode()).hexdigest().encode())
            try:
                response = await http.request(method, path, headers=admin(),
                                              json={"body": "seconda versione"} if method == "PATCH" else None)
                assert link.stalled.is_set(), "the stall did not hit the write script"
                # Answered while Redis is still frozen: the stall costs the request its timeout, no more.
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert link.sent == 1
            finally:
                link.resume()
            # The script that was waiting in Redis runs now, once: the service did not send it again.
            store = fault_redis.client()
            expected = "entry.updated" if method == "PATCH" else "entry.deleted"
            wait_until(lambda: any(f["type"] == expected for _, f in store.xrange(f"lb:{{{slug}}}:stream")),
                       what=f"the stalled {method} to run")
            marker = await post(http, slug, admin(), "dopo")
            seen = await _until(reader, lambda e: e.event == "entry.created" and e.json["id"] == marker["id"])
        assert [e.event for e in seen] == [expected, "entry.created"]
        if method == "PATCH":
            assert (await http.get(path)).json()["version"] == 2
        else:
            assert (await http.get(path)).status_code == 404


# ---- a store that loses or rolls back changes ----------------------------------------------------


async def test_readers_get_reset_before_anything_that_follows_an_emptied_store(
        fault_server: Service, fault_redis: RedisServer) -> None:
    async with httpx.AsyncClient(base_url=fault_server.url, timeout=10) as http:
        slug = await _new_blog(http)
        url = f"{fault_server.url}/blogs/{slug}/events"
        first = await post(http, slug, admin(), "prima")
        async with SSEClient(url) as live:
            second = await post(http, slug, admin(), "seconda")
            seen = await _change(live)
            assert seen.json["id"] == second["id"]
            async with SSEClient(url, last_event_id=seen.id) as resumed:
                fault_redis.client().flushall()
                await _new_blog(http, slug)
                again = await post(http, slug, admin(), "di nuovo")
                assert again["id"] == first["id"]  # the emptied store hands out the same id again
                for reader in (live, resumed):
                    got = await _until(reader, lambda event: event.event == "entry.created")
                    assert [event.event for event in got] == ["reset", "blog.updated", "entry.created"]


async def test_a_resume_from_a_change_the_store_lost_gets_reset_on_warm_and_fresh_processes(
        fault_server: Service, fault_redis: RedisServer, faulty, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=fault_server.url, timeout=10) as http:
        slug = await _new_blog(http)
        url = f"{fault_server.url}/blogs/{slug}/events"
        async with SSEClient(url) as watching:  # keeps the blog's history warm in the process
            await post(http, slug, admin(), "salvata")
            kept = (await _change(watching)).id
            backup = tmp_path / "appendonly.aof"
            shutil.copy(fault_redis.directory / "appendonly.aof", backup)
            await post(http, slug, admin(), "persa 1")
            await post(http, slug, admin(), "persa 2")
            lost = (await _changes(watching, 2))[-1].id
            # Restore the older backup.
            fault_redis.stop()
            shutil.copy(backup, fault_redis.directory / "appendonly.aof")
            fault_redis.start()
            _ready(fault_server)
            fresh = faulty()
            for service in (fault_server, fresh):
                async with SSEClient(f"{service.url}/blogs/{slug}/events", last_event_id=lost) as resumed:
                    assert (await _change(resumed)).event == "reset"
            assert (await _change(watching)).event == "reset"  # told as soon as the process noticed
            # New writes after the rollback get IDs above the lost ones; that must not hide it.
            after = await post(http, slug, admin(), "dopo il ripristino")
            for service in (fault_server, fresh):
                async with SSEClient(f"{service.url}/blogs/{slug}/events", last_event_id=lost) as resumed:
                    assert (await _change(resumed)).event == "reset"
                # A resume point the store still holds is not reset: it gets exactly what followed.
                async with SSEClient(f"{service.url}/blogs/{slug}/events", last_event_id=kept) as resumed:
                    event = await _change(resumed)
                    assert (event.event, event.json["id"]) == ("entry.created", after["id"])


# ---- a Redis that refuses writes, and readers that must not be left half-registered --------------


def _gauge(service: Service, name: str) -> float:
    for line in httpx.get(f"{service.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")


async def test_out_of_memory_answers_503_with_retry_after_and_leaves_no_phantom_reader(
        faulty, fault_redis: RedisServer) -> None:  # type: ignore[no-untyped-def]
    service = faulty()  # a process of its own: its reader gauge counts only this test's readers
    store = fault_redis.client()
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        slug = await _new_blog(http)
        entry = await post(http, slug, admin(), "prima")
        store.config_set("maxmemory-policy", "noeviction")
        store.config_set("maxmemory", 1)  # below what is in use: every write is refused
        try:
            refused = [
                await http.post(f"/api/blogs/{slug}/entries", headers=admin(), json={"body": "piena"}),
                await http.patch(f"/api/blogs/{slug}/entries/{entry['id']}", headers=admin(), json={"body": "x"}),
                await http.post("/api/blogs", headers=admin(), json={"slug": f"oom-{uuid.uuid4().hex[:8]}",
                                                                      "title": "t"}),
                # The first reader of a blog in this process needs a write to join the shared read.
                await http.get(f"/blogs/{slug}/events"),
            ]
            for response in refused:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert int(response.headers["retry-after"]) > 0
            assert _gauge(service, "liveblog_sse_clients") == 0
        finally:
            store.config_set("maxmemory", 0)
        # Nothing was left half-registered: the same blog's first reader now gets its changes.
        async with SSEClient(f"{service.url}/blogs/{slug}/events") as reader:
            after = await post(http, slug, admin(), "dopo")
            assert (await _change(reader)).json["id"] == after["id"]
        assert (await http.get(f"/api/blogs/{slug}/entries/{entry['id']}")).json()["version"] == 1


async def test_a_reader_whose_registration_meets_a_redis_stall_is_unregistered(
        stalling: tuple[StallingLink, Service]) -> None:
    link, service = stalling
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
        slug = await _new_blog(http)
        link.arm(b"XREVRANGE")  # the hub reads where the blog's stream ends, after registering the reader
        try:
            response = await http.get(f"/blogs/{slug}/events")
            assert link.stalled.is_set()
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
        finally:
            link.resume()
        assert _gauge(service, "liveblog_sse_clients") == 0
        async with SSEClient(f"{service.url}/blogs/{slug}/events") as reader:
            after = await post(http, slug, admin(), "dopo")
            assert (await _change(reader)).json["id"] == after["id"]
