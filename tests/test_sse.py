"""Server-sent events: delivery, resume without gap or duplicate, reset, bad resume points."""

from __future__ import annotations

import asyncio
import socket
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from liveblog import keys
from tests.conftest import RedisServer, Service, admin
from tests.sse_client import SSEClient
from tests.support import HOSTILE, assert_clean, post


async def test_post_reaches_a_connected_reader(client: httpx.AsyncClient, server: Service, blog: str,
                                               editor: dict[str, str]) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        assert reader.status == 200
        response = await client.post(f"/api/blogs/{blog}/entries", headers=editor,
                                     json={"body": "aggiornamento ore 14.25", "title": "Kyiv"})
        assert response.status_code == 201
        event = await reader.next()
        assert event.event == "entry.created"
        assert event.json["id"] == response.json()["id"]
        assert event.json["body_html"] == "<p>aggiornamento ore 14.25</p>"
        assert event.id and event.id.count("-") == 1
    assert reader.retry is not None and reader.retry > 0


async def test_edits_and_deletes_reach_readers(client: httpx.AsyncClient, server: Service, blog: str,
                                               editor: dict[str, str]) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        entry = await post(client, blog, editor, "prima versione")
        await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor,
                           json={"body": "seconda versione", "pinned": True})
        await client.delete(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor)
        await client.patch(f"/api/blogs/{blog}", headers=editor, json={"status": "ended"})
        created, updated, deleted, blog_updated = await reader.take(4)
    assert [created.event, updated.event, deleted.event, blog_updated.event] == [
        "entry.created", "entry.updated", "entry.deleted", "blog.updated"]
    assert updated.json["body_html"] == "<p>seconda versione</p>" and updated.json["version"] == 2
    assert updated.json["pinned"] is True
    assert deleted.json["id"] == entry["id"] and deleted.json["deleted"] is True
    assert blog_updated.json["status"] == "ended"
    ids = [e.id for e in (created, updated, deleted, blog_updated)]
    assert ids == sorted(ids, key=lambda sid: tuple(map(int, sid.split("-"))))


async def test_resume_after_disconnect_gets_each_missed_change_once_in_order(
        client: httpx.AsyncClient, server: Service, blog: str, editor: dict[str, str]) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        await post(client, blog, editor, "visto")
        seen = await reader.next()
    missed = [(await post(client, blog, editor, f"perso {i}"))["id"] for i in range(25)]
    # Resume both ways a client can: the header (browsers' automatic reconnect) and the query parameter.
    for kwargs in ({"last_event_id": seen.id}, {"params": {"last_event_id": seen.id}}):
        async with SSEClient(f"{server.url}/blogs/{blog}/events", **kwargs) as resumed:
            caught_up = await resumed.take(len(missed))
            live = await post(client, blog, editor, "dal vivo")
            after = await resumed.next()
            await asyncio.sleep(0.3)
            assert resumed.queue.empty(), "a change was delivered twice"
        assert [e.json["id"] for e in caught_up] == missed
        assert after.json["id"] == live["id"]
        missed.append(live["id"])


async def test_hand_over_from_catch_up_to_live_has_no_gap_or_duplicate(
        client: httpx.AsyncClient, server: Service, blog: str, editor: dict[str, str]) -> None:
    """Changes posted while a reader is catching up arrive exactly once."""
    first = await post(client, blog, editor, "inizio")
    async with SSEClient(f"{server.url}/blogs/{blog}/events", params={"last_event_id": "0-0"}) as reader:
        posted = [first["id"]]
        posting = asyncio.gather(*(post(client, blog, editor, f"corsa {i}") for i in range(20)))
        posted += [e["id"] for e in await posting]
        events = await reader.take(len(posted) + 1)  # + the blog.created event at the stream's start
        await asyncio.sleep(0.3)
        assert reader.queue.empty()
    ids = [e.json["id"] for e in events if e.event == "entry.created"]
    assert sorted(ids, key=int) == sorted(posted, key=int) and len(ids) == len(set(ids))


async def test_a_herd_resuming_from_before_the_process_first_reader_is_served_from_memory(
        client: httpx.AsyncClient, server: Service, blog: str, editor: dict[str, str],
        redis_server: RedisServer) -> None:
    """The deploy herd: readers of a process that went away all resume here from where they left off,
    before this process's first reader of the blog. The first resume extends the blog's history back to
    that point (one read of the store); the others are served from memory: a change deleted from the
    stream after the first resume still reaches them, and every change arrives once, in order."""
    posted = [(await post(client, blog, editor, f"prima {i}"))["id"] for i in range(6)]
    store = redis_server.client()
    ids = [sid for sid, _ in store.xrange(keys.stream(blog))]  # blog.created, then one per entry
    left_at = ids[2]  # every reader of the herd left after the second entry
    url = f"{server.url}/blogs/{blog}/events"
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(SSEClient(url, last_event_id=left_at))
        assert [e.json["id"] for e in await first.take(4)] == posted[2:]
        store.xdel(keys.stream(blog), ids[4])  # posted[3]: gone from the store now, still in memory
        herd = [await stack.enter_async_context(SSEClient(url, last_event_id=left_at)) for _ in range(5)]
        for reader in herd:
            assert [e.json["id"] for e in await reader.take(4)] == posted[2:]
        live = await post(client, blog, editor, "dal vivo")
        for reader in [first, *herd]:
            assert (await reader.next()).json["id"] == live["id"]
        await asyncio.sleep(0.3)
        assert all(reader.queue.empty() for reader in [first, *herd]), "a change was delivered twice"


@pytest.mark.parametrize("bad", ["garbage", "12-ab", "-1", "1-2-3", "99999999999999999999999-0", "'; DROP"])
async def test_garbage_last_event_id_is_a_400(server: Service, blog: str, bad: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        for response in (await http.get(f"/blogs/{blog}/events", headers={"Last-Event-ID": bad}),
                         await http.get(f"/blogs/{blog}/events", params={"last_event_id": bad})):
            assert response.status_code == 400
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "Last-Event-ID" in response.json()["detail"]


async def test_id_from_another_stream_gets_reset(client: httpx.AsyncClient, server: Service, blog: str,
                                                 editor: dict[str, str]) -> None:
    await post(client, blog, editor, "x")
    async with SSEClient(f"{server.url}/blogs/{blog}/events", last_event_id="99999999999999-0") as reader:
        assert (await reader.next()).event == "reset"


async def test_hostile_html_is_sanitized_in_sse_data(client: httpx.AsyncClient, server: Service, blog: str,
                                                     editor: dict[str, str]) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        await post(client, blog, editor, HOSTILE)
        event = await reader.next()
    assert_clean(event.json["body_html"])
    assert "testo" in event.json["body_html"]


@pytest.fixture(scope="module")
def tight_server(service_factory) -> Service:  # type: ignore[no-untyped-def]
    """A server with a short change log, tiny client buffers and a fast heartbeat."""
    return service_factory("serve", "--no-dispatcher", env={
        "LIVEBLOG_STREAM_MAXLEN": "5", "LIVEBLOG_SSE_CLIENT_BUFFER": "4", "LIVEBLOG_SSE_HEARTBEAT": "0.5"})


async def test_resume_point_trimmed_away_gets_reset(tight_server: Service, editor: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=tight_server.url) as http:
        slug = f"trim-{uuid.uuid4().hex[:8]}"
        assert (await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"})).status_code == 201
        async with SSEClient(f"{tight_server.url}/blogs/{slug}/events") as reader:
            await post(http, slug, editor, "prima")
            old = (await reader.next()).id
        for i in range(20):
            await post(http, slug, editor, f"n{i}")
        async with SSEClient(f"{tight_server.url}/blogs/{slug}/events", last_event_id=old) as resumed:
            reset = await resumed.next()
        assert reset.event == "reset"
        # Current state survives trimming: every entry is still there.
        assert len((await http.get(f"/api/blogs/{slug}/entries", params={"limit": 50})).json()["entries"]) == 21


async def test_heartbeat_comment_and_retry_hint(tight_server: Service, editor: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=tight_server.url) as http:
        slug = f"hb-{uuid.uuid4().hex[:8]}"
        await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"})
        async with SSEClient(f"{tight_server.url}/blogs/{slug}/events") as reader:
            for _ in range(100):
                if reader.comments:
                    break
                await asyncio.sleep(0.1)
        assert reader.comments, "no heartbeat comment arrived"
        assert reader.retry and reader.retry > 0


async def test_heartbeat_is_also_a_named_event_without_an_id(tight_server: Service, editor: dict[str, str]) -> None:
    """Browsers never show comments to JavaScript: the page's watchdog needs an event it can see,
    one that leaves the resume point (the last ``id:``) alone."""
    async with httpx.AsyncClient(base_url=tight_server.url) as http:
        slug = f"hbe-{uuid.uuid4().hex[:8]}"
        await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"})
        async with SSEClient(f"{tight_server.url}/blogs/{slug}/events") as reader:
            await post(http, slug, editor, "prima")
            created = await reader.next()
            for _ in range(100):
                if reader.heartbeats:
                    break
                await asyncio.sleep(0.1)
            await post(http, slug, editor, "dopo")
            after = await reader.next()
        assert reader.heartbeats, "no heartbeat event arrived"
        beat = reader.heartbeats[0]
        assert beat.id is None and beat.json == {} and "keep-alive" in reader.comments
        assert (created.event, after.event) == ("entry.created", "entry.created")


async def test_a_reader_that_does_not_read_is_cut_off_and_others_get_everything(
        tight_server: Service, editor: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=tight_server.url) as http:
        slug = f"slow-{uuid.uuid4().hex[:8]}"
        await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"})
        cut_before = _metric(await http.get("/metrics"), "liveblog_sse_clients_cut_off_total")
        # A raw socket that sends the request and then never reads: its kernel buffers fill up.
        _, frozen_writer = await asyncio.open_connection("127.0.0.1", tight_server.port)
        frozen_writer.write(f"GET /blogs/{slug}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await frozen_writer.drain()
        big = "parola " * 7000
        async with SSEClient(f"{tight_server.url}/blogs/{slug}/events") as healthy:
            posted = [(await post(http, slug, editor, f"{i} {big}"))["id"] for i in range(120)]
            received = [e.json["id"] for e in await healthy.take(len(posted), timeout=30)]
        assert received == posted
        cut_after = _metric(await http.get("/metrics"), "liveblog_sse_clients_cut_off_total")
        assert cut_after > cut_before
        frozen_writer.close()


async def test_a_reader_whose_connection_stays_full_is_cut_off_after_the_send_timeout(
        service_factory, editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """Fewer changes than the reader's buffer holds, so no overflow: what cuts the frozen reader off is
    its connection staying full for LIVEBLOG_SSE_SEND_TIMEOUT (1 s here; the default is 10 s)."""
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_SSE_SEND_TIMEOUT": "1"})
    async with httpx.AsyncClient(base_url=own.url) as http:
        slug = f"frozen-{uuid.uuid4().hex[:8]}"
        await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"})
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: full at once
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", own.port))
        _, frozen_writer = await asyncio.open_connection(sock=sock)
        frozen_writer.write(f"GET /blogs/{slug}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await frozen_writer.drain()
        frozen_writer.transport.pause_reading()  # and it never reads
        cut_before = _metric(await http.get("/metrics"), "liveblog_sse_clients_cut_off_total")
        big = "parola " * 7000
        # More than the kernel takes for a peer that does not read (its send buffer grows up to the
        # third figure of tcp_wmem, 4 MB by default) plus 1 MB, in fewer frames than the 256 a reader may
        # fall behind.
        for i in range(min(250, (_max_send_buffer() + 2**20) // len(big) + 1)):
            await post(http, slug, editor, f"{i} {big}")
        started = asyncio.get_running_loop().time()
        while _metric(await http.get("/metrics"), "liveblog_sse_clients_cut_off_total") == cut_before:
            assert asyncio.get_running_loop().time() - started < 8, "the frozen reader was not cut off"
            await asyncio.sleep(0.1)
        frozen_writer.close()


def _max_send_buffer() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 2**20


def _metric(response: httpx.Response, name: str) -> float:
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")
