"""``python -m bench run``: the scenarios of issue 4, one table.

Each scenario starts its own private redis-server(s) and server process(es) on free loopback ports,
its load generator processes, and stops them all when it ends. Latency is counted from the moment
the poster is about to send the editor's POST to the moment a reader's read completed the event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis.exceptions

from bench import model, redisload
from bench.procs import ROOT, LoadGens, Processes, Worker
from bench.report import Row, percentile, table
from bench.targets import KINDS, LiveblogTarget, Target, start, update_text
from liveblog.config import Settings

RESULTS = ROOT / "bench" / "results"
SETTLE = 2.0  # seconds after the last reader connected before RSS is read
WAIT = 60.0  # at most this long for the last deliveries after the last post


@dataclass
class Config:
    readers: int = 10_000
    updates: int = 10
    interval: float = 1.0
    clients: int = 2
    size: int = 300
    blogs: int = 1_000
    slow: int = 100
    storm_window: float = 10.0
    processes: int = 2  # web processes in the scale-out scenario
    targets: tuple[str, ...] = KINDS
    workdir: Path = Path(tempfile.gettempdir())
    profile: Path | None = None


def port_of(target: Target) -> int:
    return int(target.base.rsplit(":", 1)[1])


async def post_updates(target: Target, paths: list[str], count: int, interval: float, first_seq: int = 0) -> None:
    """``count`` updates at a steady rate, round-robin over ``paths`` (one POST at a time)."""
    started = time.monotonic()
    for i in range(count):
        await target.post(paths[i % len(paths)], first_seq + i)
        await asyncio.sleep(max(0.0, started + (i + 1) * interval - time.monotonic()))


async def collect(target: Target, gens: LoadGens) -> dict[str, Any]:
    """Wait for the deliveries still on their way, then merge what every load generator saw."""
    expected, sent = await target.outcome()
    await gens.all("wait", expected={path: len(ids) for path, ids in expected.items()}, timeout=WAIT)
    merged: dict[str, Any] = {"latencies": [], "reconnect_ms": []}
    for part in await gens.all("report", expected=expected, sent=sent):
        for name, value in part.items():
            merged[name] = merged.get(name, 0 if not isinstance(value, list) else []) + value
    return merged


async def delivered(target: Target, gens: list[LoadGens], paths: list[str], updates: int,
                    before: redisload.Stats) -> tuple[redisload.Stats, redisload.Stats]:
    """Wait until every connected reader holds the ``updates`` just posted, then read Redis's command
    counts again: the window from ``before`` covers the changes' writes and their whole fan-out (and
    none of the bench's own reads of the streams, which come later)."""
    await asyncio.gather(*(g.all("wait", expected=dict.fromkeys(paths, updates), timeout=WAIT) for g in gens))
    return before, await redisload.snapshot(target.redis)


def make_row(scenario: str, target: Target, seen: dict[str, Any], *, rss: float | None, cpu: float | None,
             note: str = "") -> Row:
    if seen["ended"]:
        note = f"{seen['ended']:,} streams ended by the server; {note}".rstrip("; ")
    if seen["duplicates"]:
        note = f"{seen['duplicates']:,} duplicates; {note}".rstrip("; ")
    return Row(scenario, target.name, seen["readers"], seen["delivered"], seen["expected"], seen["latencies"],
               exact=seen["exact"], rss_per_reader=rss, cpu=cpu, note=note)


async def one_blog(cfg: Config, kind: str, scenario: str = "fan-out", slow: int = 0,
                   background: Callable[[Processes, Target], Awaitable[str]] | None = None,
                   env: dict[str, str] | None = None, count_redis: bool = False) -> Row:
    """``cfg.readers`` readers of one blog (plus ``slow`` frozen ones), ``cfg.updates`` updates;
    ``background(procs, target)`` (if given) runs while the updates are posted and is then cancelled;
    what it returns when cancelled goes into the row's note. ``count_redis``: Redis commands per change too
    (:mod:`bench.redisload`; the scenario then lasts the updates' time longer)."""
    with Processes(cfg.workdir, cfg.profile) as procs:
        target = start(procs, kind, env=env)
        target.size = cfg.size
        try:
            paths = await target.make_blogs(1)
            await target.mark_heads()
            gens = await procs.loadgens(cfg.clients, "127.0.0.1", port_of(target))
            rss0, cpu0 = target.proc.rss(), target.proc.cpu()
            connected = await gens.connect(paths * cfg.readers)
            if slow:
                await gens.connect(paths * slow, slow=True)
            await asyncio.sleep(SETTLE)
            rss_total, cpu_connect = target.proc.rss(), target.proc.cpu() - cpu0
            rss = (rss_total - rss0) / max(1, connected + slow)
            side = None
            if background is not None:
                await warm_upload(target)  # the pool's process starts once per web process, not per upload
                side = asyncio.ensure_future(background(procs, target))
            before = await redisload.snapshot(target.redis) if count_redis else None
            gens_cpu0, server_cpu0 = gens.cpu(), target.proc.cpu()
            try:
                await post_updates(target, paths, cfg.updates, cfg.interval)
            finally:
                side_note = ""
                if side is not None:
                    side.cancel()
                    side_note = await side
            busy = await delivered(target, [gens], paths, cfg.updates, before) if before else None
            seen = await collect(target, gens)
            gens_cpu, server_cpu = gens.cpu(), target.proc.cpu()
            cpu = server_cpu - cpu0
            # The load generators share the cores with the server: what counts for the latencies is
            # their CPU while the updates went out, not their total (which includes every connect).
            note = (f"load generator CPU {gens_cpu:.1f} s, {gens_cpu - gens_cpu0:.1f} s of it from the first update "
                    f"on, its report included (the server's: {server_cpu - server_cpu0:.1f} s)"
                    + (f"; {side_note}" if side_note else ""))
            if slow:
                peak = target.proc.rss()
                await asyncio.sleep(Settings.from_env().send_timeout_seconds + 2)
                assert isinstance(target, LiveblogTarget)
                cut = await target.metric("liveblog_sse_clients_cut_off_total")
                note += (f"; frozen readers cut off by the server: {cut:.0f}/{slow}; RSS growth "
                         f"{(peak - rss0) / 2**20:.0f} MB at the end of the updates, "
                         f"{(target.proc.rss() - rss0) / 2**20:.0f} MB after the cut-offs")
            if connected < cfg.readers:
                note += f"; {cfg.readers - connected:,} readers could not connect"
            if kind == "per-reader":
                failures = target.proc.tail(10**9).count("MaxConnectionsError: Too many connections")
                note += f"; redis-py 'Too many connections' raised {failures:,} times"
            row = make_row(scenario, target, seen, rss=rss, cpu=cpu, note=note)
            row.cpu_connect, row.rss_base, row.rss_total = cpu_connect, rss0, rss_total
            if busy:
                row.redis = await redisload.measure(target.redis, busy, cfg.updates)
                row.note += "; " + row.redis.describe()
            return row
        finally:
            await target.close()


async def fan_out(cfg: Config) -> list[Row]:
    """One blog, every server kind in the same run (the baselines give the ratios)."""
    return [await one_blog(cfg, kind, count_redis=kind == "liveblog") for kind in cfg.targets]


STORM_IDLE = 2.0  # seconds of the connected readers' idle CPU, measured before the reconnect-only storm


async def storm(cfg: Config) -> list[Row]:
    """Every reader drops and reconnects with Last-Event-ID within the window while updates go on.

    First, the same storm with no update posted: the server's CPU from its start until every reader
    is back, less the idle CPU per second of the same readers times its length, over the reconnects,
    is the CPU of one reconnect by itself (accept, request, subscription, finding the resume point; and
    any attempt the load generator gave up on and retried), with no fan-out to subtract and no
    catch-up to send. With updates going on, a reconnect also costs its catch-up: the row's figures."""
    with Processes(cfg.workdir, cfg.profile) as procs:
        target = start(procs, "liveblog")
        target.size = cfg.size
        try:
            paths = await target.make_blogs(1)
            await target.mark_heads()
            gens = await procs.loadgens(cfg.clients, "127.0.0.1", port_of(target))
            cpu0 = target.proc.cpu()
            await gens.connect(paths * cfg.readers, last_event_id=target.heads[target.streams[paths[0]]])
            await asyncio.sleep(SETTLE)
            idle_cpu, idle_start = target.proc.cpu(), time.monotonic()
            await asyncio.sleep(STORM_IDLE)
            quiet_cpu, quiet_start = target.proc.cpu(), time.monotonic()
            idle_rate = (quiet_cpu - idle_cpu) / (quiet_start - idle_start)
            quiet = await gens.all("storm", window=cfg.storm_window)
            quiet_s, quiet_cpu = time.monotonic() - quiet_start, target.proc.cpu() - quiet_cpu
            quiet_back = sum(a["reconnected"] for a in quiet)
            per_reconnect = (quiet_cpu - idle_rate * quiet_s) / max(1, quiet_back)
            cpu1 = target.proc.cpu()
            interval = 0.25
            posting = asyncio.create_task(post_updates(target, paths, int((cfg.storm_window + 3) / interval),
                                                       interval))
            await asyncio.sleep(1.0)
            window_start = time.monotonic()
            answers = await gens.all("storm", window=cfg.storm_window)
            back = time.monotonic() - window_start
            await posting
            seen = await collect(target, gens)
            reconnect = sorted(seen["reconnect_ms"])
            failed = sum(a["failed"] for a in answers + quiet)
            note = (f"all back {back:.1f} s after the storm began (window {cfg.storm_window:.0f} s); "
                    f"reconnect p50 {statistics.median(reconnect) if reconnect else 0:,.0f} ms "
                    f"p99 {percentile(reconnect, 0.99) or 0:,.0f} ms max {reconnect[-1] if reconnect else 0:,.0f} ms; "
                    f"server CPU {target.proc.cpu() - cpu1:.1f} s from the first update on; before it, the same storm "
                    f"with no update: {quiet_back:,} reconnects, all back in {quiet_s:.1f} s, CPU per reconnect "
                    f"{per_reconnect * 1000:.2f} ms = ({quiet_cpu:.1f} s − {idle_rate:.3f} CPU s/s idle × "
                    f"{quiet_s:.1f} s) / {quiet_back:,}, so one core absorbs "
                    f"~{1 / per_reconnect if per_reconnect > 0 else 0:,.0f} reconnects/s"
                    f"{f'; {failed} reconnects failed' if failed else ''}")
            seen["ended"] = 0  # the load generator dropped them on purpose
            return [make_row("reconnect storm", target, seen, rss=None, cpu=target.proc.cpu() - cpu0, note=note)]
        finally:
            await target.close()


async def many_blogs(cfg: Config) -> list[Row]:
    """``cfg.blogs`` blogs with readers spread evenly; the server's Redis connections are counted."""
    per_blog = max(1, cfg.readers // cfg.blogs)
    with Processes(cfg.workdir, cfg.profile) as procs:
        target = start(procs, "liveblog")
        target.size = cfg.size
        try:
            paths = await target.make_blogs(cfg.blogs)
            await target.mark_heads()
            gens = await procs.loadgens(cfg.clients, "127.0.0.1", port_of(target))
            idle_conns = await target.redis_clients()
            rss0, cpu0 = target.proc.rss(), target.proc.cpu()
            connected = await gens.connect([p for p in paths for _ in range(per_blog)])
            await asyncio.sleep(SETTLE)
            rss = (target.proc.rss() - rss0) / max(1, connected)
            busy_conns = await target.redis_clients()
            # Updates go to blogs spread over the whole set, one POST at a time.
            step = max(1, len(paths) // max(1, cfg.updates * 10))
            chosen = paths[::step][: cfg.updates * 10]
            await post_updates(target, chosen, len(chosen), cfg.interval / 10)
            seen = await collect(target, gens)
            after_conns = await target.redis_clients()
            note = (f"{len(chosen)} updates to {len(chosen)} blogs; server's Redis connections: {idle_conns} "
                    f"with no reader, {busy_conns} with {connected:,} readers, {after_conns} after posting")
            return [make_row(f"{cfg.blogs:,} blogs × {per_blog}", target, seen, rss=rss,
                             cpu=target.proc.cpu() - cpu0, note=note)]
        finally:
            await target.close()


PAIRS = 3  # control/test pairs run alternately in the ratio scenarios


async def median_pair(control: Callable[[], Awaitable[Row]], test: Callable[[], Awaitable[Row]]
                      ) -> tuple[Row, Row, str]:
    """Run ``control`` and ``test`` alternately ``PAIRS`` times and keep the pair whose p99 ratio is
    the median. A p99 from one short run swings with the machine's noise (one pair of runs gave
    anything from 0.25× to 5.8× here), so a single pair settles nothing. Returns the pair and a note
    with every ratio."""
    pairs: list[tuple[float, Row, Row]] = []
    for _ in range(PAIRS):
        base, other = await control(), await test()
        p_base, p_other = base.p(0.99), other.p(0.99)
        pairs.append((p_other / p_base if p_base and p_other else float("inf"), base, other))
    pairs.sort(key=lambda pair: pair[0])
    ratio, base, other = pairs[len(pairs) // 2]
    every = ", ".join(f"{r:.2f}" for r, _, _ in pairs)
    return base, other, f"p99 {ratio:.2f}× control (median of {PAIRS} alternating pairs: {every})"


async def slow_readers(cfg: Config) -> list[Row]:
    """The same readers and updates twice: without, then with ``cfg.slow`` readers that never read.

    A frozen reader only gets stuck once the kernel's socket buffers (up to 4 MB here) and the
    server's write buffer are full, so this posts 120 updates of 45,000 characters (5.4 MB per
    reader, hence at most 500 readers), then gives the server's send timeout time to cut them off.
    """
    cfg = dataclasses.replace(cfg, readers=min(cfg.readers, 500), size=45_000, updates=120, interval=0.1)
    control, test, ratios = await median_pair(
        lambda: one_blog(cfg, "liveblog", "slow readers: control"),
        lambda: one_blog(cfg, "liveblog", f"slow readers: +{cfg.slow} frozen", slow=cfg.slow))
    test.note = f"{ratios}; {test.note}"
    return [control, test]


def big_photo(megapixels: float = 24.0) -> bytes:
    """A JPEG of noise (which compresses badly): 24 MP at quality 85 is about 19 MB, the size of the
    largest photos a newsroom camera hands over."""
    import io

    from PIL import Image

    width = int((megapixels * 1e6 * 3 / 2) ** 0.5)
    height = int(width * 2 / 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "JPEG", quality=85)
    return out.getvalue()


async def warm_upload(target: Target) -> None:
    """One small upload, untimed: the web process starts its decoding process on the first upload."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), "gray").save(out, "JPEG")
    async with httpx.AsyncClient(base_url=target.base, timeout=300) as http:
        response = await http.post("/api/media", content=out.getvalue(), headers={
            "Authorization": f"Bearer {target.admin_token}", "Content-Type": "image/jpeg"})
        response.raise_for_status()


def uploader(photo: Path) -> Callable[[Processes, Target], Awaitable[str]]:
    """Uploads the photo in the file ``photo`` again and again from a ``bench.uploader`` process (not
    from this one, whose event loop times the POSTs) until cancelled; returns how many uploads completed
    and that process's CPU time."""
    megabytes = photo.stat().st_size / 1e6

    async def upload(procs: Processes, target: Target) -> str:
        client = await procs.worker("bench.uploader")
        await client.call("start", base=target.base, token=target.admin_token, photo=str(photo))
        try:
            await asyncio.Future()  # until cancelled
        except asyncio.CancelledError:
            pass
        seen = await client.call("stop")
        return (f"{seen['done']} uploads of {megabytes:.0f} MB completed while posting"
                + (f", {seen['failed']} failed" if seen["failed"] else "")
                + (f", uploads stopped early: {seen['error']}" if seen["error"] else "")
                + f" (uploader process CPU {seen['cpu']:.1f} s)")

    return upload


async def uploads(cfg: Config) -> list[Row]:
    """Fan-out with and without 20 MB photo uploads running: the decoding happens in a separate, niced
    process, so the readers' p99 should not move (target: at most 1.1× the run without)."""
    photo = cfg.workdir / "photo.jpg"
    photo.write_bytes(big_photo())
    media = cfg.workdir / "media"
    env = {"LIVEBLOG_MEDIA_DIR": str(media)}
    control, test, ratios = await median_pair(
        lambda: one_blog(cfg, "liveblog", "uploads: control", env=env),
        lambda: one_blog(cfg, "liveblog", "uploads: 20 MB photos", background=uploader(photo), env=env))
    test.note = f"{ratios}; {test.note}"
    return [control, test]


async def scale_out(cfg: Config) -> list[Row]:
    """``cfg.processes`` ``liveblog serve`` processes on one Redis, readers split evenly over them (one
    load generator process each), updates posted to the first. CPU and RSS are summed over the
    processes (the capacity model's check, :mod:`bench.model`) and Redis commands per change counted."""
    count = cfg.processes
    with Processes(cfg.workdir, cfg.profile) as procs:
        _, redis_url = procs.redis()
        targets = [start(procs, "liveblog", redis_url) for _ in range(count)]
        for target in targets:
            target.size = cfg.size
        try:
            first = targets[0]
            paths = await first.make_blogs(1)
            await first.mark_heads()
            for target in targets[1:]:
                target.streams.update(first.streams)
                target.heads.update(first.heads)
            shares = [await procs.loadgens(1, "127.0.0.1", port_of(t)) for t in targets]
            rss0, cpu0 = sum(t.proc.rss() for t in targets), sum(t.proc.cpu() for t in targets)
            connected = 0
            for i, gens in enumerate(shares):
                connected += await gens.connect(paths * (cfg.readers // count + (i < cfg.readers % count)))
            await asyncio.sleep(SETTLE)
            rss_total, cpu_connect = sum(t.proc.rss() for t in targets), sum(t.proc.cpu() for t in targets) - cpu0
            before = await redisload.snapshot(first.redis)
            await post_updates(first, paths, cfg.updates, cfg.interval)
            busy = await delivered(first, shares, paths, cfg.updates, before)
            cpu = sum(t.proc.cpu() for t in targets) - cpu0
            for target in targets[1:]:
                target.sent.update(first.sent)
            seen = [await collect(t, g) for t, g in zip(targets, shares, strict=True)]
            merged = {name: sum((s[name] for s in seen[1:]), seen[0][name]) for name in seen[0]}
            row = make_row(f"scale-out ({count} processes)", first, merged, rss=(rss_total - rss0) / max(1, connected),
                           cpu=cpu, note="")
            row.processes, row.cpu_connect, row.rss_base, row.rss_total = count, cpu_connect, rss0, rss_total
            row.redis = await redisload.measure(first.redis, busy, cfg.updates)
            row.note = "; ".join(filter(None, [
                "posted to process 1; delivered " + ", ".join(
                    f"process {i + 1}: {s['delivered']:,}/{s['expected']:,}" for i, s in enumerate(seen)),
                f"RSS of the {count} processes {rss_total / 2**20:,.0f} MB ({rss0 / 2**20:,.0f} MB before any reader)",
                f"load generator CPU {sum(g.cpu() for g in shares):.1f} s",
                row.note, row.redis.describe()]))
            return [row]
        finally:
            for target in targets:
                await target.close()


HERD_INTERVAL = 0.2  # the editor posts every 200 ms throughout
HERD_BEFORE = 2.0  # seconds of posting before process A gets SIGTERM
HERD_AFTER = 10.0  # and after


async def herd(cfg: Config) -> list[Row]:
    """The deploy herd: ``cfg.readers`` readers on process A, SIGTERM to A; each reader reconnects on
    its own to process B (same Redis) after the ``retry:`` its stream sent, with ``Last-Event-ID``,
    while an editor posts to B every 200 ms. A reader is *caught up* once it is back on B and holds
    every update posted before it began to reconnect; the note gives that moment, counted from the
    SIGTERM, over all readers, and how many reconnects per second B absorbed."""
    with Processes(cfg.workdir, cfg.profile) as procs:
        _, redis_url = procs.redis()
        first, second = (start(procs, "liveblog", redis_url) for _ in range(2))
        for target in (first, second):
            target.size = cfg.size
        try:
            paths = await first.make_blogs(1)
            second.streams.update(first.streams)
            await first.mark_heads()
            second.heads.update(first.heads)
            gens = await procs.loadgens(cfg.clients, "127.0.0.1", port_of(first))
            connected = await gens.connect(paths * cfg.readers, last_event_id=first.heads[first.streams[paths[0]]])
            await gens.all("follow", port=port_of(second))
            await asyncio.sleep(SETTLE)
            cpu0 = second.proc.cpu()
            posting = asyncio.create_task(post_updates(second, paths, int((HERD_BEFORE + HERD_AFTER) / HERD_INTERVAL),
                                                       HERD_INTERVAL))
            await asyncio.sleep(HERD_BEFORE)
            sigterm_at = time.time()
            first.proc.popen.send_signal(signal.SIGTERM)

            async def exited() -> float | None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(first.proc.popen.wait, WAIT)
                    return time.time() - sigterm_at
                return None

            exiting = asyncio.create_task(exited())
            await posting
            seen = await collect(second, gens)
            exit_s = await exiting
            exited_after = f"{exit_s:.1f} s" if exit_s is not None else f"not within {WAIT:.0f} s"
            caught = sorted(at - sigterm_at for at in seen["caught_up_at"])
            back = sorted(seen["back_at"])
            rate = len(back) / (back[-1] - sigterm_at) if back else 0.0
            retry = sorted(seen["retry_ms"])
            late = sum(1 for c in caught if c > 5.0) + (seen["readers"] - len(caught))
            gaps = seen["expected"] - seen["delivered"]

            def pcts(values: list[float]) -> str:
                if not values:
                    return "none"
                return (f"p50 {statistics.median(values):.1f} s p99 {percentile(values, 0.99) or 0:.1f} s "
                        f"max {values[-1]:.1f} s")

            ended = sorted(at - sigterm_at for at in seen["dropped_at"])
            note = (f"caught up after SIGTERM: {pcts(caught)}; A ended the streams after {pcts(ended)}; "
                    f"{len(caught):,}/{seen['readers']:,} caught up, "
                    f"{late:,} not within 5 s; {gaps:,} gaps, {seen['duplicates']:,} duplicates; "
                    f"B absorbed {len(back):,} reconnects, {rate:,.0f}/s averaged from SIGTERM to the last one, "
                    f"{(second.proc.cpu() - cpu0) / max(1, len(back)) * 1000:.2f} ms of B's CPU each "
                    f"(the editor's posts and their fan-out included); "
                    f"a reconnect answered (its first frame) after {pcts(sorted(seen['answered']))}, "
                    f"{seen['failed_attempts']:,} connection attempts unanswered; "
                    f"retry: sent {retry[0] if retry else 0}–{retry[-1] if retry else 0} ms; "
                    f"A exited {exited_after} after SIGTERM; load generator CPU {gens.cpu():.1f} s")
            if connected < cfg.readers:
                note += f"; {cfg.readers - connected:,} readers could not connect to A"
            if seen["not_back"]:
                note += f"; readers never back on B, by last HTTP status (None: no answer): {seen['not_back']}"
            seen["ended"] = 0  # A ended them: that is the scenario
            seen["duplicates"] = 0  # already in the note
            return [make_row("deploy herd", second, seen, rss=None, cpu=second.proc.cpu() - cpu0, note=note)]
        finally:
            await first.close()
            await second.close()


WEBHOOK_SUBSCRIPTIONS = 50
WEBHOOK_ENV = {"LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "LIVEBLOG_WEBHOOK_TIMEOUT": "5",
               "LIVEBLOG_WEBHOOK_RETRY_SCHEDULE": "60"}


async def bare_httpx(port: int, count: int, size: int, concurrency: int) -> tuple[float, list[float]]:
    """The yardstick: ``count`` POSTs with one httpx client, ``concurrency`` at a time."""
    body = update_text(0, size).encode()
    gate = asyncio.Semaphore(concurrency)
    durations: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as http:
        async def one(i: int) -> None:
            async with gate:
                started = time.time()
                response = await http.post(f"http://127.0.0.1:{port}/bare/{i % WEBHOOK_SUBSCRIPTIONS}", content=body)
                response.raise_for_status()
                durations.append((time.time() - started) * 1000)

        # Untimed, like the dispatcher's warm-up update: connections open, code paths warm.
        await asyncio.gather(*(http.post(f"http://127.0.0.1:{port}/bare/{i}", content=body)
                               for i in range(concurrency)))
        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.monotonic() - started), durations


async def joined(target: Target, path: str) -> None:
    """Wait until the dispatcher reads the new blog's stream: it looks for new blogs about once a
    second, a one-off delay per blog that would otherwise count against the delivery rate."""
    stream = target.streams[path]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.exceptions.ResponseError):  # no stream yet
            if any(group["name"] == "webhooks" for group in await target.redis.xinfo_groups(stream)):
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the dispatcher never joined {stream}")


async def warm_up(target: Target, path: str, hooks: Worker, seq: int) -> None:
    """One untimed update, its deliveries awaited and forgotten: every subscription has a connection
    open and the dispatcher's code paths are warm, as in steady operation. Otherwise a cold start
    (paid once per process) makes up the slowest percent of a run this short, and the p99 compared
    between two runs measures it rather than isolation."""
    await target.post(path, seq)
    del target.sent[seq]
    arrived = 0
    deadline = time.monotonic() + WAIT
    while arrived < WEBHOOK_SUBSCRIPTIONS and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        arrived += sum(1 for hook_path, _, _ in await hooks.call("report") if hook_path.startswith("/hook/"))


async def webhook_run(cfg: Config, procs: Processes, hooks: Worker, port: int, hang: bool) -> tuple[Row, float]:
    """``cfg.updates`` updates posted back to back to one blog with 50 subscriptions (plus one whose
    receiver never answers, if ``hang``); returns the row and the deliveries per second."""
    target = start(procs, "liveblog", env=WEBHOOK_ENV, dispatcher=True)
    target.size = cfg.size
    try:
        [path] = await target.make_blogs(1)
        slug = path.split("/")[2]
        headers = {"Authorization": f"Bearer {target.admin_token}"}
        urls = [f"http://127.0.0.1:{port}/hook/{i}" for i in range(WEBHOOK_SUBSCRIPTIONS)]
        for url in urls + ([f"http://127.0.0.1:{port}/hang/0"] if hang else []):
            response = await target.http.post("/api/webhooks", headers=headers,
                                              json={"url": url, "blogs": [slug], "events": ["entry.created"]})
            response.raise_for_status()
        await joined(target, path)
        await warm_up(target, path, hooks, cfg.updates)
        await hooks.call("report")  # forget anything earlier
        cpu0 = target.proc.cpu()
        await post_updates(target, [path], cfg.updates, 0.0)
        expected = WEBHOOK_SUBSCRIPTIONS * cfg.updates
        records: list[list[Any]] = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            records += [r for r in await hooks.call("report") if r[0].startswith("/hook/")]
            if len(records) >= expected:
                break
            await asyncio.sleep(0.2)
        per_sub: dict[str, list[int]] = {}
        for hook_path, seq, _ in records:
            per_sub.setdefault(hook_path, []).append(seq)
        every = list(range(cfg.updates))
        exact = sum(1 for seqs in per_sub.values() if sorted(seqs) == every)
        first = min(target.sent.values())
        rate = len(records) / (max(at for _, _, at in records) - first) if records else 0.0
        latencies = [(at - target.sent[seq]) * 1000 for _, seq, at in records if seq in target.sent]
        row = Row(f"webhooks: {WEBHOOK_SUBSCRIPTIONS} subscriptions" + (" + 1 timing out" if hang else ""),
                  "liveblog serve", WEBHOOK_SUBSCRIPTIONS, len({(p, s) for p, s, _ in records}), expected, latencies,
                  exact=exact, cpu=target.proc.cpu() - cpu0, note=f"{rate:,.0f} deliveries/s")
        return row, rate
    finally:
        await target.close()


async def webhooks(cfg: Config) -> list[Row]:
    """Deliveries to 50 subscriptions on one loopback receiver, against a bare httpx loop to the same
    receiver; then again with one more subscription whose receiver never answers (5 s timeout)."""
    with Processes(cfg.workdir, cfg.profile) as procs:
        hooks = await procs.worker("bench.receiver")
        port = (await hooks.answer())["port"]
        # A plain loop (one request at a time) and 64 at a time (httpx's own pool): httpx's pool
        # gets slower with many requests in flight, so the better of the two is the yardstick.
        bare: Row | None = None
        bare_rate = 0.0
        for concurrency in (1, 64):
            rate, durations = await bare_httpx(port, WEBHOOK_SUBSCRIPTIONS * cfg.updates, cfg.size, concurrency)
            if rate > bare_rate:
                bare_rate = rate
                bare = Row("webhooks: bare httpx loop", f"httpx, {concurrency} at a time", WEBHOOK_SUBSCRIPTIONS,
                           len(durations), len(durations), durations, exact=WEBHOOK_SUBSCRIPTIONS,
                           note=f"{rate:,.0f} requests/s (the better of 1 and 64 at a time); latency = round trip")
        await hooks.call("report")
        assert bare is not None
        rates: dict[int, float] = {}

        async def run(hang: bool) -> Row:
            row, rate = await webhook_run(cfg, procs, hooks, port, hang=hang)
            rates[id(row)] = rate
            return row

        plain, hung, ratios = await median_pair(lambda: run(False), lambda: run(True))
        plain.note += f" = {rates[id(plain)] / bare_rate:.2f}× the bare httpx loop"
        hung.note += f"; the others' {ratios.replace('control', 'the run without it')}"
        return [bare, plain, hung]


SCENARIOS: dict[str, Callable[[Config], Awaitable[list[Row]]]] = {
    "fanout": fan_out,
    "storm": storm,
    "blogs": many_blogs,
    "slow": slow_readers,
    "scaleout": scale_out,
    "webhooks": webhooks,
    "uploads": uploads,
    "herd": herd,
}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run scenarios and print one table")
    run.add_argument("--scenario", action="append", choices=[*SCENARIOS, "all"],
                     help="repeatable; default: all")
    run.add_argument("--readers", type=int, default=10_000, help="readers per scenario (default 10000)")
    run.add_argument("--updates", type=int, default=10, help="updates posted per scenario (default 10)")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default 1)")
    run.add_argument("--clients", type=int, default=2, help="load generator processes (default 2)")
    run.add_argument("--size", type=int, default=300, help="characters of text per update (default 300)")
    run.add_argument("--blogs", type=int, default=1_000, help="blogs in the many-blogs scenario (default 1000)")
    run.add_argument("--slow", type=int, default=100, help="frozen readers in the slow scenario (default 100)")
    run.add_argument("--processes", type=int, default=2,
                     help="web processes in the scale-out scenario (default 2)")
    run.add_argument("--target", action="append", choices=KINDS, help="servers in the fan-out scenario")
    run.add_argument("--profile", type=Path, help="record each liveblog process with py-spy (collapsed stacks here)")
    run.add_argument("--output", type=Path, default=RESULTS / "latest.md", help="where the table is written")
    args = parser.parse_args(argv)
    cfg = Config(readers=args.readers, updates=args.updates, interval=args.interval, clients=args.clients,
                 size=args.size, blogs=args.blogs, slow=args.slow, processes=args.processes,
                 targets=tuple(args.target or KINDS), profile=args.profile)
    return args, cfg


async def run(scenarios: list[str], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    for name in scenarios:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        try:
            rows += await SCENARIOS[name](cfg)
        except Exception as exc:  # one broken scenario must not lose the others' figures
            print(f"bench: {name} failed: {exc!r}", file=sys.stderr, flush=True)
            rows.append(Row(name, "–", 0, 0, 0, note=f"failed: {exc!r}"[:200]))
    return rows


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse(argv)
    scenarios = list(SCENARIOS) if not args.scenario or "all" in args.scenario else args.scenario
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="liveblog-bench-") as workdir:
        cfg.workdir = Path(workdir)
        import uvloop

        rows = uvloop.run(run(scenarios, cfg))
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
              f"Python {platform.python_version()} · `{command}` · load average (1/5/15 min) "
              f"{'/'.join(f'{x:.1f}' for x in load_before)} at the start, "
              f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    text = f"{header}\n\n{table(rows)}\n"
    check = model.check(rows)
    if check:
        text += f"\n{check}\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0
