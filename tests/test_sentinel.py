"""``redis+sentinel://`` URLs: parsing and validation, and a real Sentinel failover (``SENTINEL
FAILOVER`` and a SIGKILLed primary) under a connected reader and a writing editor."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from liveblog.cli import _redacted
from liveblog.config import SettingError, Settings
from liveblog.redisconn import SentinelURL, parse_sentinel_url, pool_client
from tests.conftest import Service, admin, cli_editor_headers, running, wait_until
from tests.sentinels import SentinelSetup
from tests.sse_client import Event, SSEClient
from tests.support import write_through


def test_sentinel_url_names_hosts_service_db_and_password() -> None:
    assert parse_sentinel_url("redis+sentinel://:s3cret@a:26380,b,[::1]:5000/main/2") == SentinelURL(
        (("a", 26380), ("b", 26379), ("::1", 5000)), "main", 2, None, "s3cret")
    assert parse_sentinel_url("redis+sentinel://h:1/svc") == SentinelURL((("h", 1),), "svc")


@pytest.mark.parametrize("url", [
    "redis+sentinel://a:26379,b:26379",            # no service
    "redis+sentinel://a:26379/",                   # empty service
    "redis+sentinel://a:26379,,b:26379/svc",       # empty host entry
    "redis+sentinel://a:notaport/svc",
    "redis+sentinel://a:70000/svc",
    "redis+sentinel://:26379/svc",                 # no host
    "redis+sentinel://a:26379/svc/zero",           # database not a number
    "redis+sentinel://a:26379/svc/0/extra",
    "redis+sentinel://a:26379/svc?x=1",
])
def test_sentinel_url_setting_rejects_bad_host_list_or_service(url: str) -> None:
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"LIVEBLOG_REDIS_URL": url})
    assert caught.value.name == "LIVEBLOG_REDIS_URL"
    assert str(caught.value).startswith("LIVEBLOG_REDIS_URL ")


def test_sentinel_url_password_is_redacted_in_messages() -> None:
    shown = _redacted("redis+sentinel://:s3cret@a:26379,b:26379/mymaster")
    assert "s3cret" not in shown and shown.endswith("a:26379,b:26379/mymaster")


def test_min_replicas_settings_default_to_no_wait_and_are_validated() -> None:
    settings = Settings.from_env({})
    assert (settings.redis_min_replicas, settings.redis_wait_timeout_ms) == (0, 1000)
    chosen = Settings.from_env({"LIVEBLOG_REDIS_MIN_REPLICAS": "2", "LIVEBLOG_REDIS_WAIT_TIMEOUT_MS": "250"})
    assert (chosen.redis_min_replicas, chosen.redis_wait_timeout_ms) == (2, 250)
    for name, value in (("LIVEBLOG_REDIS_MIN_REPLICAS", "-1"), ("LIVEBLOG_REDIS_WAIT_TIMEOUT_MS", "0")):
        with pytest.raises(SettingError) as caught:
            Settings.from_env({name: value})
        assert caught.value.name == name


def _running_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with running(SentinelSetup(tmp_path_factory.mktemp("sentinel"))) as setup:
        yield setup


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    yield from _running_sentinels(tmp_path_factory)


@pytest.fixture(scope="module")
def client_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A setup of its own for the client tests: the failover tests above kill a node for good."""
    yield from _running_sentinels(tmp_path_factory)


@pytest.fixture(scope="module")
def sentinel_editor(sentinels: SentinelSetup) -> dict[str, str]:
    """An editor token made with the CLI through the Sentinel URL."""
    return cli_editor_headers(sentinels.url, "Sentinel")


@pytest.fixture
def failing_over(request: pytest.FixtureRequest, service_factory, tmp_path_factory: pytest.TempPathFactory  # type: ignore[no-untyped-def]
                 ) -> Iterator[tuple[str, SentinelSetup, Service, dict[str, str]]]:
    """A fresh primary, replica and Sentinels per failover case (``request.param``: how the primary
    goes), with a `liveblog serve` and an editor token. Fresh, because after a case the Sentinels
    demote and resync its old primary seconds later, and a kill meanwhile would promote a replica
    that lacks the writes.

    ``SENTINEL FAILOVER`` leaves the old primary running and accepting writes until the Sentinels
    demote it (~10 s here); a write that reaches it before the service learns of the new primary
    (within ``redisconn.PRIMARY_CHECK_INTERVAL``) is acknowledged and then dropped by the demotion, as with any
    asynchronous replication. So that case runs with ``LIVEBLOG_REDIS_MIN_REPLICAS=1``, which is how
    an operator asks that no acknowledged write be lost: such a write answers 503 (not known durable)
    and the editor's retry lands on the new primary. A killed primary takes no more writes, and its
    replica must accept writes alone afterwards, so that case runs without it."""
    how = request.param
    env = {"LIVEBLOG_REDIS_MIN_REPLICAS": "1"} if how == "sentinel-failover" else {}
    with running(SentinelSetup(tmp_path_factory.mktemp("sentinel-failover"))) as setup:
        server = service_factory("serve", env={"LIVEBLOG_REDIS_URL": setup.url, **env})
        try:
            yield how, setup, server, cli_editor_headers(setup.url, "Sentinel failover")
        finally:
            server.stop()


async def test_min_replicas_acknowledges_a_write_once_a_replica_has_it(
        service_factory, sentinels: SentinelSetup, sentinel_editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    server = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_REDIS_URL": sentinels.url,
                                                             "LIVEBLOG_REDIS_MIN_REPLICAS": "1"})
    slug = f"durable-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "D"})).status_code == 201
        made = await http.post(f"/api/blogs/{slug}/entries", headers=sentinel_editor, json={"body": "durable"})
        assert made.status_code == 201, made.text


async def test_min_replicas_unmet_answers_503_and_a_retry_does_not_write_twice(
        service_factory, sentinels: SentinelSetup, sentinel_editor: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    # The setup has one replica: asking for two can never be met.
    server = service_factory("serve", "--no-dispatcher", env={
        "LIVEBLOG_REDIS_URL": sentinels.url, "LIVEBLOG_REDIS_MIN_REPLICAS": "2",
        "LIVEBLOG_REDIS_WAIT_TIMEOUT_MS": "100"})
    slug = f"undurable-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "U"})
        headers = {**sentinel_editor, "Idempotency-Key": "only-once"}
        for _ in range(2):  # the first attempt and its retry
            answer = await http.post(f"/api/blogs/{slug}/entries", headers=headers, json={"body": "una volta"})
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.headers["retry-after"]
            assert "not known durable" in answer.json()["detail"]
        listed = (await http.get(f"/api/blogs/{slug}/entries")).json()
    assert len(listed["entries"]) == 1, listed  # made (not undone), and only once


@pytest.mark.parametrize("failing_over", ["sentinel-failover", "primary-killed"], indirect=True)
async def test_sentinel_failover_readers_get_every_acknowledged_entry_once(
        failing_over: tuple[str, SentinelSetup, Service, dict[str, str]]) -> None:
    how, sentinels, sentinel_server, sentinel_editor = failing_over
    slug = f"sentinel-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=sentinel_server.url, timeout=10) as http:
        created = await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "Sentinel"})
        assert created.status_code == 201, created.text
        async with SSEClient(f"{sentinel_server.url}/blogs/{slug}/events") as reader:
            answers: list[int] = []
            acknowledged = [await write_through(http, slug, sentinel_editor, f"before {i}", answers)
                            for i in range(3)]
            old_primary = sentinels.primary_port()
            change = asyncio.create_task(asyncio.to_thread(
                sentinels.failover if how == "sentinel-failover" else sentinels.kill_primary))
            i = 0
            while not change.done():  # the editor keeps writing through the failover
                acknowledged.append(await write_through(http, slug, sentinel_editor, f"during {i}", answers))
                i += 1
                await asyncio.sleep(0.05)
            new_primary = await change
            assert new_primary != old_primary
            acknowledged += [await write_through(http, slug, sentinel_editor, f"after {i}", answers)
                             for i in range(3)]
            received: list[Event] = await reader.until(
                lambda e: e.event == "reset" or (e.event == "entry.created" and e.json["id"] == acknowledged[-1]),
                timeout=30)
    ids = [e.json["id"] for e in received if e.event == "entry.created"]
    assert len(ids) == len(set(ids)), f"a change was delivered twice: {ids}"
    if received[-1].event != "reset":
        assert ids == acknowledged, "an acknowledged entry went missing without a reset"


def _other_data_port(sentinels: SentinelSetup, port: int) -> int:
    return next(p for p in sentinels.data_ports if p != port)


async def test_sentinel_client_refuses_a_connection_to_a_node_that_is_not_the_primary(
        client_sentinels: SentinelSetup) -> None:
    sentinels = client_sentinels
    replica = _other_data_port(sentinels, sentinels.primary_port())
    wait_until(lambda: sentinels.replica_synced(replica), timeout=60, what="the replica to sync")
    client = pool_client(sentinels.url, max_connections=2)
    try:
        assert await client.ping()  # the pool connects to the primary the Sentinels name
        connection = client.connection_pool.make_connection()
        with pytest.raises(RedisConnectionError, match="is not the primary"):
            await connection.connect_to(("127.0.0.1", replica))
        assert not connection.is_connected
    finally:
        await client.aclose()


async def test_sentinel_reads_right_after_a_failover_never_come_from_the_old_primary(
        client_sentinels: SentinelSetup) -> None:
    """After ``SENTINEL FAILOVER`` the old primary still says "master" for seconds: a pooled
    connection left open to it read stale data (and wrote where the demotion then dropped it)."""
    sentinels = client_sentinels
    old = sentinels.primary_port()
    wait_until(lambda: sentinels.replica_synced(_other_data_port(sentinels, old)), timeout=60,
               what="the replica to sync")
    key = f"sentinel-read-{uuid.uuid4().hex[:8]}"
    client = pool_client(sentinels.url, max_connections=2, primary_check_interval=0.1)
    try:
        await client.set(key, "before")  # leaves a pooled connection open to the old primary
        new = await asyncio.to_thread(sentinels.failover)
        redis.Redis(port=new).set(key, "after")
        old_role = redis.Redis(port=old, decode_responses=True).role()[0]
        seen = [await client.get(key) for _ in range(20)]
    finally:
        await client.aclose()
    assert seen == ["after"] * 20, f"read from the old primary (its role then: {old_role}): {seen}"
