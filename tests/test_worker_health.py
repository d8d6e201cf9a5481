"""`liveblog worker --check`: the container health check of a process that serves no HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import RedisServer, wait_until


def check(health_file: Path | None, redis_server: RedisServer) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVEBLOG_REDIS_URL": redis_server.url}
    env.pop("LIVEBLOG_WORKER_HEALTH_FILE", None)
    if health_file is not None:
        env["LIVEBLOG_WORKER_HEALTH_FILE"] = str(health_file)
    return subprocess.run([sys.executable, "-m", "liveblog", "worker", "--check"], env=env,
                          capture_output=True, text=True, timeout=30)


def test_worker_check_follows_the_running_workers_progress(service_factory, redis_server: RedisServer,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    health_file = tmp_path / "worker.alive"
    before = check(health_file, redis_server)
    assert before.returncode == 1 and "does not exist" in before.stderr
    worker = service_factory("worker", env={"LIVEBLOG_WORKER_HEALTH_FILE": str(health_file)})
    wait_until(health_file.exists, what="the worker to write its health file")
    assert check(health_file, redis_server).returncode == 0
    worker.stop()
    stale = time.time() - 120
    os.utime(health_file, (stale, stale))  # as if the worker had stopped two minutes ago
    after = check(health_file, redis_server)
    assert after.returncode == 1 and "no progress" in after.stderr


def test_worker_check_without_a_health_file_setting_is_a_usage_error(redis_server: RedisServer) -> None:
    result = check(None, redis_server)
    assert result.returncode == 2 and "LIVEBLOG_WORKER_HEALTH_FILE" in result.stderr
