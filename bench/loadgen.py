"""The load generator: many SSE readers in one process, driven over stdin/stdout by the orchestrator.

Each reader is a raw ``asyncio.Protocol`` on uvloop (no HTTP client library): it writes one
``GET`` request, parses the status line and headers, decodes ``Transfer-Encoding: chunked`` when
present and parses the SSE wire format with LF, CR or CRLF line ends (a CR at the end of a read is held
back until the next one, so a CRLF split across two reads is not taken for a blank line). Each
event's ``id:`` is stored with the wall-clock time (``time.time()``) of the read that completed it;
the orchestrator compares that with the time its poster recorded just before the POST.

The parser's CPU is part of what a fan-out run measures (the load generator shares the cores with
the server), so the common case has a fast path: a read that starts at a chunk boundary and holds
whole chunks of LF-only text (what the server writes: each frame chunk-framed once) is parsed in
place, with no copy of the chunks' data and no split into lines. Anything else (a chunk cut by a
read, CR line ends, an event cut by a chunk, a chunk extension) goes through the general path,
which decodes the chunked body and normalises the line ends first, and keeps an event cut over many
reads (the slow-readers scenario's 45,000-character updates) in pieces, joined once when its end
comes. Both paths record events with the same method (``tests/test_bench_loadgen.py`` holds them to
the same answers, ids and times, for a stream cut at every byte).

Run as ``python -m bench.loadgen``; it answers one JSON line per command (see :func:`serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import resource
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CONNECT_CONCURRENCY = 200
CONNECT_ATTEMPTS = 20
HERD_CONCURRENCY = 10_000


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit (10k readers need one fd each, per side)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Reader:
    """One logical reader: survives reconnects; what it received, in order."""

    path: str
    ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    last_id: str | None = None
    protocol: SSEProtocol | None = None
    status: int | None = None
    ended: int = 0  # streams the server ended (or that failed) without being asked to
    reconnect_ms: list[float] = field(default_factory=list)
    dropped_at: float | None = None
    retry_seen: bool = False
    retry_ms: int = 3000  # the last ``retry:`` the server sent (EventSource's default until one comes)
    reopen_at: float | None = None  # herd: when it last began reconnecting on its own
    back_at: float | None = None  # herd: when the new stream's first frame arrived
    left_at: float | None = None  # herd: when the server ended its stream
    failed: int = 0  # connection attempts that got no response head (since the last reconnect began)


class SSEProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one event stream."""

    __slots__ = ("_body", "_chunk_left", "_chunked", "_closing", "_cr", "_ended", "_head", "_skip", "_sse",
                 "connected", "done", "on_end", "reader", "request", "slow", "transport")

    def __init__(self, reader: Reader, request: bytes, slow: bool, done: asyncio.Future[bool],
                 on_end: Callable[[Reader], None] | None = None) -> None:
        self.reader = reader
        self.on_end = on_end  # called when the server ends a stream that had been answered with 200
        self.request = request
        self.slow = slow
        self.done = done  # resolved when the response head has arrived (True: 200)
        self.transport: asyncio.Transport | None = None
        self._head = b""
        self._chunked: bool | None = None
        self._chunk_left = 0  # data bytes left in the current chunk
        self._skip = 0  # bytes of chunk framing (CRLF after data) still to skip
        self._body = b""  # undecoded chunked framing carried over between reads
        # Decoded SSE text (LF line ends) not yet ending in a blank line, in pieces as it came: an event
        # cut over many reads is joined once, when its end comes (joining at every read was quadratic).
        self._sse: list[bytes] = []
        self._cr = False  # a CR ended the text so far: a line end, but of one line or two (CRLF)?
        self._ended = False  # the last chunk came: what follows it (the CRLF after "0") is not a chunk
        self._closing = False
        self.connected = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.reader.protocol = self
        if self.slow:
            # A frozen client: a tiny receive window, and it never reads.
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.transport.write(self.request)  # type: ignore[union-attr]
        if self.slow:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self._chunked is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end].lower(), self._head[end + 4 :]
            self._head = b""
            status = int(head[9:12])
            self.reader.status = status
            self._chunked = b"transfer-encoding: chunked" in head
            self.connected = status == 200
            if not self.done.done():
                self.done.set_result(self.connected)
            if not self.connected:
                self.transport.close()  # type: ignore[union-attr]
                return
        if self._chunked:
            if not (self._chunk_left or self._skip or self._body or self._sse or self._cr or self._ended):
                taken = self._whole_chunks(data, now)
                if taken == len(data):
                    return
                if taken:
                    data = data[taken:]
            data = self._dechunk(data)
        if data:
            self._feed(data, now)

    def _whole_chunks(self, data: bytes, now: float) -> int:
        """The fast path, for a read that begins at a chunk boundary with nothing carried over: what
        the server writes (each frame chunk-framed once, LF line ends, whole events per chunk) is
        parsed where it lies, with no copy of a chunk's data. Takes chunks while each is whole in
        ``data`` and free of CR; returns where it stopped, for :meth:`_dechunk` and :meth:`_feed`
        to go on from (a chunk that ends inside an event leaves that event's start in ``_sse``)."""
        pos, size = 0, len(data)
        while pos < size:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                break
            try:
                length = int(data[pos:line_end], 16)
            except ValueError:  # a chunk extension (or garbage): the general path's business
                break
            start = line_end + 2
            end = start + length
            if length <= 0 or end + 2 > size or data.find(b"\r", start, end) >= 0:
                break
            done = self._events(data, start, end, now)
            pos = end + 2
            if done < end:
                self._sse.append(data[done:end])
                break
        return pos

    def _dechunk(self, data: bytes) -> bytes:
        if self._ended:
            return b""
        if self._body:
            data, self._body = self._body + data, b""
        out: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._skip:
                step = min(self._skip, size - pos)
                pos += step
                self._skip -= step
                continue
            if self._chunk_left:
                take = min(self._chunk_left, size - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._chunk_left -= take
                if not self._chunk_left:
                    self._skip = 2
                continue
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                self._body = data[pos:]
                break
            length = int(data[pos:line_end].split(b";", 1)[0], 16)
            pos = line_end + 2
            if length == 0:  # last chunk: the server ended the stream
                self._ended = True
                break
            self._chunk_left = length
        return b"".join(out)

    def _feed(self, text: bytes, now: float) -> None:
        """The general path: decoded SSE text, any line ends, events split anywhere across reads."""
        if self._cr or b"\r" in text:
            if self._cr:
                text = b"\r" + text
            self._cr = text.endswith(b"\r")
            if self._cr:
                text = text[:-1]
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pending = self._sse
        # Whether ``text`` ends an event: a blank line in it or where it meets the pending text. The
        # one-byte search first: most reads of a big event hold no LF at all.
        if b"\n" in text and (b"\n\n" in text or (text[0] == 10 and pending and pending[-1][-1] == 10)):
            buffer = b"".join([*pending, text]) if pending else text
            start = self._events(buffer, 0, len(buffer), now)
            self._sse = [buffer[start:]] if start < len(buffer) else []
        elif text:
            pending.append(text)

    def _events(self, buffer: bytes, start: int, end: int, now: float) -> int:
        """Record the whole events in ``buffer[start:end]`` (LF line ends only); returns where the
        first incomplete one begins. Line by line, in place: the lines are found with a one-byte
        search (a search for the blank line's two bytes costs as much again, over the whole event)
        and none is copied but an ``id:``'s or a ``retry:``'s value."""
        reader = self.reader
        find, startswith = buffer.find, buffer.startswith
        event_id = None
        has_data = retried = False
        retry_ms: int | None = None
        line = start
        while (line_end := find(b"\n", line, end)) >= 0:
            if line_end == line:  # a blank line ends the event
                if has_data and event_id is not None:
                    reader.ids.append(event_id)
                    reader.times.append(now)
                    reader.last_id = event_id
                if retried:
                    self._retry(retry_ms, now)
                event_id = retry_ms = None
                has_data = retried = False
                start = line_end + 1
                if start == end:  # saves a search (as costly as a line) after the last event
                    break
            else:
                first = buffer[line]
                if first == 105 and startswith(b"id:", line, line_end):  # "i"
                    event_id = buffer[line + 3 : line_end].strip().decode()
                elif first == 100 and startswith(b"data:", line, line_end):  # "d"
                    has_data = True
                elif first == 114 and startswith(b"retry:", line, line_end):  # "r"
                    retried = True
                    with contextlib.suppress(ValueError):
                        retry_ms = int(buffer[line + 6 : line_end])
            line = line_end + 1
        return start

    def _retry(self, retry_ms: int | None, now: float) -> None:
        """An event with a ``retry:`` line (``retry_ms``: its value, if a number): the reconnect delay
        to use, and (herd, storm) the sign that a new stream answered."""
        reader = self.reader
        reader.retry_seen = True
        if retry_ms is not None:
            reader.retry_ms = retry_ms
        if reader.reopen_at is not None and reader.back_at is None:
            reader.back_at = now
        if reader.dropped_at is not None:
            reader.reconnect_ms.append((now - reader.dropped_at) * 1000)
            reader.dropped_at = None

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(False)
        if not self._closing:
            self.reader.ended += 1
        if self.reader.protocol is self:
            self.reader.protocol = None
            if not self._closing and self.connected and self.on_end is not None:
                self.on_end(self.reader)

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()


class LoadGen:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.readers: list[Reader] = []
        self.slow: list[Reader] = []
        self._gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self._follow: Callable[[Reader], None] | None = None
        self._reopening: set[asyncio.Task[bool]] = set()
        # Browsers reconnect independently of each other: the herd is not queued behind the gate that
        # paces the initial connects (a larger one only keeps the load generator's own fds in check).
        self._herd_gate = asyncio.Semaphore(HERD_CONCURRENCY)

    def _request(self, reader: Reader) -> bytes:
        lines = [f"GET {reader.path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: text/event-stream",
                 "Cache-Control: no-cache"]
        if reader.last_id is not None:
            lines.append(f"Last-Event-ID: {reader.last_id}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def open(self, reader: Reader, slow: bool = False, gate: asyncio.Semaphore | None = None,
                   head_timeout: float = 30) -> bool:
        """Connect and wait for the response head; retried when the listen backlog overflows."""
        loop = asyncio.get_running_loop()
        for attempt in range(CONNECT_ATTEMPTS):
            async with gate or self._gate:
                done: asyncio.Future[bool] = loop.create_future()
                protocol = SSEProtocol(reader, self._request(reader), slow, done, self._follow)
                try:
                    await asyncio.wait_for(loop.create_connection(lambda p=protocol: p, self.host, self.port), 15)
                    if slow:
                        return True  # it never reads, so it never sees the head
                    if await asyncio.wait_for(done, head_timeout):
                        return True
                except (OSError, TimeoutError):
                    pass
                # Give up on this attempt's connection: left open, a late answer would feed the same
                # reader a second stream (duplicates that the server never sent twice).
                protocol.close()
                reader.failed += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0) * random.random())
        return False

    async def connect(self, paths: list[str], last_event_id: str | None, slow: bool) -> dict[str, Any]:
        new = [Reader(path, last_id=last_event_id) for path in paths]
        (self.slow if slow else self.readers).extend(new)
        results = await asyncio.gather(*(self.open(r, slow) for r in new))
        return {"connected": sum(results), "failed": len(results) - sum(results)}

    async def storm(self, window: float) -> dict[str, Any]:
        """Every reader drops its connection at a random moment within ``window`` and reconnects at
        once with ``Last-Event-ID`` (what a browser's EventSource does after a network blip). The
        reconnect times reported afterwards are this storm's."""
        for reader in self.readers:
            reader.reconnect_ms.clear()

        async def cycle(reader: Reader) -> bool:
            await asyncio.sleep(random.random() * window)
            if reader.protocol is not None:
                reader.protocol.close()
            reader.dropped_at = time.time()
            return await self.open(reader)

        results = await asyncio.gather(*(cycle(r) for r in self.readers))
        return {"reconnected": sum(results), "failed": len(results) - sum(results)}

    def follow(self, port: int) -> dict[str, Any]:
        """Herd mode: from now on, a reader whose stream the server ends reconnects on its own, as a
        browser's EventSource does: after the ``retry:`` that stream sent, with ``Last-Event-ID``,
        to ``port`` (the process that takes over, on the same Redis)."""
        self.port = port

        def reopen(reader: Reader) -> None:
            reader.dropped_at = reader.left_at = time.time()
            reader.back_at = reader.status = None
            reader.failed = 0

            async def later() -> bool:
                await asyncio.sleep(reader.retry_ms / 1000)
                reader.reopen_at = time.time()
                return await self.open(reader, gate=self._herd_gate, head_timeout=120)

            task = asyncio.get_running_loop().create_task(later())
            self._reopening.add(task)
            task.add_done_callback(self._reopening.discard)

        self._follow = reopen
        for reader in self.readers:
            if reader.protocol is not None:
                reader.protocol.on_end = reopen
        return {"following": len(self.readers)}

    async def wait(self, expected: dict[str, int], timeout: float) -> dict[str, Any]:
        """Until every reader still connected holds as many events as expected for its path (or the
        timeout). A reader whose stream the server ended is not waited for: nothing more reaches it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = sum(1 for r in self.readers if len(r.ids) < expected.get(r.path, 0) and r.protocol is not None)
            if not behind and not self._reopening:
                return {"complete": True}
            await asyncio.sleep(0.1)
        return {"complete": False}

    def report(self, expected: dict[str, list[str]], sent: dict[str, float]) -> dict[str, Any]:
        latencies: list[float] = []
        delivered = exact = duplicates = ended = 0
        reconnect_ms: list[float] = []
        caught_up_at: list[float] = []  # herd: when each reader, back, held every update posted before it left
        back_at: list[float] = []
        answered: list[float] = []  # herd: seconds from beginning to reconnect to the first frame back
        failed = 0  # herd: connection attempts that got no answer, over all readers' reconnects
        dropped_at: list[float] = []
        retry_ms: list[int] = []
        not_back: dict[str, int] = {}  # herd: readers that never got back, by the last status they saw
        for reader in self.readers:
            if reader.left_at is not None and reader.back_at is None:
                key = str(reader.status)
                not_back[key] = not_back.get(key, 0) + 1
            if reader.reopen_at is not None and reader.back_at is not None:
                arrivals = dict(zip(reversed(reader.ids), reversed(reader.times), strict=True))  # first arrival
                needed = [sid for sid in expected.get(reader.path, []) if sent.get(sid, 0.0) <= reader.reopen_at]
                if all(sid in arrivals for sid in needed):
                    caught_up_at.append(max([reader.back_at, *(arrivals[sid] for sid in needed)]))
                back_at.append(reader.back_at)
                answered.append(reader.back_at - reader.reopen_at)
                failed += reader.failed
                dropped_at.append(reader.left_at or 0.0)
                retry_ms.append(reader.retry_ms)
            want = expected.get(reader.path, [])
            delivered += len(set(reader.ids) & set(want))
            duplicates += len(reader.ids) - len(set(reader.ids))
            exact += reader.ids == want
            ended += reader.ended
            reconnect_ms.extend(reader.reconnect_ms)
            seen: set[str] = set()
            for event_id, at in zip(reader.ids, reader.times, strict=True):
                if event_id in sent and event_id not in seen:
                    seen.add(event_id)
                    latencies.append(round((at - sent[event_id]) * 1000, 2))
        return {"readers": len(self.readers), "expected": sum(len(expected.get(r.path, [])) for r in self.readers),
                "delivered": delivered, "exact": exact, "duplicates": duplicates, "ended": ended,
                "latencies": latencies, "reconnect_ms": reconnect_ms, "caught_up_at": caught_up_at,
                "back_at": back_at, "answered": answered, "failed_attempts": failed, "dropped_at": dropped_at,
                "retry_ms": retry_ms,
                "not_back": [f"{status}: {count}" for status, count in not_back.items()]}

    def spread(self, sent: dict[str, float]) -> dict[str, list[float]]:
        """Per update, every reader's latency in ms (to see how one fan-out spreads out)."""
        out: dict[str, list[float]] = {sid: [] for sid in sent}
        for reader in self.readers:
            for event_id, at in zip(reader.ids, reader.times, strict=True):
                if event_id in out:
                    out[event_id].append(round((at - sent[event_id]) * 1000, 2))
        return out

    def close_all(self) -> None:
        for reader in (*self.readers, *self.slow):
            if reader.protocol is not None:
                reader.protocol.close()


async def serve() -> None:
    """Command loop: one JSON object per stdin line, one JSON answer per stdout line."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    gen: LoadGen | None = None
    while line := await stdin.readline():
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "init":
            gen = LoadGen(cmd["host"], cmd["port"])
            answer: dict[str, Any] = {"fd_limit": raise_fd_limit()}
        elif op == "quit":
            break
        else:
            assert gen is not None, "init first"
            result = getattr(gen, op)(**cmd)
            answer = await result if asyncio.iscoroutine(result) else result
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    if gen is not None:
        gen.close_all()


def main() -> None:
    # A full collection over 10k readers' objects pauses this process for up to a second, which would
    # show up as server latency; the process lives for one scenario, so it simply never collects.
    gc.disable()
    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve())
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()


if __name__ == "__main__":
    main()
