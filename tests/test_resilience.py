"""Failures: Redis stopped and restarted under connected readers, SIGTERM on a web process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN, RedisServer, Service, free_port, wait_until
from tests.sse_client import SSEClient
from tests.support import post


async def _wait_ready(http: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("service never became ready again")


async def test_redis_restart_loses_and_duplicates_nothing(client: httpx.AsyncClient, server: Service, blog: str,
                                                          editor: dict[str, str], redis_server: RedisServer
                                                          ) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as staying:
        before = [(await post(client, blog, editor, f"prima {i}"))["id"] for i in range(3)]
        got_before = await staying.take(3)
        leaving_at = got_before[-1].id
        redis_server.stop()
        down = await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": "durante"})
        assert down.status_code == 503
        assert down.headers["content-type"].startswith("application/problem+json")
        assert (await client.get("/readyz")).status_code == 503
        await asyncio.sleep(1.0)  # the shared reader notices and retries with backoff
        redis_server.start()
        await _wait_ready(client)
        after = [(await post(client, blog, editor, f"dopo {i}"))["id"] for i in range(3)]
        got_after = await staying.take(3, timeout=20)
        await asyncio.sleep(0.5)
        assert staying.queue.empty(), "a change was delivered twice after the restart"
    assert [e.json["id"] for e in got_before] == before
    assert [e.json["id"] for e in got_after] == after
    # A reader that was away during the outage resumes from its last ID and gets exactly the rest.
    async with SSEClient(f"{server.url}/blogs/{blog}/events", last_event_id=leaving_at) as returning:
        assert [e.json["id"] for e in await returning.take(3)] == after


async def test_sigterm_ends_streams_promptly(service_factory, blog: str) -> None:  # type: ignore[no-untyped-def]
    own = service_factory("serve", "--no-dispatcher")
    async with SSEClient(f"{own.url}/blogs/{blog}/events") as reader:
        assert reader.status == 200
        own.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(reader.ended.wait(), timeout=10)
        code = await asyncio.to_thread(own.process.wait, 10)
    # uvicorn re-raises the signal after a clean shutdown, hence -SIGTERM rather than 0.
    assert code in (0, -signal.SIGTERM)
    log = own.log()
    assert "Application shutdown complete" in log
    # Had the stream not ended by itself, uvicorn would have had to cancel it at its graceful timeout.
    assert "timeout graceful shutdown exceeded" not in log


def test_sigterm_stops_a_server_still_waiting_for_redis_at_start_up(tmp_path: Path) -> None:
    """Redis never answers: the start-up keeps asking (logging each try), and a SIGTERM meanwhile ends
    the process within seconds (uvicorn does not look for it while the application is starting)."""
    port, nobody = free_port(), free_port()
    own = Service(["serve", "--no-dispatcher", "--port", str(port)],
                  {**os.environ, "LIVEBLOG_REDIS_URL": f"redis://127.0.0.1:{nobody}/0",
                   "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}, tmp_path / "serve.log", port).start(wait=False)
    try:
        wait_until(lambda: own.log().count("Redis does not answer") >= 4, timeout=30,
                   what="the start-up to be waiting for Redis")
        own.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        try:
            code = own.process.wait(timeout=5)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 5 s after SIGTERM:\n{own.log()}") from None
    finally:
        own.stop(signal.SIGKILL)
    assert code in (0, -signal.SIGTERM)
