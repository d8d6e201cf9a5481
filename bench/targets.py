"""The servers a scenario measures, behind one interface: make blogs, post an update, map stream IDs
back to the moment each update was posted.

Every update's text carries ``bench-<seq>x``; after a run the orchestrator reads the streams back
(``XRANGE``) to learn which stream ID each update got, so readers only need the SSE ``id:`` field.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field

import httpx
import orjson
import redis.asyncio as aioredis

from bench.baselines.common import STREAM
from bench.procs import Proc, Processes

SEQ = re.compile(r"bench-(\d+)x")
FILLER = ("La piazza si riempie mentre arrivano le prime dichiarazioni ufficiali; seguono aggiornamenti "
          "dalla redazione. ")


def update_text(seq: int, size: int) -> str:
    text = f"Aggiornamento bench-{seq}x. "
    return (text + FILLER * (1 + size // len(FILLER)))[:size]


@dataclass
class Target:
    """A running server under test and the Redis behind it."""

    name: str
    proc: Proc
    base: str
    redis_url: str
    http: httpx.AsyncClient = field(init=False)
    redis: aioredis.Redis = field(init=False)
    streams: dict[str, str] = field(default_factory=dict)  # reader path -> stream key
    heads: dict[str, str] = field(default_factory=dict)  # stream key -> newest ID before the run
    sent: dict[int, float] = field(default_factory=dict)  # update seq -> time.time() before its POST
    size: int = 300
    admin_token: str = ""

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30,
                                      limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
        self.redis = aioredis.from_url(self.redis_url, decode_responses=True)

    async def close(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()

    async def make_blogs(self, count: int) -> list[str]:
        """Reader paths, one per blog."""
        raise NotImplementedError

    async def _post(self, path: str, text: str) -> None:
        raise NotImplementedError

    async def post(self, path: str, seq: int) -> None:
        self.sent[seq] = time.time()
        await self._post(path, update_text(seq, self.size))

    async def mark_heads(self) -> None:
        for key in set(self.streams.values()):
            newest = await self.redis.xrevrange(key, count=1)
            self.heads[key] = newest[0][0] if newest else "0-0"

    async def outcome(self) -> tuple[dict[str, list[str]], dict[str, float]]:
        """Per reader path, the stream IDs it should have received; per stream ID, when it was posted."""
        by_key: dict[str, list[str]] = {}
        sent_at: dict[str, float] = {}
        for key in set(self.streams.values()):
            items = await self.redis.xrange(key, min="(" + self.heads.get(key, "0-0"), max="+")
            by_key[key] = [sid for sid, _ in items]
            for sid, fields in items:
                match = SEQ.search(fields.get("data", ""))
                if match and int(match.group(1)) in self.sent:
                    sent_at[sid] = self.sent[int(match.group(1))]
        return {path: by_key[key] for path, key in self.streams.items()}, sent_at

    async def redis_clients(self) -> int:
        """Connections the server holds to its Redis (ours excluded)."""
        clients = await self.redis.client_list()
        return len(clients) - 1


class LiveblogTarget(Target):
    async def make_blogs(self, count: int) -> list[str]:
        prefix = uuid.uuid4().hex[:6]
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        gate = asyncio.Semaphore(16)

        async def make(i: int) -> str:
            slug = f"bench-{prefix}-{i}"
            async with gate:
                response = await self.http.post("/api/blogs", headers=headers,
                                                json={"slug": slug, "title": f"Bench {i}"})
            response.raise_for_status()
            return slug

        slugs = await asyncio.gather(*(make(i) for i in range(count)))
        paths = [f"/blogs/{slug}/events" for slug in slugs]
        self.streams.update({path: f"lb:{{{slug}}}:stream" for path, slug in zip(paths, slugs, strict=True)})
        return paths

    async def metric(self, name: str) -> float:
        """A value from the server's ``/metrics`` (Prometheus text)."""
        for line in (await self.http.get("/metrics")).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    async def _post(self, path: str, text: str) -> None:
        slug = path.split("/")[2]
        response = await self.http.post(f"/api/blogs/{slug}/entries", json={"body": text},
                                        headers={"Authorization": f"Bearer {self.admin_token}"})
        response.raise_for_status()


class BaselineTarget(Target):
    """The sse-starlette baselines: one stream, ``POST /publish``, ``GET /events``."""

    async def make_blogs(self, count: int) -> list[str]:
        assert count == 1, "the baselines serve one stream"
        self.streams["/events"] = STREAM
        return ["/events"]

    async def _post(self, path: str, text: str) -> None:
        entry = {"id": str(len(self.sent)), "blog": "bench", "title": None, "body_html": f"<p>{text}</p>",
                 "author": "bench", "published_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
                 "time_label": "14.25", "key_event": False, "pinned": False, "version": 1}
        response = await self.http.post("/publish", content=orjson.dumps(entry))
        response.raise_for_status()


ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex


def start(procs: Processes, kind: str, redis_url: str | None = None, env: dict[str, str] | None = None,
          dispatcher: bool = False) -> Target:
    """Start a server of ``kind`` (with a private Redis unless ``redis_url`` is given)."""
    if redis_url is None:
        _, redis_url = procs.redis()
    if kind == "liveblog":
        proc, base = procs.liveblog(redis_url, ADMIN_TOKEN, env, dispatcher)
        return LiveblogTarget(kind, proc, base, redis_url, admin_token=ADMIN_TOKEN)
    module = {"shared-reader": "bench.baselines.shared_reader:app", "per-reader": "bench.baselines.per_reader:app"}
    proc, base = procs.uvicorn_app(module[kind], redis_url)
    return BaselineTarget(kind, proc, base, redis_url)


KINDS = ("liveblog", "shared-reader", "per-reader")
