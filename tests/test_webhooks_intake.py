"""The webhook intake's read loop on a real Redis: a failed round is logged and the loop goes on.

A loop that died of an error it did not expect (redis-py's ``RedisClusterException`` is no
``RedisError``) used to leave a worker running that delivered nothing, silently. The failures are
injected into the intake's read step (Redis itself cannot be made to raise them on cue here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException

from liveblog.present import Presenter
from liveblog.redisconn import blocking_client, pool_client
from liveblog.store import Store
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.intake import Intake
from liveblog.webhooks.queue import DeliveryQueue
from liveblog.webhooks.ssrf import AddressPolicy
from liveblog.webhooks.subscriptions import Snapshot, Subscriptions
from tests.conftest import RedisServer

DB = 7  # no other test uses it


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    url = redis_server.url.rsplit("/", 1)[0] + f"/{DB}"
    client = pool_client(url)
    await client.flushdb()
    await client.aclose()
    yield url


async def test_the_intake_logs_a_failed_round_and_goes_on(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    pool: aioredis.Redis = pool_client(redis_url)
    reader = blocking_client(redis_url, read_timeout=5)
    subs = Subscriptions(pool, AddressPolicy(["127.0.0.0/8"]))
    sub_id = (await subs.create({"url": "http://127.0.0.1:9/hook", "blogs": ["*"]}))["id"]
    intake = Intake(pool, reader, DeliveryQueue(pool), Snapshot(subs), presenter=Presenter("https://x.example"),
                    consumer="test", claim_idle_seconds=60, on_queued=lambda: None)
    failures: list[Exception] = [RedisClusterException("slot 1234 is not covered"), ValueError("a bug")]
    read = intake._read

    async def failing_read() -> tuple[list[Any], Exception | None]:
        if failures:
            raise failures.pop(0)
        return await read()

    intake._read = failing_read  # type: ignore[method-assign]
    store = Store(pool)
    await store.create_blog({"slug": "intake", "title": "t"})
    loop = asyncio.create_task(intake.read_loop())
    try:
        with caplog.at_level(logging.WARNING, logger="liveblog.webhooks.intake"):
            await store.create_entry("intake", {"body": "dopo i guasti"})
            for _ in range(100):  # the change is queued once the loop got past both failures
                if await pool.zcard(whkeys.queue(sub_id)):
                    break
                assert not loop.done(), f"the read loop ended: {loop.exception()!r}"
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the change was never queued for the subscription")
        assert failures == []
        logged = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
        assert ("WARNING", "webhook intake: Redis unavailable (RedisClusterException: slot 1234 is not covered); "
                "retrying in 0.1s", False) in logged
        assert ("ERROR", "webhook intake: unexpected error; retrying in 0.2s", True) in logged
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await intake.close()
        await reader.aclose()
        await pool.aclose()
