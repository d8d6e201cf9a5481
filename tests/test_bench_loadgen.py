"""The load generator's parser (``bench/loadgen.py``), offline: a stream like the server's, split at
every byte, in LF, CRLF and CR variants, parses to the same ids, arrival times and ``retry:``
bookkeeping as whole.

The server's live frames take a fast path (whole chunks parsed where they lie); anything else the
general one. These tests pin both to the same answers, so the fast path cannot drift from the other."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
from collections.abc import Iterator

import pytest

from bench import loadgen
from bench.loadgen import Reader, SSEProtocol
from liveblog.fanout import HEARTBEAT, ROLLBACK_RESET, chunked, encode_event

HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-store\r\n"
        b"transfer-encoding: chunked\r\n\r\n")


def entry(n: int, size: int) -> str:
    """An ``entry.created`` event's data as the server presents it (about ``size`` bytes of text)."""
    text = ("La piazza si riempie mentre arrivano le prime dichiarazioni ufficiali. " * (1 + size // 70))[:size]
    return json.dumps({"id": str(n), "blog": "bench-0", "title": None, "body_html": f"<p>{text}</p>", "image": None,
                       "author": "bootstrap-admin", "published_at": "2026-12-07T10:28:54.210Z",
                       "updated_at": "2026-12-07T10:28:54.210Z", "key_event": False, "pinned": False, "version": 1,
                       "status": "published", "url": f"http://127.0.0.1/blogs/bench-0/updates/{n}"},
                      separators=(",", ":"))


def sid(n: int) -> str:
    return f"{1796639334212 + n}-0"


def frame(n: int, size: int = 300) -> bytes:
    """A live frame as the server encodes it (300 characters: the benchmark's default update)."""
    return encode_event(sid(n), "entry.created", entry(n, size))


# The chunks' payloads, LF line ends: what the server writes (one chunk per live frame, a catch-up of
# several frames in one chunk, heartbeats, a reset without id), then what it never writes but a
# stream may hold (frames split across chunks anywhere, an id without data, a comment, data on two
# lines, a second ``retry:``).
SPLIT = frame(7)
PAYLOADS = [
    b": a comment first, so that the retry is parsed after a complete event\n\nretry: 857\n\n",
    frame(1, 1500),
    frame(2, 1500),
    HEARTBEAT,
    frame(3),
    b"".join([frame(4), frame(5), HEARTBEAT, frame(6, 1500)]),
    ROLLBACK_RESET,
    SPLIT[:30], SPLIT[30:200], SPLIT[200:-1], SPLIT[-1:],  # the blank line's two LFs in two chunks
    b"id: 99-0\n\n: a comment\n\n",
    b"id: 96-0\rdata: a CR ends a line in any variant\n\n",
    b"id: 97-0\nid: 98-0\ndata: the last id counts\n\n",
    # A CR held back after a whole event, then a chunk that ends inside one: the CR goes first.
    b"id: 95-0\rdata: CR\r\r\r", b"id: 94-0\ndata: x\n\nid: 93-0\nda", b"ta: y\n\n",
    b"id: 8-0\ndata: line one\ndata: line two\n\nretry: 1500\n\n",
    frame(9)[:-1], b"\n" + frame(10),  # an event's end and the next one's start in one chunk
    b": end\n\n",  # the text's last CR is held back (it may begin a CRLF): with CR line ends, this one's
]
IDS = [sid(n) for n in range(1, 8)] + ["96-0", "98-0", "95-0", "94-0", "93-0", "8-0", sid(9), sid(10)]


def wire(line_end: bytes, extension: bool = False) -> bytes:
    """The whole response: head, chunked body with ``line_end`` for SSE's LF, the last chunk."""
    chunks = []
    for payload in PAYLOADS:
        chunk = chunked(payload.replace(b"\n", line_end))
        if extension:  # a chunk extension: legal, never sent by the server
            chunk = chunk.replace(b"\r\n", b";x=1\r\n", 1)
        chunks.append(chunk)
    return HEAD + b"".join(chunks) + b"0\r\n\r\n"


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class Clock:
    """Stands in for the ``time`` module in ``bench.loadgen``: the "time" of a read is its index."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(loadgen, "time", fake)
    return fake


def feed(clock: Clock, reads: list[bytes], reader: Reader | None = None) -> Reader:
    reader = reader or Reader("/events")
    protocol = SSEProtocol(reader, b"", False, asyncio.get_running_loop().create_future())
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    for index, data in enumerate(reads):
        clock.now = float(index)
        protocol.data_received(data)
    return reader


def splits(data: bytes) -> Iterator[tuple[int, list[bytes]]]:
    """``data`` whole, then cut in two at every byte, then one byte per read."""
    yield 0, [data]
    for at in range(1, len(data)):
        yield at, [data[:at], data[at:]]
    yield -1, [data[i : i + 1] for i in range(len(data))]


def completions(data: bytes) -> tuple[list[int], int]:
    """Where in ``data`` each of :data:`IDS`'s events, and the first ``retry:``'s, becomes complete:
    at the LF that ends its blank line, or for a blank line ended by a lone CR at the next byte of
    text (a CR at the end of what came so far may be the first half of a CRLF). By a plain decoding
    of the whole body, then of its line ends, keeping where each byte came from."""
    text, at = b"", []
    pos = data.index(b"\r\n\r\n") + 4
    while size := int(data[pos : (pos := data.index(b"\r\n", pos))].split(b";")[0], 16):
        text += data[pos + 2 : pos + 2 + size]
        at.extend(range(pos + 2, pos + 2 + size))
        pos += 2 + size + 2
    at.append(len(data))  # a CR that ends the text is never known to be a line end by itself
    lines, known = bytearray(), []  # the text with LF line ends; where each of its bytes is known
    for i, byte in enumerate(text):
        if byte == 13 and text[i + 1 : i + 2] == b"\n":
            continue  # the LF that follows stands for both
        lines.append(10 if byte == 13 else byte)
        known.append(at[i + 1] if byte == 13 else at[i])

    def complete(start: int) -> int:
        return known[lines.index(b"\n\n", start) + 1]

    return [complete(lines.index(b"id: " + event_id.encode())) for event_id in IDS], complete(lines.index(b"retry:"))


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
async def test_every_split_of_the_stream_gives_the_same_ids_times_and_retry(clock: Clock, line_end: bytes) -> None:
    """Each event is stamped with the time of the read that completed it; the herd's and the storm's
    bookkeeping happens once, with the time of the read that completed the first ``retry:``."""
    data = wire(line_end)
    ends, retry_end = completions(data)
    for at, reads in splits(data):
        reader = Reader("/events")
        reader.dropped_at = reader.reopen_at = -1.0
        feed(clock, reads, reader)
        stops = list(itertools.accumulate(map(len, reads)))
        times = [float(bisect.bisect_right(stops, end)) for end in (*ends, retry_end)]
        assert reader.status == 200
        assert reader.ids == IDS, at
        assert reader.times == times[:-1], at
        assert reader.last_id == IDS[-1]
        assert reader.retry_seen
        assert reader.retry_ms == 1500, at
        assert reader.back_at == times[-1], at
        assert reader.reconnect_ms == [(times[-1] + 1) * 1000], at
        assert reader.dropped_at is None


async def test_chunk_extensions_are_parsed_too(clock: Clock) -> None:
    for reads in ([wire(b"\n", extension=True)], list(splits(wire(b"\r\n", extension=True)))[-1][1]):
        assert feed(clock, reads).ids == IDS


async def test_the_servers_frames_read_whole_never_take_the_general_path(clock: Clock,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One read per chunk (what a reader keeping up gets), and several chunks per read (a catch-up,
    a reader behind): all parsed in place, no chunk decoded into a copy."""
    data = wire(b"\n")
    head_end = data.index(b"\r\n\r\n") + 4
    served = [chunked(payload) for payload in PAYLOADS[:7]]

    def general(*_: object) -> bytes:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(SSEProtocol, "_dechunk", general)
    monkeypatch.setattr(SSEProtocol, "_feed", general)
    assert feed(clock, [data[:head_end], *served]).ids == IDS[:6]
    assert feed(clock, [data[:head_end] + b"".join(served[:3]), b"".join(served[3:])]).ids == IDS[:6]


async def test_line_ends_mixed_in_one_stream_and_chunks_cut_inside_events(clock: Clock) -> None:
    body = (b"retry: 2000\r\n\r\n: comment\r\n\r\nid: 1-0\r\nevent: entry.created\r\ndata: {\"a\":1}\r\n\r\n"
            b"id: 2-0\ndata: x\n\n: keep-alive\n\nid: 3-0\rdata: y\r\r: end\n\n")
    data = HEAD + b"".join(chunked(part) for part in (body[:30], body[30:77], body[77:]))
    for step in (1, 2, 3, 7, 64, len(data)):
        reader = feed(clock, [data[at : at + step] for at in range(0, len(data), step)])
        assert reader.ids == ["1-0", "2-0", "3-0"], step
        assert reader.retry_ms == 2000
