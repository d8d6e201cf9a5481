"""Helpers for webhook tests: real HTTP receivers, and a small admin/editor client.

A :class:`Receiver` is a tiny HTTP/1.1 server on loopback, in its own thread. It records every
request (headers, body, arrival time) and answers as its behaviour says: any status, headers and
body, after a delay, or never (``hang``: the request is held until the sender gives up or goes
away). It tracks how many requests it holds at once.

Webhook tests run their services on a Redis database of their own (same server as the session,
another DB number), so dispatchers started by other tests never take their deliveries and
subscriptions to ``"*"`` see only their own blogs: :func:`webhook_fixtures` gives a module the
fixtures for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook

from tests.conftest import RedisServer, Service, admin, free_port


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def verify(self, secret: str) -> Any:
        """The payload, after checking the signature with the official Standard Webhooks library."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    hang: bool = False


Behaviour = Callable[[Received, int], Reply]  # (request, its 1-based number at this receiver) -> reply


def always(status: int = 200, **kwargs: Any) -> Behaviour:
    return lambda _request, _n: Reply(status, **kwargs)


def sequence(*replies: Reply, then: Reply | None = None) -> Behaviour:
    """Answer the first requests with ``replies`` in order, the later ones with ``then`` (200)."""
    return lambda _request, n: replies[n - 1] if n <= len(replies) else (then or Reply())


class Receiver:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or always(200)
        self.port = free_port()
        self._lock = threading.Lock()
        self._requests: list[Received] = []
        self.holding = 0
        self.max_holding = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def start(self) -> Receiver:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0,
                 what: str = "requests") -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            requests = self.requests
            if predicate(requests):
                return requests
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {len(self.requests)} request(s)")

    def wait_count(self, count: int, timeout: float = 30.0) -> list[Received]:
        return self.wait_for(lambda r: len(r) >= count, timeout, f"{count} request(s)")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection is finished."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Received(method, path, headers, body, time.monotonic())
        with self._lock:
            self._requests.append(request)
            number = len(self._requests)
            self.holding += 1
            self.max_holding = max(self.max_holding, self.holding)
        try:
            reply = self.behaviour(request, number)
            if reply.hang:
                await reader.read(1)  # returns when the sender closes the connection
                return False
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            with self._lock:
                self.holding -= 1
        extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items())
        phrase = HTTPStatus(reply.status).phrase if reply.status in HTTPStatus._value2member_map_ else "Status"
        writer.write(f"HTTP/1.1 {reply.status} {phrase}\r\nContent-Length: {len(reply.body)}\r\n{extra}\r\n"
                     .encode() + reply.body)
        await writer.drain()
        return True


@contextlib.contextmanager
def serving(service_factory: Callable[..., Service], redis_url: str, *, dispatcher: bool = False,
            env: dict[str, str] | None = None) -> Iterator[Api]:
    """A `liveblog serve` on ``redis_url`` and a client for it, both closed afterwards."""
    flags = () if dispatcher else ("--no-dispatcher",)
    serve = service_factory("serve", *flags, env={"LIVEBLOG_REDIS_URL": redis_url, **(env or {})})
    api = Api(serve.url)
    try:
        yield api
    finally:
        api.close()
        serve.stop()


def private_db(redis_server: RedisServer, db: int) -> str:
    """The URL of database ``db`` of the session's Redis server, emptied first."""
    redis.Redis(port=redis_server.port, db=db).flushdb()
    return redis_server.url.rsplit("/", 1)[0] + f"/{db}"


StartWorker = Callable[..., Service]  # (**env) -> a started `liveblog worker`


@contextlib.contextmanager
def worker_pool(service_factory: Callable[..., Service], redis_url: str, **defaults: str) -> Iterator[StartWorker]:
    """Start `liveblog worker` processes on ``redis_url`` (environment: ``defaults``, then what the
    call gives); every one of them is stopped at the end. When the block fails, the end of each
    worker's log (a file under the session's temporary directory) is printed, so the failure report
    shows what the workers were doing."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        service = service_factory("worker", env={"LIVEBLOG_REDIS_URL": redis_url, **defaults, **env})
        started.append(service)
        return service

    try:
        yield start
    except BaseException:
        for service in started:
            print(f"---- end of {service.log_path} ----\n{service.log()}")
        raise
    finally:
        for service in started:
            service.stop()


def webhook_fixtures(db: int, **worker_defaults: str) -> tuple[Any, Any, Any]:
    """The fixtures of a webhook test module on database ``db`` of the session's Redis:

    - ``api``: one `liveblog serve --no-dispatcher` for the module;
    - ``redis_url``: the database, emptied before each test;
    - ``workers``: starts `liveblog worker` processes on it (``worker_defaults`` in their
      environment), stopped after the test.

    Use: ``api, redis_url, workers = webhook_fixtures(DB)`` at the top of the module."""

    @pytest.fixture(scope="module", name="api")
    def api(service_factory: Callable[..., Service], redis_server: RedisServer) -> Iterator[Api]:
        with serving(service_factory, private_db(redis_server, db)) as api:
            yield api

    @pytest.fixture(name="redis_url")
    def redis_url(redis_server: RedisServer, api: Api) -> str:
        return private_db(redis_server, db)

    @pytest.fixture(name="workers")
    def workers(service_factory: Callable[..., Service], redis_url: str) -> Iterator[StartWorker]:
        with worker_pool(service_factory, redis_url, **worker_defaults) as start:
            yield start

    return api, redis_url, workers


class Api:
    """The admin API (webhooks) and the editor API (blogs, entries) of one `liveblog serve`."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers=admin(), timeout=30)

    def close(self) -> None:
        """Close the keep-alive connection (a server shutting down waits for open connections)."""
        self.http.close()

    def check(self, response: httpx.Response, status: int) -> Any:
        assert response.status_code == status, f"{response.status_code}: {response.text}"
        return response.json() if response.content else None

    def blog(self, slug: str | None = None) -> str:
        slug = slug or f"wh-{uuid.uuid4().hex[:10]}"
        self.check(self.http.post("/api/blogs", json={"slug": slug, "title": f"Blog {slug}"}), 201)
        return slug

    def entry(self, slug: str, body: str = "aggiornamento", **fields: Any) -> dict[str, Any]:
        return self.check(self.http.post(f"/api/blogs/{slug}/entries", json={"body": body, **fields}), 201)

    def subscribe(self, url: str, blogs: list[str], **fields: Any) -> dict[str, Any]:
        return self.check(self.http.post("/api/webhooks", json={"url": url, "blogs": blogs, **fields}), 201)

    def subscription(self, sub_id: str) -> dict[str, Any]:
        return self.check(self.http.get(f"/api/webhooks/{sub_id}"), 200)

    def deliveries(self, sub_id: str) -> list[dict[str, Any]]:
        return self.check(self.http.get(f"/api/webhooks/{sub_id}/deliveries", params={"limit": 200}), 200)[
            "deliveries"]

    def wait_deliveries(self, sub_id: str, predicate: Callable[[list[dict[str, Any]]], bool],
                        timeout: float = 30.0, what: str = "delivery log") -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get(f"/api/webhooks/{sub_id}/deliveries", params={"limit": 200})
            if response.status_code != 503:  # 503: Redis restarting (a test may restart it)
                log = self.check(response, 200)["deliveries"]
                if predicate(log):
                    return log
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}: {self.deliveries(sub_id)}")
