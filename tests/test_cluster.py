"""A real Redis Cluster (3 primaries, one replica each) behind real `liveblog serve` processes.

``LIVEBLOG_REDIS_URL`` names one node; the processes find the rest. Pinned here: writes to blogs
whose keys live on different primaries, fan-out through two processes (every update exactly once on
every reader), resume with ``Last-Event-ID``, a scheduled entry published once by two schedulers,
a blog's slot migrated while readers read and an editor writes, and a primary killed under them.
The migration and failover tests run last: they change the cluster's shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from liveblog import keys
from liveblog.clusterlog import ClusterNotifier
from liveblog.redisconn import cluster_client, is_cluster
from liveblog.store import Store
from tests.clusters import ClusterSetup, cluster_binaries
from tests.conftest import Service, admin, cli_editor_headers, free_port, running, wait_until
from tests.sse_client import Event, SSEClient
from tests.support import write_through


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with running(ClusterSetup(tmp_path_factory.mktemp("cluster"), primaries=3, replicas=1)) as setup:
        yield setup


@pytest.fixture(scope="module")
def cluster_editor(cluster: ClusterSetup) -> dict[str, str]:
    """An editor token made with the CLI through the cluster URL (its global keys share one slot)."""
    return cli_editor_headers(cluster.url, "Cluster")


@pytest.fixture(scope="module")
def processes(service_factory, cluster: ClusterSetup) -> tuple[Service, Service]:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": cluster.url, "LIVEBLOG_SCHEDULER_INTERVAL": "0.2"}
    return (service_factory("serve", "--no-dispatcher", env=env),
            service_factory("serve", "--no-dispatcher", env=env))


def _slugs_on_every_primary(cluster: ClusterSetup) -> dict[int, str]:
    """A fresh slug per primary whose keys that primary serves."""
    found: dict[int, str] = {}
    primaries = set(cluster.primaries())
    while set(found) != primaries:
        slug = f"c-{uuid.uuid4().hex[:10]}"
        found.setdefault(cluster.owner(keys.stream(slug)), slug)
    return found


async def _create_blog(http: httpx.AsyncClient, slug: str) -> None:
    response = await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": f"Blog {slug}"})
    assert response.status_code == 201, response.text


async def _post(http: httpx.AsyncClient, slug: str, editor: dict[str, str], body: str, **fields: Any) -> str:
    response = await http.post(f"/api/blogs/{slug}/entries", headers=editor, json={"body": body, **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _created(events: list[Event]) -> list[str]:
    return [e.json["id"] for e in events if e.event == "entry.created"]


def _until_id(entry_id: str):  # type: ignore[no-untyped-def]
    return lambda e: e.event == "reset" or (e.event == "entry.created" and e.json["id"] == entry_id)


async def test_cluster_url_is_detected_from_any_node(cluster: ClusterSetup) -> None:
    for port in cluster.primaries():
        assert await is_cluster(f"redis://127.0.0.1:{port}/0")


def test_a_process_started_before_redis_answers_waits_to_learn_whether_it_is_a_cluster(tmp_path: Path) -> None:
    port, http_port = free_port(), free_port()
    env = {**os.environ, "LIVEBLOG_REDIS_URL": f"redis://127.0.0.1:{port}/0", "LIVEBLOG_MEDIA_DIR": str(tmp_path)}
    service = Service(["serve", "--no-dispatcher", "--port", str(http_port)], env, tmp_path / "serve.log", http_port)
    server, _ = cluster_binaries()
    redis_server: subprocess.Popen[bytes] | None = None
    try:
        service.start(wait=False)
        wait_until(lambda: "Redis does not answer" in service.log(), what="the start-up probe to fail")
        redis_server = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                         "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
        service.wait_ready()  # it asked again and serves
        assert httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200
    finally:
        service.stop()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)


async def test_cluster_client_waits_for_a_free_connection_instead_of_failing(cluster: ClusterSetup) -> None:
    client = cluster_client(cluster.url, max_connections=2, timeout=5)
    try:
        # Twelve commands that each hold a connection for 0.2 s: two at a time, none refused.
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(client.blpop(["lb:{pool}:empty"], timeout=0.2) for _ in range(12)))
        assert results == [None] * 12
        assert asyncio.get_running_loop().time() - started >= 1.2
    finally:
        await client.aclose()


async def test_notifier_reports_new_subscriptions_then_exactly_the_blogs_written(cluster: ClusterSetup) -> None:
    slugs = _slugs_on_every_primary(cluster)
    pool = cluster_client(cluster.url)
    notifier = ClusterNotifier(cluster_client(cluster.url))
    try:
        store = Store(pool)
        for slug in slugs.values():
            await store.create_blog({"slug": slug, "title": slug})
        notifier.follow(slugs.values())
        announced: set[str] = set()
        while announced != set(slugs.values()):  # each confirmed subscription counts as an announcement
            got = await notifier.wait(5)
            assert got is not None, "no subscription was confirmed within 5 s"
            announced |= got
        assert notifier.nodes == {f"127.0.0.1:{port}" for port in slugs}, "not one connection per primary"
        written = sorted(slugs.values())[1]
        await store.create_entry(written, {"body": "x"})
        assert await notifier.wait(5) == {written}
        notifier.wake()
        assert await notifier.wait(5) == set()
        assert await notifier.wait(0.3) is None  # a quiet timeout: the caller checks every followed blog
    finally:
        await notifier.close()
        await notifier.cluster.aclose()
        await pool.aclose()


async def test_blogs_on_every_primary_fan_out_once_to_readers_on_two_processes(
        cluster: ClusterSetup, processes: tuple[Service, Service], cluster_editor: dict[str, str]) -> None:
    slugs = list(_slugs_on_every_primary(cluster).values())
    a, b = processes
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http_a, \
            httpx.AsyncClient(base_url=b.url, timeout=10) as http_b:
        for slug in slugs:
            await _create_blog(http_a, slug)
        readers = {(p.url, slug): SSEClient(f"{p.url}/blogs/{slug}/events") for p in processes for slug in slugs}
        async with contextlib.AsyncExitStack() as stack:
            for reader in readers.values():
                await stack.enter_async_context(reader)
                assert reader.status == 200
            posted: dict[str, list[str]] = {slug: [] for slug in slugs}
            for i in range(4):  # interleaved across blogs, written through both processes
                for slug in slugs:
                    posted[slug].append(await _post(http_a if i % 2 else http_b, slug, cluster_editor, f"n. {i}"))
            for (_url, slug), reader in readers.items():
                got = await reader.until(_until_id(posted[slug][-1]))
                assert _created(got) == posted[slug], f"{slug} on {_url}"
        # Resume: a reader back from the first update gets exactly the rest, on either process.
        for process in processes:
            for slug in slugs:
                async with SSEClient(f"{process.url}/blogs/{slug}/events",
                                     last_event_id=await _event_id_of_first(process, slug)) as back:
                    got = await back.until(_until_id(posted[slug][-1]))
                    assert _created(got) == posted[slug][1:]


async def _event_id_of_first(process: Service, slug: str) -> str:
    async with SSEClient(f"{process.url}/blogs/{slug}/events", last_event_id="0-0") as everything:
        return str((await everything.until(lambda e: e.event == "entry.created"))[-1].id)


async def test_a_scheduled_entry_is_published_once_by_two_processes(
        cluster: ClusterSetup, processes: tuple[Service, Service], cluster_editor: dict[str, str]) -> None:
    slug = f"c-{uuid.uuid4().hex[:10]}"
    a, b = processes
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        await _create_blog(http, slug)
        async with SSEClient(f"{a.url}/blogs/{slug}/events") as on_a, \
                SSEClient(f"{b.url}/blogs/{slug}/events") as on_b:
            when = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
            scheduled = await http.post(f"/api/blogs/{slug}/entries", headers=cluster_editor,
                                        json={"body": "a tempo", "publish_at": when})
            assert scheduled.status_code == 201, scheduled.text
            marker_after = asyncio.get_running_loop().time() + 4  # both schedulers had several rounds
            first_a, first_b = await on_a.next(timeout=10), await on_b.next(timeout=10)
            assert first_a.event == first_b.event == "entry.created" and first_a.id == first_b.id
            await asyncio.sleep(max(0.0, marker_after - asyncio.get_running_loop().time()))
            marker = await _post(http, slug, cluster_editor, "dopo")
            for reader in (on_a, on_b):
                assert _created(await reader.until(_until_id(marker))) == [marker]
        listed = (await http.get(f"/api/blogs/{slug}/entries")).json()
        assert [e["id"] for e in listed["entries"]] == [marker, first_a.json["id"]]


async def test_min_replicas_on_a_cluster_waits_for_the_replica_of_the_writes_own_primary(
        service_factory, cluster: ClusterSetup, cluster_editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": cluster.url}
    strict = service_factory("serve", "--no-dispatcher", env={**env, "LIVEBLOG_REDIS_MIN_REPLICAS": "1"})
    impossible = service_factory("serve", "--no-dispatcher", env={
        **env, "LIVEBLOG_REDIS_MIN_REPLICAS": "2", "LIVEBLOG_REDIS_WAIT_TIMEOUT_MS": "200"})
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        for primary, slug in _slugs_on_every_primary(cluster).items():
            await _create_blog(http, slug)
            entry_id = await _post(http, slug, cluster_editor, "durevole")
            # Acknowledged means the primary's replica has it already.
            replica = cluster.node(primary).info("replication")["slave0"]["port"]
            on_replica = redis.Redis(port=replica, decode_responses=True, single_connection_client=True)
            on_replica.execute_command("READONLY")
            newest = on_replica.xrevrange(keys.stream(slug), count=1)
            on_replica.close()
            assert orjson.loads(newest[0][1]["data"])["id"] == entry_id
        slug = f"c-{uuid.uuid4().hex[:10]}"
        await _create_blog(http, slug)
    async with httpx.AsyncClient(base_url=impossible.url, timeout=10) as http:
        headers = {**cluster_editor, "Idempotency-Key": uuid.uuid4().hex}
        for _ in range(2):  # one replica per primary: never durable enough; the retry makes nothing twice
            response = await http.post(f"/api/blogs/{slug}/entries", headers=headers, json={"body": "una volta"})
            assert response.status_code == 503, response.text
            assert "not known durable" in response.json()["detail"]
        listed = (await http.get(f"/api/blogs/{slug}/entries")).json()["entries"]
        assert len(listed) == 1


async def test_a_slot_migration_under_readers_and_an_editor_loses_and_duplicates_nothing(
        cluster: ClusterSetup, processes: tuple[Service, Service], cluster_editor: dict[str, str]) -> None:
    slug = f"c-{uuid.uuid4().hex[:10]}"
    a, b = processes
    source = cluster.owner(keys.stream(slug))
    target = next(p for p in cluster.primaries() if p != source)
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        await _create_blog(http, slug)
        async with SSEClient(f"{a.url}/blogs/{slug}/events") as on_a, \
                SSEClient(f"{b.url}/blogs/{slug}/events") as on_b:
            answers: list[int] = []
            acknowledged = [await write_through(http, slug, cluster_editor, f"prima {i}", answers) for i in range(3)]
            loop = asyncio.get_running_loop()
            during: list[asyncio.Future[str]] = []

            def between_keys() -> None:  # a write starts each time a key of the blog has moved
                during.append(asyncio.run_coroutine_threadsafe(
                    write_through(http, slug, cluster_editor, f"durante {len(during)}", answers), loop))

            await asyncio.to_thread(cluster.migrate_slot_of, keys.stream(slug), target, between_keys=between_keys)
            assert cluster.owner(keys.stream(slug)) == target
            # The writes started mid-move finish once the blog's keys are all on one side again.
            acknowledged += sorted([await asyncio.wrap_future(f) for f in during], key=int)
            acknowledged += [await write_through(http, slug, cluster_editor, f"dopo {i}", answers)
                             for i in range(3)]
            for reader in (on_a, on_b):
                got = await reader.until(_until_id(acknowledged[-1]), timeout=5)  # each, well under a 15 s sweep
                assert "reset" not in [e.event for e in got]
                assert _created(got) == acknowledged  # ids are taken in stream order
    assert len(acknowledged) > 6  # writes landed while the keys were moving


async def test_a_killed_primary_readers_continue_and_writes_resume_on_the_promoted_replica(
        cluster: ClusterSetup, processes: tuple[Service, Service], cluster_editor: dict[str, str]) -> None:
    # The blog lives on the very node the processes were given as LIVEBLOG_REDIS_URL.
    named = int(cluster.url.rsplit(":", 1)[1].split("/")[0])
    slug = _slugs_on_every_primary(cluster)[named]
    a, b = processes
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        await _create_blog(http, slug)
        async with SSEClient(f"{a.url}/blogs/{slug}/events") as on_a, \
                SSEClient(f"{b.url}/blogs/{slug}/events") as on_b:
            answers: list[int] = []
            acknowledged = [await write_through(http, slug, cluster_editor, f"prima {i}", answers) for i in range(3)]
            change = asyncio.create_task(asyncio.to_thread(cluster.kill_primary_of, keys.stream(slug)))
            i = 0
            while not change.done():  # the editor keeps writing through the failover
                acknowledged.append(await write_through(http, slug, cluster_editor, f"durante {i}", answers))
                i += 1
                await asyncio.sleep(0.05)
            old, new = await change
            assert new != old and cluster.owner(keys.stream(slug)) == new
            acknowledged += [await write_through(http, slug, cluster_editor, f"dopo {i}", answers) for i in range(3)]
            for reader in (on_a, on_b):
                got = await reader.until(_until_id(acknowledged[-1]), timeout=10)  # each, under a 15 s sweep
                ids = _created(got)
                assert len(ids) == len(set(ids)), f"a change was delivered twice: {ids}"
                if got[-1].event != "reset":
                    assert ids == acknowledged, "an acknowledged entry went missing without a reset"
    assert 503 in answers, "the editor never met the failover"
