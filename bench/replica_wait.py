"""What ``LIVEBLOG_REDIS_MIN_REPLICAS=1`` costs a write: median and p95 latency of ``Store.create_entry``
with 0 and 1 required replicas, same run, against a throwaway primary and replica on loopback.

    python -m bench.replica_wait [--writes 500]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bench.procs import free_port
from liveblog.embedded import find_server_binary
from liveblog.redisconn import pool_client
from liveblog.store import Store


def _start(directory: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--dir", str(directory), *extra], stdout=subprocess.DEVNULL)
    wait_until(lambda: _answers(port), what=f"redis-server :{port}")
    return process


def wait_until(predicate, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())
    except redis.RedisError:
        return False


async def _latencies(url: str, min_replicas: int, writes: int) -> list[float]:
    client = pool_client(url)
    store = Store(client, min_replicas=min_replicas, wait_timeout_ms=5000)
    slug = f"bench-{min_replicas}-{time.monotonic_ns()}"
    await store.create_blog({"slug": slug, "title": "bench"})
    took = []
    for i in range(writes):
        start = time.perf_counter()
        await store.create_entry(slug, {"body": f"update {i}"})
        took.append((time.perf_counter() - start) * 1000)
    await client.aclose()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        primary, replica = free_port(), free_port()
        (Path(tmp) / "p").mkdir()
        (Path(tmp) / "r").mkdir()
        processes = [_start(Path(tmp) / "p", primary),
                     _start(Path(tmp) / "r", replica, "--replicaof", "127.0.0.1", str(primary))]
        try:
            wait_until(lambda: redis.Redis(port=replica).info("replication")["master_link_status"] == "up",
                       what="the replica to sync")
            url = f"redis://127.0.0.1:{primary}/0"
            for rounds in range(2):  # interleaved, so drift in machine load hits both alike
                for n in (0, 1):
                    took = asyncio.run(_latencies(url, n, args.writes))
                    if rounds:
                        q = statistics.quantiles(took, n=20)
                        print(f"MIN_REPLICAS={n}: median {statistics.median(took):.3f} ms, p95 {q[18]:.3f} ms "
                              f"({args.writes} sequential writes)")
        finally:
            for process in processes:
                process.terminate()
                process.wait()


if __name__ == "__main__":
    main()
