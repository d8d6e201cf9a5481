"""The webhook dispatcher: runs in `liveblog worker` and inside `liveblog serve` (unless disabled).

Three loops per process: the intake (blog streams -> deliveries, see ``intake.py``), the reclaimer
(changes left pending by dead workers), and the sender, which leases due deliveries (``queue.py``)
up to ``webhook_concurrency`` at once and attempts each in its own task. Any number of processes
share the work through Redis; none of them holds state that matters when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from liveblog import metrics, timefmt
from liveblog.config import Settings
from liveblog.present import Presenter
from liveblog.redisconn import blocking_client, connect, log_failed_round
from liveblog.webhooks.clients import Clients
from liveblog.webhooks.intake import BLOCK_MS, Intake
from liveblog.webhooks.queue import Attempted, Claim, DeliveryQueue
from liveblog.webhooks.schedule import next_step
from liveblog.webhooks.sender import Attempt, post
from liveblog.webhooks.signing import signed_headers
from liveblog.webhooks.ssrf import AddressPolicy
from liveblog.webhooks.subscriptions import Snapshot, Subscriptions

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.25  # deliveries made due by other workers (retries, releases) are found this fast
STOP_GRACE_SECONDS = 2.0  # each step of stop() waits at most this long; the whole stop is a few of them


class Dispatcher:
    def __init__(self, settings: Settings, *, public_url: str, cluster: bool) -> None:
        """``cluster``: whether ``LIVEBLOG_REDIS_URL`` names a Redis Cluster node (``redisconn.is_cluster``)."""
        if not settings.redis_url:
            raise RuntimeError("the webhook dispatcher needs LIVEBLOG_REDIS_URL")
        self.settings = settings
        self.public_url = public_url
        self.cluster = cluster
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # A lease outlives the longest attempt by the claim idle time: only a dead worker's lease expires.
        self.lease_ms = int((settings.webhook_timeout_seconds + settings.webhook_claim_idle_seconds) * 1000)
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Claim] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.stopping = False  # the loops also end on this, should a cancellation ever be swallowed below
        self.last_progress = time.monotonic()  # the last claim round trip to Redis (see health.py)

    async def start(self) -> None:
        settings = self.settings
        assert settings.redis_url
        policy = AddressPolicy(settings.allowed_networks)
        timeout = settings.redis_timeout_seconds
        self.redis = connect(settings.redis_url, self.cluster, max_connections=20, timeout=timeout)
        # The intake's own client: a blocking reader's connection, or on a cluster a small client of its own
        # for the per-slot reads and the notifier (which reloads the slot map without disturbing the pool).
        self.reader = (connect(settings.redis_url, True, max_connections=5, timeout=timeout) if self.cluster
                       else blocking_client(settings.redis_url, read_timeout=BLOCK_MS / 1000 + timeout,
                                            connect_timeout=timeout))
        self.clients = Clients(policy, per_subscription=settings.webhook_concurrency_per_subscription)
        self.user_agent = f"liveblog-webhooks/1 (+{self.public_url})"
        # httpx logs every request at INFO; the delivery log is the record of attempts.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # A change whose worker died before acknowledging it is taken over (and queued again) once
        # idle for the claim idle time, by a reclaim running every half of it: finished deliveries
        # are remembered for twice that time, so queueing them again adds nothing.
        self.queue = DeliveryQueue(self.redis, done_keep_ms=int(2 * settings.webhook_claim_idle_seconds * 1000))
        self.recorder = Recorder(self.queue, settings)
        self.intake = Intake(self.redis, self.reader, self.queue, Snapshot(Subscriptions(self.redis, policy)),
                             presenter=Presenter(self.public_url), consumer=self.consumer,
                             claim_idle_seconds=settings.webhook_claim_idle_seconds,
                             on_queued=self._wake.set, stopping=lambda: self.stopping)
        self._tasks = [asyncio.create_task(self.intake.read_loop(), name="webhooks-intake"),
                       asyncio.create_task(self.intake.reclaim_loop(), name="webhooks-reclaim"),
                       asyncio.create_task(self._send_loop(), name="webhooks-send")]
        log.info("webhook dispatcher started as consumer %s", self.consumer)

    async def stop(self) -> None:
        """Stop taking work; give attempts in flight a moment, then hand the rest back (released
        deliveries are due at once for the other workers).

        Every wait here is bounded by ``STOP_GRACE_SECONDS``, and nothing is awaited that could
        ignore its cancellation: a task that has not ended by then is left behind (the loops also end
        by themselves on ``stopping``), and the leases of attempts still running are released from
        here. A stop takes a few ``STOP_GRACE_SECONDS`` at most, whatever Redis, a partner or a task does.
        """
        self.stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await _bounded_wait(self._tasks, "webhook loops")
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=STOP_GRACE_SECONDS)
        for task in self._inflight:
            task.cancel()  # each releases its delivery
        stuck = await _bounded_wait(list(self._inflight), "webhook attempts")
        claims = [self._inflight[task] for task in stuck if task in self._inflight]
        if claims:  # hand back what the attempts could not
            await _bounded_wait([asyncio.ensure_future(self.queue.finish([Attempted(c, "release") for c in claims]))],
                                "lease releases")
        if self.recorder.flushing is not None:
            await _bounded_wait([self.recorder.flushing], "attempt records")
        for close in (self.clients.aclose, self.intake.close, self.reader.aclose, self.redis.aclose):
            await _bounded_wait([asyncio.ensure_future(close())], "connection closes")

    async def _send_loop(self) -> None:
        backoff = 0.1
        while not self.stopping:
            self.clients.sweep()
            room = self.settings.webhook_concurrency - len(self._inflight)
            wait = IDLE_POLL_SECONDS
            self._wake.clear()
            if room <= 0:  # every slot busy: progress is the deliveries in flight
                self.last_progress = time.monotonic()
            else:
                try:
                    due_in_ms, claims = await self.queue.claim(
                        limit=room, per_subscription=self.settings.webhook_concurrency_per_subscription,
                        lease_ms=self.lease_ms)
                    backoff = 0.1
                    self.last_progress = time.monotonic()
                except Exception as exc:  # whatever it is, the loop goes on (see log_failed_round)
                    log_failed_round(log, "webhook sender", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for claim in claims:
                    task = asyncio.create_task(self._deliver(claim))
                    self._inflight[task] = claim
                    task.add_done_callback(self._done)
                if due_in_ms is not None:
                    wait = min(wait, due_in_ms / 1000)
                if len(claims) == room:
                    continue  # there may be more due right now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()  # a slot (and a per-subscription lease) is free
        if not task.cancelled() and task.exception() is not None:  # its lease expires; it is tried again
            log.error("webhook delivery task failed", exc_info=task.exception())

    async def _deliver(self, claim: Claim) -> None:
        job, sub, settings = claim.job, claim.subscription, self.settings
        attempt_no = job.attempts + 1
        started = datetime.now(UTC)
        clock = time.perf_counter()
        try:
            async with self.clients.use(job.sub_id) as transport:
                result = await post(transport, sub["url"], job.body,
                                    {**signed_headers(sub["secret"], job.id, job.body, started),
                                     "Content-Type": "application/json", "Accept-Encoding": "identity",
                                     "User-Agent": self.user_agent},
                                    timeout=settings.webhook_timeout_seconds, cap=settings.webhook_response_cap_bytes)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.queue.finish([Attempted(claim, "release")]), 1.0)
            raise
        except Exception as exc:  # anything unforeseen (a bug, an answer nobody expected) is a failed attempt
            log.exception("webhook %s: attempt %d failed unexpectedly", job.id, attempt_no)
            result = Attempt(None, f"unexpected error: {type(exc).__name__}: {exc}"[:300],
                             time.perf_counter() - clock, "")
        outcome, delay = next_step(result.status, attempt_no, settings.retry_schedule, retry_after=result.retry_after)
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        metrics.WEBHOOK_LATENCY.observe(result.duration)
        entry = {
            "webhook_id": job.id, "event_id": job.event_id, "blog": job.slug, "type": job.type,
            "attempt": attempt_no, "at": timefmt.rfc3339(started), "status": result.status, "error": result.error,
            "duration_ms": round(result.duration * 1000, 1), "response": result.excerpt, "outcome": outcome,
        }
        if delay is not None:
            entry["next_attempt_at"] = timefmt.rfc3339(datetime.fromtimestamp(time.time() + delay, UTC))
        error = result.error or f"HTTP {result.status}"
        try:
            state = await self.recorder.record(
                Attempted(claim, outcome, log_entry=entry, retry_ms=int((delay or 0) * 1000), error=error))
        except Exception as exc:  # Redis gone: the lease expires and the delivery is attempted again
            log.warning("webhook %s: could not record attempt %d (%s)", job.id, attempt_no, exc)
            return
        if outcome != "delivered":
            log.info("webhook %s to subscription %s: attempt %d %s (%s)", job.id, job.sub_id, attempt_no, outcome,
                     error)
        if state == "disabled" and outcome != "delivered":
            log.warning("webhook subscription %s is disabled", job.sub_id)


class Recorder:
    """Records finished attempts in batches: one pipelined round trip for every attempt that finished
    while the previous one was on its way (so no added wait when idle, few round trips under load)."""

    def __init__(self, queue: DeliveryQueue, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self._pending: list[tuple[Attempted, asyncio.Future[str | None]]] = []
        self.flushing: asyncio.Task[None] | None = None  # the batch on its way (stop() waits for it, bounded)

    async def record(self, done: Attempted) -> str | None:
        """Queue ``done`` for the next batch; returns the subscription's state afterwards (None if
        it was deleted). The record is written even if the caller is cancelled meanwhile."""
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending.append((done, future))
        if self.flushing is None:
            self.flushing = asyncio.create_task(self._flush(), name="webhooks-record")
        return await future

    async def _flush(self) -> None:
        settings = self.settings
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    states = await self.queue.finish(
                        [done for done, _ in batch], log_size=settings.webhook_log_size,
                        disable_after_ms=int(settings.webhook_disable_after_seconds * 1000),
                        disable_reason=f"no successful delivery for {settings.webhook_disable_after_seconds:g} s")
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), state in zip(batch, states, strict=True):
                    if future.done():
                        continue
                    if isinstance(state, Exception):
                        future.set_exception(state)
                    else:
                        future.set_result(state)
        finally:
            self.flushing = None


async def _bounded_wait(tasks: Sequence[asyncio.Future[Any]], what: str) -> set[asyncio.Future[Any]]:
    """Wait up to ``STOP_GRACE_SECONDS`` for ``tasks``; return (and log) those still running."""
    if not tasks:
        return set()
    _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
    if pending:
        log.warning("stopping: %d %s still running after %.0f s; not waiting for them", len(pending), what,
                    STOP_GRACE_SECONDS)
    return pending
