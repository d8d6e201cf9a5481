"""Processes a benchmark starts: private redis-servers, the services under test, load generators.

Everything listens on 127.0.0.1 on a free port (never the default 6379), writes its log under the
run's temporary directory and is stopped by :class:`Processes` when the run ends, also on errors.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from liveblog.embedded import find_server_binary

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A child process with its log, its resident memory and its CPU time (from /proc)."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          env={**os.environ, **(env or {})}, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss(self) -> int:
        """Resident set size in bytes."""
        with open(f"/proc/{self.pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


class Processes:
    """Starts processes for one scenario and stops them all (newest first) at the end."""

    def __init__(self, workdir: Path, profile: Path | None = None) -> None:
        self.workdir = workdir
        self.profile = profile  # where py-spy writes collapsed stacks of each liveblog process, if set
        self.started: list[Proc] = []
        self._gens: list[Worker] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for gen in self._gens:
            gen.kill()
        for proc in reversed(self.started):
            proc.stop(sig=signal.SIGINT if proc.name == "py-spy" else signal.SIGTERM)

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, args, self.workdir / f"{name}-{len(self.started)}.log", env)
        self.started.append(proc)
        return proc

    def redis(self) -> tuple[Proc, str]:
        port = free_port()
        data = Path(tempfile.mkdtemp(prefix=f"redis-{port}-", dir=self.workdir))
        proc = self._start("redis", [find_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                     "--dir", str(data), "--save", "", "--appendonly", "no",
                                     "--maxclients", "20000"])
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or not proc.alive():
                    raise RuntimeError(f"redis-server did not start:\n{proc.tail()}") from None
                time.sleep(0.05)
        client.close()
        return proc, f"redis://127.0.0.1:{port}/0"

    def liveblog(self, redis_url: str, admin_token: str, env: dict[str, str] | None = None,
                 dispatcher: bool = False) -> tuple[Proc, str]:
        port = free_port()
        proc = self._start("liveblog", [sys.executable, "-m", "liveblog", "serve", "--port", str(port),
                                        *([] if dispatcher else ["--no-dispatcher"]), "--log-level", "warning"],
                           {"LIVEBLOG_REDIS_URL": redis_url, "LIVEBLOG_ADMIN_TOKEN": admin_token,
                            # every simulated reader comes from 127.0.0.1: no per-address stream cap
                            "LIVEBLOG_SSE_MAX_PER_CLIENT": "1000000", **(env or {})})
        base = self._ready(proc, port)
        if self.profile is not None:
            self.profile.mkdir(parents=True, exist_ok=True)
            out = self.profile / f"liveblog-{proc.pid}.txt"
            self._start("py-spy", [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid),
                                   "--format", "raw", "--rate", "250", "--nonblocking", "-o", str(out)])
        return proc, base

    def uvicorn_app(self, app: str, redis_url: str) -> tuple[Proc, str]:
        """A baseline ASGI app under the same server settings as ``liveblog serve`` (uvloop, httptools)."""
        port = free_port()
        proc = self._start(app.rsplit(".", 1)[-1].split(":")[0],
                           [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop",
                            "--http", "httptools", "--log-level", "warning", "--no-access-log",
                            "--timeout-graceful-shutdown", "5"],
                           {"BENCH_REDIS_URL": redis_url})
        return proc, self._ready(proc, port)

    def _ready(self, proc: Proc, port: int) -> str:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    return base
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{proc.name} not ready in 30 s:\n{proc.tail()}")

    async def worker(self, module: str) -> Worker:
        worker = Worker(await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd=ROOT, limit=1 << 30))
        self._gens.append(worker)
        return worker

    async def loadgens(self, count: int, host: str, port: int) -> LoadGens:
        gens = []
        for _ in range(count):
            gen = await self.worker("bench.loadgen")
            await gen.call("init", host=host, port=port)
            gens.append(gen)
        return LoadGens(gens)


class Worker:
    """A ``python -m bench.<module>`` child (load generator, webhook receiver) and its JSON-lines
    command channel on stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def call(self, op: str, **args: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.process.stdin.drain()
        return await self.answer()

    async def answer(self) -> Any:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("a bench child process exited")
        return json.loads(line)

    def cpu(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class LoadGens:
    """Readers spread evenly over several load generator processes (one per core helps)."""

    def __init__(self, gens: list[Worker]) -> None:
        self.gens = gens

    async def all(self, op: str, per_gen: list[dict[str, Any]] | None = None, **args: Any) -> list[dict[str, Any]]:
        per_gen = per_gen or [{} for _ in self.gens]
        return list(await asyncio.gather(*(g.call(op, **args, **extra) for g, extra in zip(self.gens, per_gen,
                                                                                          strict=True))))

    async def connect(self, paths: list[str], last_event_id: str | None = None, slow: bool = False) -> int:
        shares = [{"paths": paths[i :: len(self.gens)]} for i in range(len(self.gens))]
        answers = await self.all("connect", shares, last_event_id=last_event_id, slow=slow)
        return sum(a["connected"] for a in answers)

    def cpu(self) -> float:
        return sum(g.cpu() for g in self.gens)
