"""``python -m bench soak``: writes, readers and webhook workers through faults at the store.

One private redis-server (append-only file, ``appendfsync everysec``), one ``liveblog serve``, two
``liveblog worker`` processes delivering to a loopback receiver, a few hundred SSE readers (httpx, in
this process) that resume with ``Last-Event-ID`` and reload on ``reset``, and an editor posting
steadily. The faults, one after the other: Redis frozen (SIGSTOP), Redis killed (SIGKILL) and
restarted, Redis out of memory (``maxmemory`` with ``noeviction``), and an emptied store (FLUSHALL,
then the blog and the subscription are created again). Each write carries a marker ``bench-<n>x``.

Per fault it prints: writes acknowledged during the phase and how many the store still holds at the
end of the phase; per reader, whether it got each of those exactly once, or a ``reset`` (a reader
that did neither has a gap or a duplicate); the webhook deliveries of those writes; and the seconds
from the end of the fault to the first acknowledged write.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from bench.procs import Proc, Processes, Worker, free_port
from liveblog.embedded import find_server_binary

MARKER = re.compile(r"bench-(\d+)x")
ADMIN = "soak-admin-" + uuid.uuid4().hex
ENV = {
    "LIVEBLOG_REDIS_TIMEOUT": "2",
    "LIVEBLOG_SSE_MAX_PER_CLIENT": "100000",
    "LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    "LIVEBLOG_WEBHOOK_RETRY_SCHEDULE": ",".join(["1", "2", "3"] + ["5"] * 20),
    "LIVEBLOG_ADMIN_TOKEN": ADMIN,
}
AUTH = {"Authorization": f"Bearer {ADMIN}"}


class Redis:
    """The redis-server under test: same port and data directory across restarts."""

    def __init__(self, procs: Processes, workdir: Path) -> None:
        self.procs = procs
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="soak-redis-", dir=workdir))
        self.proc: Proc | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = self.procs._start("redis", [
            find_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxclients", "10000"])
        client = aioredis.Redis(port=self.port)
        for _ in range(300):
            try:
                await client.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        await client.aclose()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port, decode_responses=True, socket_timeout=5)


@dataclass
class Write:
    seq: int
    phase: str
    sent: float
    ok: bool = False


@dataclass
class Reader:
    url: str
    last_id: str | None = None
    got: list[tuple[int, str]] = field(default_factory=list)  # (marker, phase at arrival)
    resets: list[str] = field(default_factory=list)
    connected: bool = False


class Soak:
    def __init__(self, readers: int, interval: float, stall: float) -> None:
        self.reader_count = readers
        self.interval = interval
        self.stall = stall
        self.phase = "warm-up"
        self.writes: list[Write] = []
        self.readers: list[Reader] = []
        self.found: dict[str, set[int]] = {}
        self.recovery: dict[str, float | None] = {}
        self.fault_end: dict[str, float] = {}
        self.delivered: Counter[int] = Counter()
        self.stop = asyncio.Event()

    # ---- load ----------------------------------------------------------------------------------

    async def write_loop(self, http: httpx.AsyncClient) -> None:
        seq = 0
        while not self.stop.is_set():
            seq += 1
            write = Write(seq, self.phase, time.time())
            self.writes.append(write)
            try:
                response = await http.post(f"/api/blogs/{self.slug}/entries", headers=AUTH,
                                           json={"body": f"soak bench-{seq}x"})
                write.ok = response.status_code == 201
            except httpx.HTTPError:
                pass
            await asyncio.sleep(self.interval)

    async def read_loop(self, http: httpx.AsyncClient, reader: Reader) -> None:
        while not self.stop.is_set():
            headers = {"Accept": "text/event-stream"}
            if reader.last_id:
                headers["Last-Event-ID"] = reader.last_id
            try:
                async with http.stream("GET", reader.url, headers=headers,
                                       timeout=httpx.Timeout(10, read=60)) as response:
                    if response.status_code == 200:
                        reader.connected = True
                        if await self._events(response, reader):
                            continue  # reset: "reload" at once
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5 + random.random())

    async def _events(self, response: httpx.Response, reader: Reader) -> bool:
        """Read one stream; True when it ended with a ``reset`` (the reader starts over)."""
        event, data, sid = "message", "", None
        async for line in response.aiter_lines():
            if line == "":
                if event == "reset":
                    reader.resets.append(self.phase)
                    reader.last_id = None
                    return True
                if event == "entry.created" and (match := MARKER.search(data)):
                    reader.got.append((int(match.group(1)), self.phase))
                if sid:
                    reader.last_id = sid
                event, data, sid = "message", "", None
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line.startswith("id:"):
                sid = line[3:].strip()
        return False

    async def collect_hooks(self, hooks: Worker) -> None:
        for _path, seq, _at in await hooks.call("report"):
            if seq >= 0:
                self.delivered[seq] += 1

    # ---- setup and faults ----------------------------------------------------------------------

    async def create(self, http: httpx.AsyncClient, hook_url: str) -> None:
        """The blog and the webhook subscription (again after an emptied store)."""
        for _ in range(100):
            try:
                response = await http.post("/api/blogs", headers=AUTH, json={"slug": self.slug, "title": "Soak"})
                if response.status_code in (201, 409):
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        response = await http.post("/api/webhooks", headers=AUTH,
                                   json={"url": hook_url, "blogs": [self.slug], "events": ["entry.created"]})
        response.raise_for_status()

    async def markers_in_store(self, http: httpx.AsyncClient) -> set[int]:
        found: set[int] = set()
        before = None
        while True:
            params = {"limit": "100", **({"before": before} if before else {})}
            response = await http.get(f"/api/blogs/{self.slug}/entries", params=params)
            if response.status_code != 200:
                return found
            entries = response.json()["entries"]
            for entry in entries:
                if match := MARKER.search(entry.get("body_html", "")):
                    found.add(int(match.group(1)))
            if len(entries) < 100:
                return found
            before = entries[-1]["id"]

    async def run(self, workdir: Path) -> str:
        with Processes(workdir) as procs:
            redis = Redis(procs, workdir)
            await redis.start()
            _, base = procs.liveblog(redis.url, ADMIN, env=ENV)
            for _ in range(2):
                procs._start("worker", [sys.executable, "-m", "liveblog", "worker"],
                             {"LIVEBLOG_REDIS_URL": redis.url, "LIVEBLOG_PUBLIC_URL": base, **ENV})
            hooks = await procs.worker("bench.receiver")
            hook_url = f"http://127.0.0.1:{(await hooks.answer())['port']}/hook/soak"
            self.slug = f"soak-{uuid.uuid4().hex[:8]}"
            limits = httpx.Limits(max_connections=self.reader_count + 20, max_keepalive_connections=20)
            async with httpx.AsyncClient(base_url=base, timeout=15) as http, \
                    httpx.AsyncClient(limits=limits) as streams:
                await self.create(http, hook_url)
                self.readers = [Reader(f"{base}/blogs/{self.slug}/events") for _ in range(self.reader_count)]
                tasks = [asyncio.create_task(self.read_loop(streams, r)) for r in self.readers]
                for _ in range(600):  # every reader is in (up to 2 minutes) before the first write
                    if all(r.connected for r in self.readers):
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(1)
                tasks.append(asyncio.create_task(self.write_loop(http)))
                faults = [
                    (f"Redis frozen {self.stall:g} s (SIGSTOP)", self.freeze(redis)),
                    ("Redis killed (SIGKILL), restarted", self.kill(redis)),
                    ("Redis out of memory 10 s", self.out_of_memory(redis)),
                    ("store emptied (FLUSHALL), blog recreated", self.empty(redis, http, hook_url)),
                ]
                for name, fault in faults:
                    self.phase = name
                    print(f"soak: {name} …", file=sys.stderr, flush=True)
                    await asyncio.sleep(5)
                    await fault
                    self.fault_end[name] = time.time()
                    await asyncio.sleep(10)
                    self.phase = "between"  # writes sent while the store is listed count for no fault
                    self.found[name] = await self.markers_in_store(http)
                    await self.collect_hooks(hooks)
                self.phase = "done"
                self.stop.set()
                # The last events, and deliveries: a change a worker read but could not queue is taken
                # over after LIVEBLOG_WEBHOOK_CLAIM_IDLE (60 s), so wait up to 90 s for them.
                kept = set().union(*self.found.values()) & {w.seq for w in self.writes if w.ok}
                deadline = time.monotonic() + 90
                await asyncio.sleep(5)
                while time.monotonic() < deadline and any(self.delivered[q] == 0 for q in kept):
                    await asyncio.sleep(2)
                    await self.collect_hooks(hooks)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                return self.table([name for name, _ in faults])

    async def freeze(self, redis: Redis) -> None:
        redis.signal(signal.SIGSTOP)
        await asyncio.sleep(self.stall)
        redis.signal(signal.SIGCONT)

    async def kill(self, redis: Redis) -> None:
        redis.signal(signal.SIGKILL)
        await asyncio.sleep(3)
        await redis.start()

    async def out_of_memory(self, redis: Redis) -> None:
        client = redis.client()
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", 1)
        await asyncio.sleep(10)
        await client.config_set("maxmemory", 0)
        await client.aclose()

    async def empty(self, redis: Redis, http: httpx.AsyncClient, hook_url: str) -> None:
        client = redis.client()
        await client.flushall()
        await client.aclose()
        await self.create(http, hook_url)

    # ---- report --------------------------------------------------------------------------------

    def table(self, phases: list[str]) -> str:
        rows = ["| fault | writes acked | acked found after | readers exactly-once | readers reset | "
                "readers with a gap or duplicate | webhook deliveries (of found) | recovery s |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for phase in phases:
            acked = {w.seq for w in self.writes if w.ok and w.phase == phase}
            kept = acked & self.found.get(phase, set())
            exact = reset = broken = 0
            for reader in self.readers:
                counts = Counter(seq for seq, _ in reader.got if seq in kept)
                if phase in reader.resets:
                    reset += 1
                elif all(counts[seq] == 1 for seq in kept):
                    exact += 1
                else:
                    broken += 1
                    if os.environ.get("SOAK_DEBUG"):
                        print(phase, "missing", sorted(q for q in kept if counts[q] == 0),
                              "dup", sorted(q for q in kept if counts[q] > 1), file=sys.stderr)
            delivered = sum(1 for seq in kept if self.delivered[seq] >= 1)
            end = self.fault_end.get(phase, 0.0)
            first = min((w.sent for w in self.writes if w.ok and w.sent >= end), default=None)
            recovery = f"{first - end:.1f}" if first is not None else "–"
            rows.append(f"| {phase} | {len(acked)} | {len(kept)} | {exact} | {reset} | {broken} | "
                        f"{delivered}/{len(kept)} | {recovery} |")
        failed = sum(1 for w in self.writes if not w.ok)
        return "\n".join(rows) + (f"\n\n{len(self.writes)} writes sent, {failed} refused or failed (503 while "
                                  f"Redis was unavailable); {len(self.readers)} readers.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--readers", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between writes (default 0.2)")
    parser.add_argument("--stall", type=float, default=20.0, help="seconds Redis stays frozen (default 20)")
    args = parser.parse_args(argv)
    soak = Soak(args.readers, args.interval, args.stall)
    with tempfile.TemporaryDirectory(prefix="liveblog-soak-") as workdir:
        text = asyncio.run(soak.run(Path(workdir)))
    header = (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
              f"`python -m bench soak {' '.join(argv or [])}`".rstrip())
    print(f"{header}\n\n{text}")
    return 0
