"""Request-level limits of `liveblog serve` (httpserver.py), through real processes and raw sockets:
the request-head cap, the head timeout (idle and slowloris connections) and the stalled-body timeout."""

from __future__ import annotations

import asyncio
import json
import select
import socket
import subprocess
import time

import httpx
import pytest

from tests.conftest import Service, admin
from tests.sse_client import SSEClient
from tests.support import post

SHORT = {"LIVEBLOG_HEADER_TIMEOUT": "1", "LIVEBLOG_BODY_TIMEOUT": "1"}


def connect(service: Service) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 15) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection; (data, closed by the server).
    A reset counts as closed."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        return data, False
    return data, True


def status_of(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None


def body_of(response: bytes) -> dict:  # type: ignore[type-arg]
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


@pytest.fixture(scope="module")
def small_head(service_factory) -> Service:  # type: ignore[no-untyped-def]
    return service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_MAX_HEADER_BYTES": "1024"})


@pytest.fixture(scope="module")
def impatient(service_factory) -> Service:  # type: ignore[no-untyped-def]
    return service_factory("serve", "--no-dispatcher", env=SHORT)


def test_megabyte_header_is_refused_and_others_are_served(server: Service) -> None:
    sock = connect(server)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    try:
        sock.sendall(head)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection while the head was still coming: refused
    response, closed = read_until_closed(sock)
    sock.close()
    assert closed
    assert status_of(response) in (431, None), response[:200]
    # Another connection meanwhile is served as usual.
    other = connect(server)
    other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response, _ = read_until_closed(other)
    assert status_of(response) == 200


def test_request_head_over_the_cap_gets_431_problem(small_head: Service) -> None:
    sock = connect(small_head)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n")
    response, closed = read_until_closed(sock)
    assert closed and status_of(response) == 431, response[:300]
    assert b"content-type: application/problem+json" in response.lower()
    assert body_of(response)["status"] == 431


def test_head_under_the_cap_and_larger_body_are_served(small_head: Service, editor: dict[str, str]) -> None:
    with httpx.Client(base_url=small_head.url, timeout=10) as http:
        assert http.get("/healthz", headers={"X-Pad": "p" * 800}).status_code == 200
        slug = f"head-{time.monotonic_ns()}"
        assert http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"}).status_code == 201
        # The body (3 KB) is beyond the head cap: only the head counts.
        created = http.post(f"/api/blogs/{slug}/entries", headers=editor, json={"body": "b" * 3000})
        assert created.status_code == 201, created.text


def test_idle_connection_is_closed_after_the_head_timeout(impatient: Service) -> None:
    sock = connect(impatient)
    response, closed = read_until_closed(sock)
    assert closed and response == b""


def test_slowloris_head_is_closed_although_it_keeps_sending(impatient: Service) -> None:
    sock = connect(impatient)
    trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 1000
    deadline = time.monotonic() + 15
    closed = False
    for byte in trickle:
        if time.monotonic() > deadline:
            break
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            try:
                closed = sock.recv(65536) == b""
            except ConnectionResetError:
                closed = True
            break
    assert closed, "the server kept a head that never ends"


def test_stalled_body_is_disconnected(impatient: Service, editor: dict[str, str], blog: str) -> None:
    sock = connect(impatient)
    head = (f"POST /api/blogs/{blog}/entries HTTP/1.1\r\nHost: x\r\nAuthorization: {editor['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n").encode()
    sock.sendall(head + b'{"body": "')
    response, closed = read_until_closed(sock)
    assert closed
    assert status_of(response) in (None, 408), response[:200]
    assert "Exception in ASGI application" not in impatient.log()


async def test_slow_body_that_keeps_coming_is_served(impatient: Service, editor: dict[str, str], blog: str
                                                     ) -> None:
    """The body timeout is for a stall, not for the whole body: pieces 0.4 s apart for 2 s go through."""
    payload = json.dumps({"body": "lento " * 50}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", impatient.port)
    writer.write((f"POST /api/blogs/{blog}/entries HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: {editor['Authorization']}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode())
    pieces = [payload[i:i + len(payload) // 5 + 1] for i in range(0, len(payload), len(payload) // 5 + 1)]
    for piece in pieces:
        await asyncio.sleep(0.4)
        writer.write(piece)
        await writer.drain()
    response = await asyncio.wait_for(reader.read(), timeout=15)
    writer.close()
    assert status_of(response) == 201, response[:300]


async def test_event_stream_outlives_the_head_and_body_timeouts(impatient: Service, editor: dict[str, str],
                                                                blog: str) -> None:
    async with SSEClient(f"{impatient.url}/blogs/{blog}/events") as reader:
        assert reader.status == 200
        await asyncio.sleep(2.5)  # longer than both timeouts of this server
        async with httpx.AsyncClient(base_url=impatient.url, timeout=10) as http:
            entry = await post(http, blog, editor, "ancora qui")
        (event,) = await reader.take(1)
        assert event.json["id"] == entry["id"]


def test_listen_backlog_setting_reaches_the_socket(service_factory) -> None:  # type: ignore[no-untyped-def]
    """For a listening socket, ``ss`` shows the accept-queue size (the backlog) as Send-Q."""
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_BACKLOG": "1234"})
    out = subprocess.run(["ss", "-ltnH", f"sport = :{own.port}"], capture_output=True, text=True, check=True)
    (line,) = out.stdout.strip().splitlines()
    assert line.split()[2] == "1234", line
    own.stop()
