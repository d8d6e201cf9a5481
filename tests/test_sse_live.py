"""Live event streams, written by the hub straight to each reader's connection (no task per reader):
the bytes on the wire, how promptly a disconnect frees the stream, a reader that stops reading for a
while and then drains, and the stream's last chunk on SIGTERM. Raw sockets on a real `liveblog serve`."""

from __future__ import annotations

import asyncio
import json
import signal
import socket

import httpx

from tests.support import post


async def _open_raw(port: int, path: str, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader,
                                                                               asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf is not None:  # set before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 24)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    """One chunk of a chunked body, checking its framing byte for byte."""
    size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    size = int(size_line[:-2], 16)
    data = await asyncio.wait_for(reader.readexactly(size + 2), 10)
    assert data.endswith(b"\r\n"), data[-10:]
    return data[:-2]


async def _clients(http: httpx.AsyncClient) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("liveblog_sse_clients "):
            return float(line.split()[1])
    raise AssertionError("liveblog_sse_clients missing")


async def test_live_frames_are_one_chunk_each_and_sigterm_sends_the_last_chunk(
        service_factory, blog: str, editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher")
    reader, writer = await _open_raw(own.port, f"/blogs/{blog}/events")
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().lower()
    assert head.startswith("http/1.1 200 ") and "transfer-encoding: chunked\r\n" in head
    assert "content-type: text/event-stream; charset=utf-8\r\n" in head and "cache-control: no-store\r\n" in head
    assert (await _read_chunk(reader)).startswith(b"retry: ")
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        created = await post(http, blog, editor, "in diretta")
    chunk = await _read_chunk(reader)
    while not chunk.startswith(b"id: "):  # (a heartbeat may come first)
        chunk = await _read_chunk(reader)
    frame = chunk.decode()
    assert frame.startswith("id: ") and frame.endswith("\n\n") and frame.count("\n\n") == 1
    assert frame.split("\n")[1] == "event: entry.created"
    assert json.loads(frame.split("\n")[2].removeprefix("data: "))["id"] == created["id"]
    own.process.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(reader.read(), 10)  # up to the server's close
    # Any heartbeats, then the chunked body's last chunk: the stream ended, not just the connection.
    assert rest.endswith(b"0\r\n\r\n"), rest[-80:]
    writer.close()
    assert await asyncio.to_thread(own.process.wait, 10) in (0, -signal.SIGTERM)


async def test_a_closed_stream_is_freed_at_once_not_at_the_next_write(
        service_factory, blog: str) -> None:  # type: ignore[no-untyped-def]
    """No heartbeat or change comes for an hour: only the connection itself can tell the server."""
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_HEARTBEAT": "3600"})
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        reader, writer = await _open_raw(own.port, f"/blogs/{blog}/events")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        await _read_chunk(reader)  # the catch-up: the stream is live (its response task has returned)
        assert await _clients(http) == 1
        writer.close()
        loop = asyncio.get_running_loop()
        closed_at = loop.time()
        while await _clients(http) != 0:
            assert loop.time() - closed_at < 2.0, "a closed stream is still counted"
            await asyncio.sleep(0.02)
    own.stop()


async def test_a_reader_that_pauses_and_drains_again_gets_every_change_once_in_order(
        service_factory, blog: str, editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Megabytes posted while the reader does not read fill its socket and then the server's write
    buffer: the hub stops writing to it and keeps its place in the history (here large enough), and
    writes what it missed once it drains again."""
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_CLIENT_BUFFER": "300"})
    reader, writer = await _open_raw(own.port, f"/blogs/{blog}/events", rcvbuf=4096)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    await _read_chunk(reader)  # retry:, then nothing is read while the updates are posted
    writer.transport.pause_reading()  # (a StreamReader would otherwise read ahead into its own buffer)
    big = "parola " * 7_000  # 49 KB a change: 120 of them are more than the kernel's buffers take
    async with httpx.AsyncClient(base_url=own.url, timeout=30) as http:
        posted = [(await post(http, blog, editor, f"{i} {big}"))["id"] for i in range(120)]
        writer.transport.resume_reading()
        received = []
        while len(received) < len(posted):
            chunk = await _read_chunk(reader)
            for frame in chunk.split(b"\n\n"):
                if frame.startswith(b"id: "):
                    received.append(json.loads(frame.split(b"\ndata: ", 1)[1])["id"])
        assert received == posted
        # Nothing was cut off: the reader fell behind only its socket, not the history.
        cut = [line for line in (await http.get("/metrics")).text.splitlines()
               if line.startswith("liveblog_sse_clients_cut_off_total ")]
        assert cut == ["liveblog_sse_clients_cut_off_total 0.0"]
    writer.close()
    own.stop()
