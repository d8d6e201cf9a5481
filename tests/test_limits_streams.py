"""Event-stream limits through a real `liveblog serve`: the spread `retry:`, streams per client (and the
client address behind trusted proxies), the process's connection and stream caps, bounded catch-up."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest

from liveblog import capacity, keys
from liveblog.config import SettingError, Settings
from liveblog.httpserver import OVERFLOW
from liveblog.webapp.clients import client_key
from tests.conftest import RedisServer, Service
from tests.sse_client import SSEClient
from tests.support import post


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


# ---- streams per client, and the client address behind trusted proxies ---------------------------

def _refusal(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["status"] == status


async def _open(url: str, **kwargs) -> SSEClient:  # type: ignore[no-untyped-def]
    reader = SSEClient(url, **kwargs)
    await reader.__aenter__()
    assert reader.status == 200
    return reader


async def test_streams_per_client_are_capped_with_429_and_released_on_close(service_factory, blog: str
                                                                            ) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_MAX_PER_CLIENT": "3"})
    url = f"{own.url}/blogs/{blog}/events"
    readers = [await _open(url) for _ in range(3)]
    async with httpx.AsyncClient(timeout=10) as http:
        _refusal(await http.get(url), 429)
        # A spoofed X-Forwarded-For from an untrusted peer changes nothing.
        _refusal(await http.get(url, headers={"X-Forwarded-For": "203.0.113.9"}), 429)
    await readers.pop().close()
    for _ in range(100):  # the server frees the slot when it notices the disconnect
        again = SSEClient(url)
        await again.__aenter__()
        if again.status == 200:
            readers.append(again)
            break
        await again.close()
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("a closed stream never gave its slot back")
    for reader in readers:
        await reader.close()
    own.stop()


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(service_factory, blog: str
                                                                           ) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher",
                          env={"LIVEBLOG_SSE_MAX_PER_CLIENT": "2", "LIVEBLOG_TRUSTED_PROXIES": "127.0.0.0/8"})
    url = f"{own.url}/blogs/{blog}/events"
    alice = {"X-Forwarded-For": "203.0.113.7"}
    # The rightmost entry that is not a trusted proxy: a second proxy hop (127.0.0.5) is skipped, and
    # whatever the client itself put on the left is ignored.
    alice_via_two_proxies = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.5"}
    readers = [await _open(url, headers=alice), await _open(url, headers=alice_via_two_proxies)]
    async with httpx.AsyncClient(timeout=10) as http:
        _refusal(await http.get(url, headers=alice), 429)
        _refusal(await http.get(url, headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.9"}), 429)
    # Another client behind the same proxy has its own slots.
    readers.append(await _open(url, headers={"X-Forwarded-For": "203.0.113.8"}))
    for reader in readers:
        await reader.close()
    own.stop()


def test_ipv6_clients_count_by_their_64() -> None:
    assert client_key({"client": ("2001:db8:1:2:aaaa::1", 5)}) == client_key({"client": ("2001:db8:1:2::9", 6)})
    assert client_key({"client": ("2001:db8:1:3::1", 5)}) != client_key({"client": ("2001:db8:1:2::1", 5)})
    assert client_key({"client": ("192.0.2.1", 5)}) == "192.0.2.1"


# ---- the process's connection and stream caps -----------------------------------------------------

def test_default_caps_follow_the_open_file_limit() -> None:
    limit = capacity.open_file_limit()
    connections = capacity.max_connections(Settings())
    assert connections == max(16, limit - min(capacity.FD_RESERVE, limit // 4))
    assert capacity.max_streams(Settings()) == connections - min(capacity.STREAM_HEADROOM, connections // 10)
    assert capacity.max_connections(Settings(max_connections=7)) == 7
    assert capacity.max_streams(Settings(max_connections=100)) == 90


def _raw_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


async def test_connection_cap_keeps_room_for_editors_and_answers_503_problem(
        service_factory, blog: str, editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_MAX_CONNECTIONS": "10"})
    url = f"{own.url}/blogs/{blog}/events"
    # Streams may take 9 of the 10 connections (the headroom is a tenth of a small cap) ...
    readers = [await _open(url) for _ in range(9)]
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        _refusal(await http.get(url), 503)
        # ... so an editor's POST and /readyz still get through while readers hold them.
        await post(http, blog, editor, "ancora in onda")
        assert (await http.get("/readyz")).status_code == 200
    # Past the cap itself every new request gets a 503 problem (two idle connections fill it).
    idle = [socket.create_connection(("127.0.0.1", own.port)) for _ in range(2)]
    for _ in range(100):
        response = await asyncio.to_thread(_raw_get, own.port, "/readyz")
        if b" 503 " in response.split(b"\r\n", 1)[0]:
            break
        await asyncio.sleep(0.05)
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 "), response[:300]
    assert b"content-type: application/problem+json" in head.lower() and b"retry-after: " in head.lower()
    assert json.loads(body)["status"] == 503
    for sock in idle:
        sock.close()
    for _ in range(100):  # connections that close free their place
        if (await asyncio.to_thread(_raw_get, own.port, "/readyz")).startswith(b"HTTP/1.1 200 "):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the cap never freed up")
    for reader in readers:
        await reader.close()
    own.stop()


def test_connections_far_past_the_cap_are_closed_at_once(service_factory) -> None:  # type: ignore[no-untyped-def]
    """Past the cap plus the connections still answered 503 (httpserver.OVERFLOW), a new connection is
    closed without waiting for its head (the head timeout here is a minute): descriptors stay free."""
    own = service_factory("serve", "--no-dispatcher",
                          env={"LIVEBLOG_MAX_CONNECTIONS": "4", "LIVEBLOG_HEADER_TIMEOUT": "60"})
    held = [socket.create_connection(("127.0.0.1", own.port)) for _ in range(4 + OVERFLOW)]
    try:
        for _ in range(100):  # the server accepts the held ones in its own time
            with socket.create_connection(("127.0.0.1", own.port), timeout=30) as extra:
                if extra.recv(100) == b"":
                    break
        else:
            raise AssertionError("a connection far past the cap was kept")
    finally:
        for sock in held:
            sock.close()
    own.stop()


# ---- bounded catch-up -----------------------------------------------------------------------------

async def _stream_ids(redis_server: RedisServer, slug: str) -> list[str]:
    return [sid for sid, _ in redis_server.client().xrange(keys.stream(slug))]


async def test_catch_up_beyond_the_limit_gets_reset_and_up_to_it_every_change_once(
        client: httpx.AsyncClient, server: Service, blog: str, editor: dict[str, str],
        redis_server: RedisServer) -> None:
    for start in range(0, 502, 50):  # 502 changes; nobody reads this blog, so resumes read Redis
        await asyncio.gather(*(post(client, blog, editor, f"n{i}") for i in range(start, min(start + 50, 502))))
    ids = (await _stream_ids(redis_server, blog))[-502:]  # (the blog's creation may be a change too)
    url = f"{server.url}/blogs/{blog}/events"
    async with SSEClient(url, last_event_id=ids[0]) as behind_501:
        reset = await behind_501.next()
    assert reset.event == "reset" and reset.id == ids[-1]
    async with SSEClient(url, last_event_id=ids[1]) as behind_500:
        got = await behind_500.take(500)
        assert [e.id for e in got] == ids[2:]
        assert all(e.event == "entry.created" for e in got)
        # Nothing more, nothing twice: the next event is the next change.
        extra = await post(client, blog, editor, "dopo")
        (following,) = await behind_500.take(1)
        assert following.json["id"] == extra["id"]


async def test_catch_up_limit_applies_to_memory_and_redis_resumes(
        service_factory, blog: str, editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_MAX_CATCH_UP": "5"})
    url = f"{own.url}/blogs/{blog}/events"
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        async with SSEClient(url) as live:  # keeps the blog's history in the process's memory
            for i in range(8):
                await post(http, blog, editor, f"n{i}")
            ids = [e.id for e in await live.take(8)]
            for where in ("memory", "redis"):
                if where == "redis":
                    await live.close()
                    await asyncio.sleep(0.5)  # the last reader gone, the next resumes read Redis
                async with SSEClient(url, last_event_id=ids[1]) as behind_6:
                    reset = await behind_6.next()
                assert reset.event == "reset", where
                async with SSEClient(url, last_event_id=ids[2]) as behind_5:
                    assert [e.id for e in await behind_5.take(5)] == ids[3:], where
    own.stop()


class _RawStream:
    """An event stream read straight off the socket, keeping HTTP/1.1's chunks apart: the server sends
    each write of the response as one chunk, so the chunks are the server's writes (no timing involved)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.chunks: list[bytes] = []
        self.ends: list[int] = []  # events complete after each chunk
        self.events: list[tuple[str, str, dict]] = []  # (id, event, data) of the events with an id
        self._pending = b""

    @classmethod
    async def open(cls, port: int, slug: str, last_event_id: str) -> _RawStream:
        """A stream resuming after ``last_event_id``, its response head read and checked."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /blogs/{slug}/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {last_event_id}\r\n\r\n"
                     .encode())
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        assert head.startswith(b"http/1.1 200") and b"transfer-encoding: chunked" in head, head
        return cls(reader, writer)

    async def until(self, count: int) -> None:
        """Reads chunks until ``count`` events with an id have arrived."""
        while len(self.events) < count:
            size = int((await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 30)).strip(), 16)
            chunk = (await self.reader.readexactly(size + 2))[:-2]
            self.chunks.append(chunk)
            self._pending += chunk
            *blocks, self._pending = self._pending.split(b"\n\n")
            for block in blocks:
                fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
                if b"id" in fields:
                    self.events.append((fields[b"id"].decode(), fields[b"event"].decode(),
                                        json.loads(fields[b"data"])))
            self.ends.append(len(self.events))

    def chunks_until(self, count: int) -> list[bytes]:
        """The chunks that brought the first ``count`` events (and what came with them)."""
        return self.chunks[:next(n for n, end in enumerate(self.ends) if end >= count) + 1]

    def close(self) -> None:
        self.writer.close()


async def _big_changes(http: httpx.AsyncClient, slug: str, editor: dict[str, str]) -> list[str]:
    """Eight entries of about 42 KB of HTML each, then an edit of each as large: 16 changes."""
    big = "parola " * 6000
    posted = [(await post(http, slug, editor, f"{i} {big}"))["id"] for i in range(8)]
    for entry_id in posted:
        response = await http.patch(f"/api/blogs/{slug}/entries/{entry_id}", headers=editor,
                                    json={"body": f"{entry_id} corretto {big}"})
        assert response.status_code == 200, response.text
    return posted


async def test_a_catch_up_of_big_updates_is_written_in_byte_bounded_writes_each_change_once_in_order(
        service_factory, blog: str, editor: dict[str, str], redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    """Far fewer changes than a Redis page (100), but each of them large: the frames go out as soon
    as they pass LIVEBLOG_SSE_CATCH_UP_BYTES, from Redis and from the channel's memory alike."""
    budget = 64 * 1024
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_CATCH_UP_BYTES": str(budget)})
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        start = (await _stream_ids(redis_server, blog))[-1]
        first = await _big_changes(http, blog, editor)  # nobody reads the blog: the resume reads Redis
        from_redis = await _RawStream.open(own.port, blog, start)
        await from_redis.until(16)
        middle = from_redis.events[-1][0]
        second = await _big_changes(http, blog, editor)  # now in the channel's history too
        await from_redis.until(32)
        # The store keeps only the newest change: a resume before it can only be served from memory.
        redis_server.client().xtrim(keys.stream(blog), maxlen=1)
        from_memory = await _RawStream.open(own.port, blog, middle)
        await from_memory.until(16)
        assert [data["id"] for _, _, data in from_redis.events] == (first * 2) + (second * 2)
        assert [(sid, event) for sid, event, _ in from_memory.events] == [
            (sid, event) for sid, event, _ in from_redis.events[16:32]]
        for where, stream, catch_up in (("redis", from_redis, 16), ("memory", from_memory, 16)):
            chunks = stream.chunks_until(catch_up)
            # Several writes, each written as soon as its frames passed the budget: all but the last
            # reached it, and none held more than one frame beyond it.
            assert len(chunks) >= 8, where  # two frames pass the budget: at most two a write
            for chunk in chunks[:-1]:
                last_frame = chunk.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
                assert len(chunk) >= budget > len(chunk) - len(last_frame) - 2, where
        # Exactly once across the hand-over to live changes.
        after = await post(http, blog, editor, "dal vivo")
        for stream, seen in ((from_redis, 32), (from_memory, 16)):
            await stream.until(seen + 1)
            assert [data["id"] for _, _, data in stream.events[seen:]] == [after["id"]]
            stream.close()
    own.stop()


def test_limit_settings_are_validated() -> None:
    with pytest.raises(SettingError, match="LIVEBLOG_SSE_RETRY_MAX"):
        Settings.from_env({"LIVEBLOG_SSE_RETRY_MIN": "4000", "LIVEBLOG_SSE_RETRY_MAX": "1000"})
    assert Settings.from_env({"LIVEBLOG_SSE_RETRY_MIN": "5000"}).retry_max_ms == 5000
    with pytest.raises(SettingError, match="LIVEBLOG_TRUSTED_PROXIES"):
        Settings.from_env({"LIVEBLOG_TRUSTED_PROXIES": "10.0.0.0/8,proxy.example"})
    for name in ("LIVEBLOG_MAX_HEADER_BYTES", "LIVEBLOG_HEADER_TIMEOUT", "LIVEBLOG_BODY_TIMEOUT",
                 "LIVEBLOG_SSE_MAX_PER_CLIENT", "LIVEBLOG_SSE_MAX_CATCH_UP", "LIVEBLOG_SSE_CATCH_UP_BYTES",
                 "LIVEBLOG_BACKLOG"):
        with pytest.raises(SettingError, match=name):
            Settings.from_env({name: "0"})
    assert Settings.from_env({}).sse_catch_up_bytes == 256 * 1024
    assert Settings.from_env({"LIVEBLOG_TRUSTED_PROXIES": "10.1.2.3/8, ::1"}).trusted_proxies == ("10.0.0.0/8",
                                                                                                  "::1/128")
