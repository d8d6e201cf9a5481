"""The fan-out's pieces in-process: frames (sse-starlette's encoder), and Channel, Subscriber and Hub
on an in-memory change log (the real-server tests in test_sse.py cover them on Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest

from liveblog import fanout, streamids
from liveblog.changelog import MemoryChangeLog
from liveblog.fanout import Channel, Hub, Subscriber, chunked, encode_event
from liveblog.present import Presenter
from tests.sse_client import SSEClient


def parse(frame: bytes) -> tuple[str | None, str, str]:
    """What a client makes of one frame: (id, event, data)."""
    client = SSEClient("unused")
    client._handle(frame.decode().removesuffix("\n\n"))
    event = client.queue.get_nowait()
    return event.id, event.event, event.data


def test_multi_line_data_is_framed_as_one_data_line_per_line() -> None:
    frame = encode_event("1718000000000-0", "note", "prima\nseconda\r\nterza\rquarta")
    assert frame == (b"id: 1718000000000-0\nevent: note\n"
                     b"data: prima\ndata: seconda\ndata: terza\ndata: quarta\n\n")
    # No line of the data can end the frame early or pose as a field of its own.
    assert parse(frame) == ("1718000000000-0", "note", "prima\nseconda\nterza\nquarta")
    assert parse(encode_event("2-0", "x", "a\n\nid: 9-9\nevent: evil")) == ("2-0", "x", "a\n\nid: 9-9\nevent: evil")


def test_single_line_json_frames_are_unchanged_on_the_wire() -> None:
    data = '{"id":"1","body_html":"<p>a</p>"}'
    assert encode_event("5-1", "entry.created", data) == f"id: 5-1\nevent: entry.created\ndata: {data}\n\n".encode()


# ---- Channel, Subscriber and Hub on an in-memory change log ----------------------------------

async def started_hub(log: MemoryChangeLog, buffer: int = 8) -> Hub:
    hub = Hub(log, Presenter("https://x.example"), buffer=buffer, heartbeat=3600, send_timeout=3600)
    await hub.start()
    return hub


async def published(channel: Channel, count: int) -> None:
    """Wait until the channel has published ``count`` frames in all."""
    for _ in range(1000):
        if channel.end >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{channel.end} frames published, not {count}")


async def test_a_resume_inside_the_channel_history_is_served_from_memory() -> None:
    log = MemoryChangeLog()
    hub = await started_hub(log)
    try:
        before = log.append("b", "note", '"zero"')
        sub = await hub.subscribe("b", "Europe/Rome")
        assert sub.channel.floor == streamids.parse(before.id)  # the channel starts at the log's newest
        changes = [log.append("b", "note", f'"n{i}"') for i in range(3)]
        await published(sub.channel, 3)
        cached = sub.channel.changes_after(streamids.parse(changes[0].id) or (0, 0))
        assert cached is not None
        assert [frame for _, frame in cached] == [encode_event(c.id, "note", c.data) for c in changes[1:]]
        assert sub.channel.changes_after(streamids.parse(before.id) or (0, 0)) is not None
        # A resume point older than the history is not served from memory (the caller asks the log).
        assert sub.channel.changes_after((0, 1)) is None
        data, last = sub.take(None)
        assert data == b"".join(encode_event(c.id, "note", c.data) for c in changes)
        assert last == streamids.parse(changes[-1].id)
    finally:
        await hub.stop()


async def test_a_resume_from_before_the_channel_began_backfills_the_history_once() -> None:
    """The deploy herd: a process's first reader of a blog arrives after the resume point its readers
    share; one read of the log extends the history back to it, and the rest resume from memory."""
    log = MemoryChangeLog()
    hub = await started_hub(log)
    try:
        changes = [log.append("b", "note", f'"n{i}"') for i in range(5)]
        live = await hub.subscribe("b", "UTC")  # the channel begins at changes[-1]
        channel = live.channel
        assert channel.changes_after(streamids.parse(changes[1].id) or (0, 0)) is None
        cached = await hub.resume(channel, streamids.parse(changes[1].id) or (0, 0))
        assert cached is not None
        assert [frame for _, frame in cached] == [encode_event(c.id, "note", c.data) for c in changes[2:]]
        assert channel.floor == streamids.parse(changes[1].id)
        log.fail_next(ConnectionError("log unavailable"))  # the next resumes must not need the log
        again = await hub.resume(channel, streamids.parse(changes[1].id) or (0, 0))
        later = await hub.resume(channel, streamids.parse(changes[3].id) or (0, 0))
        assert again == cached and later == cached[2:]
        # A reader registered before the backfill is not handed the older frames as new ones.
        new = log.append("b", "note", '"live"')
        await published(channel, 1)
        assert live.take(None) == (encode_event(new.id, "note", new.data), streamids.parse(new.id))
    finally:
        await hub.stop()


async def test_a_history_check_that_found_it_held_answers_resumes_for_a_tenth_of_a_second_only() -> None:
    """A herd costs a few history checks a second, not one per reconnect; a store emptied after a
    check is noticed by the first resume once the check's answer has aged out."""
    log = MemoryChangeLog()
    hub = await started_hub(log)
    try:
        sub = await hub.subscribe("b", "UTC")
        change = log.append("b", "note", '"n"')
        await published(sub.channel, 1)
        assert sub.take(None)[0] == encode_event(change.id, "note", '"n"')
        assert await hub.history_holds(sub.channel)
        log.logs["b"] = []  # the store is emptied right after that check
        assert await hub.history_holds(sub.channel)  # within the window, the check's answer stands
        await asyncio.sleep(fanout.HISTORY_CHECK_REUSE)
        assert not await hub.history_holds(sub.channel)  # past it, checked again: the history is gone
        assert sub.take(None)[0] == fanout.ROLLBACK_RESET  # and the blog's readers get a reset
    finally:
        await hub.stop()


async def test_no_backfill_for_a_resume_point_the_log_lacks_or_that_does_not_fit() -> None:
    log = MemoryChangeLog()
    hub = await started_hub(log, buffer=4)
    try:
        changes = [log.append("b", "note", f'"n{i}"') for i in range(8)]
        sub = await hub.subscribe("b", "UTC")
        floor = sub.channel.floor
        assert await hub.resume(sub.channel, streamids.parse(changes[1].id) or (0, 0)) is None  # 6 > 4 frames
        log.trim("b", keep=4)  # changes[3] is where trimming stopped
        assert await hub.resume(sub.channel, streamids.parse(changes[2].id) or (0, 0)) is None  # trimmed away
        assert sub.channel.floor == floor and len(sub.channel.frames) == 0
        cached = await hub.resume(sub.channel, streamids.parse(changes[3].id) or (0, 0))  # 4 frames fit
        assert cached is not None and [sid for sid, _ in cached] == [streamids.parse(c.id) for c in changes[4:]]
    finally:
        await hub.stop()


async def test_a_reader_left_behind_the_history_is_cut_off_as_overflow() -> None:
    log = MemoryChangeLog()
    hub = await started_hub(log, buffer=2)
    try:
        slow = await hub.subscribe("b", "UTC")
        for i in range(3):
            log.append("b", "note", f'"n{i}"')
        await published(slow.channel, 3)
        fast = Subscriber(hub, slow.channel)  # joins now: nothing missed
        assert slow.take(None) is None  # fell behind the history: the caller cuts it off
        assert fast.take(None) == (b"", None)
    finally:
        await hub.stop()


async def test_a_failure_during_subscribe_leaves_nothing_registered() -> None:
    log = MemoryChangeLog()
    hub = await started_hub(log)
    try:
        log.fail_next(ConnectionError("log unavailable"))
        with pytest.raises(ConnectionError):
            await hub.subscribe("b", "UTC")
        assert "b" not in hub.channels and "b" not in hub.cursors
        sub = await hub.subscribe("b", "UTC")  # and the next one works
        change = log.append("b", "note", '"after"')
        await published(sub.channel, 1)
        assert sub.take(None) == (encode_event(change.id, "note", '"after"'), streamids.parse(change.id))
    finally:
        await hub.stop()


async def test_memory_log_resume_checks_match_the_redis_ones() -> None:
    log = MemoryChangeLog()
    changes = [log.append("b", "note", f'"n{i}"') for i in range(5)]
    log.trim("b", keep=2)
    assert await log.trimmed("b") == changes[2].id
    assert not await log.needs_reset("b", streamids.parse(changes[2].id) or (0, 0))  # exactly the trim point
    assert await log.needs_reset("b", streamids.parse(changes[1].id) or (0, 0))  # trimmed away
    assert not await log.needs_reset("b", streamids.parse(changes[3].id) or (0, 0))
    assert await log.needs_reset("b", (1, 0))
    assert [c.id for c in await log.after("b", changes[2].id, 10)] == [changes[3].id, changes[4].id]
    assert await log.count_after("b", changes[2].id, 1) == 1
    assert await log.kept("b", changes[0].id) and not await log.kept("b", "99999999999999-0")


class _Connection(asyncio.Protocol):
    """The server side of a real loopback connection, as the hub writes to it (``fanout.Sink``)."""

    made: asyncio.Event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.made.set()

    def end_stream(self, clean: bool) -> None:
        self.transport.close()


@contextlib.asynccontextmanager
async def loopback_sink() -> AsyncIterator[tuple[_Connection, asyncio.StreamReader]]:
    """A real loopback connection: its server side (the sink the hub writes to) and the client's reader."""
    connection = _Connection()
    connection.made = asyncio.Event()
    server = await asyncio.get_running_loop().create_server(lambda: connection, "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        await asyncio.wait_for(connection.made.wait(), 5)
        yield connection, reader
        writer.close()
    finally:
        server.close()


async def test_a_live_reader_whose_catch_up_went_past_the_hub_gets_each_change_once() -> None:
    """A catch-up read from Redis can hold a change the hub has not published yet: once live, the
    reader must not get that change a second time from the hub, and must get the next one."""
    log = MemoryChangeLog()
    hub = await started_hub(log)
    try:
        async with loopback_sink() as (connection, reader):
            sub = await hub.subscribe("b", "UTC")
            ahead = log.append("b", "note", '"read by the catch-up"')
            assert hub.go_live(sub, connection, streamids.parse(ahead.id))  # before the hub publishes it
            await published(sub.channel, 1)
            following = log.append("b", "note", '"next"')
            await published(sub.channel, 2)
            expected = chunked(encode_event(following.id, "note", '"next"'))
            assert await asyncio.wait_for(reader.readexactly(len(expected)), 5) == expected
    finally:
        await hub.stop()


async def test_the_publishing_hook_runs_before_the_first_and_after_the_last_write_of_a_batch() -> None:
    """The photo decoders' pause (``liveblog.pausing``) is counted from the hook's last call: it must
    come after the batch's frames are written, not only before (the write itself takes a while)."""
    log = MemoryChangeLog()
    calls: list[int] = []
    hub = Hub(log, Presenter("https://x.example"), heartbeat=3600, send_timeout=3600,
              publishing=lambda: calls.append(channel.end))
    await hub.start()
    try:
        sub = await hub.subscribe("b", "UTC")
        channel = sub.channel
        for i in range(3):  # appended with no await between: the hub reads them as one batch
            log.append("b", "note", f'"n{i}"')
        await published(channel, 3)
        assert calls == [0, 3]
    finally:
        await hub.stop()


def dechunk(data: bytes) -> list[bytes]:
    """The chunks of a chunked HTTP/1.1 body, in order."""
    chunks, pos = [], 0
    while pos < len(data):
        line_end = data.index(b"\r\n", pos)
        size = int(data[pos:line_end], 16)
        chunks.append(data[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2
    return chunks


async def test_a_busy_blogs_heartbeats_ride_along_with_its_changes_and_a_quiet_blogs_come_alone() -> None:
    """Every stream gets a heartbeat at least every interval (the contract's comment line for
    proxies). On a blog with changes it goes out in the same write as a change: a pass of its own over
    every reader takes as long as a change's fan-out, and a change arriving meanwhile would wait."""
    log = MemoryChangeLog()
    hub = Hub(log, Presenter("https://x.example"), heartbeat=2.0, send_timeout=3600)
    await hub.start()
    try:
        async with loopback_sink() as (connection, reader):
            busy, quiet = await hub.subscribe("busy", "UTC"), await hub.subscribe("quiet", "UTC")
            assert hub.go_live(busy, connection, None)
            for i in range(40):  # a change every 0.1 s for 4 s: two intervals
                log.append("busy", "note", f'"n{i}"')
                await asyncio.sleep(0.1)
            await published(busy.channel, 40)
            received = b""
            while received.count(b"id: ") < 40:
                received += await asyncio.wait_for(reader.read(65536), 5)
        chunks = dechunk(received)
        assert len(chunks) == 40  # one write per change: no heartbeat of its own
        beats = [n for n, chunk in enumerate(chunks) if chunk.startswith(fanout.HEARTBEAT)]
        assert all(chunk.removeprefix(fanout.HEARTBEAT).startswith(b"id: ") for chunk in chunks)
        # One at least every interval (20 changes), riding along once the last is half an interval old.
        assert len(beats) >= 2 and beats[0] <= 20 and all(b - a <= 20 for a, b in itertools.pairwise(beats))
        quiet_frames, _ = quiet.take(None) or (b"", None)
        assert quiet_frames.count(fanout.HEARTBEAT) >= 2  # (one pass about every 1.5 s)
    finally:
        await hub.stop()
