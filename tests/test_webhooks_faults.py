"""Webhook faults (issue 9): what a partner, Redis or a signal can do to a real `liveblog worker`.

Each test starts its own workers on this module's private database (emptied before each test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest
import redis

from liveblog.webhooks import keys as whkeys
from tests.conftest import RedisServer, Service
from tests.receivers import Api, Receiver, private_db, serving

DB = 15
FAST = {"LIVEBLOG_WEBHOOK_TIMEOUT": "2", "LIVEBLOG_WEBHOOK_CLAIM_IDLE": "1"}

StartWorker = Callable[..., Service]


@pytest.fixture(scope="module")
def api(service_factory, redis_server: RedisServer) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    with serving(service_factory, private_db(redis_server, DB)) as api:
        yield api


@pytest.fixture
def redis_url(redis_server: RedisServer, api: Api) -> str:
    return private_db(redis_server, DB)  # emptied before each test


@pytest.fixture
def workers(service_factory, redis_url: str) -> Iterator[StartWorker]:  # type: ignore[no-untyped-def]
    started: list[Service] = []

    def start(**env: str) -> Service:
        service: Service = service_factory("worker", env={"LIVEBLOG_REDIS_URL": redis_url, **FAST, **env})
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def test_ipv6_notations_embedding_ipv4_are_refused_at_connect_time(api: Api, workers: StartWorker,
                                                                   redis_url: str) -> None:
    """Subscriptions saved before these notations were refused still never reach what they embed."""
    workers()
    slug = api.blog()
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    with Receiver() as receiver:
        subs = []
        for host, kind in (("[::127.0.0.1]", "IPv4-compatible"), ("[::ffff:0:127.0.0.1]", "IPv4-translated")):
            sub = api.subscribe(receiver.url, [slug], events=["entry.created"])
            doc = orjson.loads(store.hget(whkeys.sub(sub["id"]), "doc"))
            store.hset(whkeys.sub(sub["id"]), "doc",
                       orjson.dumps({**doc, "url": receiver.url.replace("127.0.0.1", host)}))
            subs.append((sub, kind))
        api.entry(slug)
        for sub, kind in subs:
            log = api.wait_deliveries(sub["id"], lambda d: any(e["outcome"] == "failed" for e in d))
            assert all(f"refused: {'::7f00:1' if kind == 'IPv4-compatible' else '::ffff:0:7f00:1'}, a {kind}"
                       in e["error"] and e["status"] is None for e in log), log
        assert receiver.requests == []
