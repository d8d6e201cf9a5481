"""The delivery queue: one delivery per (change, subscription), scheduled and leased in Redis.

Per subscription: a ``q`` zset (delivery id -> due ms), a ``lease`` zset (delivery id -> lease expiry
ms), a ``jobs`` hash (delivery id -> job JSON) and a ``done`` zset (delivery id -> when it was
finished). All times come from the Redis clock (``TIME``) of the node holding the subscription, so
workers on machines with skewed clocks agree.

Every script call is for ONE subscription and is given all its keys (``keys.all_of``, one hash
tag): on a Redis Cluster each call touches one slot. Work for several subscriptions is a pipeline of
such calls. The two global keys are changed by single-key commands beside the scripts, in an order
that loses nothing:

- Queueing is idempotent: the delivery id is stable (blog, change, subscription), and a delivery
  already queued, leased, or finished less than ``done_keep_ms`` ago is left alone. So the intake
  queues a change's deliveries first and acknowledges the change in its stream after: a crash in
  between leaves the change pending; it is reclaimed and queued again, which adds nothing. A change
  retaken later than ``done_keep_ms`` after its delivery (its worker died between queueing and
  acknowledging, and no other worker took it over in time) is delivered a second time, same
  ``webhook-id``: at least once, as promised; receivers dedupe on it.
- ``lb:wh:active`` (subscriptions with queued or leased deliveries) gets a subscription *after* its
  deliveries are queued, and loses it only when a claim found its queue and leases empty; the
  claimer then looks again and adds it back if work arrived meanwhile. Whatever the interleaving,
  a subscription with work is in the set afterwards.
- ``lb:wh:version`` (workers reload their subscriptions when it changes) gets a new value by its own
  ``SET`` after an attempt disabled a subscription.
- Claiming moves a due delivery into ``lease`` with an expiry longer than one attempt can take.
  A worker that dies holding leases loses nothing: the next claim by anyone puts expired leases back.
- The per-subscription limit is counted on the shared ``lease`` zset inside the claim script, so it
  holds across all workers: a slow partner occupies at most that many attempts anywhere, and its
  backlog waits in its own queue instead of in front of other partners' deliveries.
"""

from __future__ import annotations

import contextlib
import logging
import random
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from liveblog import streamids, timefmt
from liveblog.redisconn import execute
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.signing import message_id
from liveblog.webhooks.subscriptions import announce_change

log = logging.getLogger(__name__)

# Every script's KEYS: 1 sub, 2 q, 3 lease, 4 jobs, 5 log, 6 done (``keys.all_of``).
_NOW = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# ARGV[1] mode ('new': a delivery already queued, leased or recently done is left alone; 'replay':
# a queued one restarts at attempt 1 and a done one is queued again), then pairs (delivery id, job
# JSON). Nothing for a deleted subscription. Returns how many were queued.
_ENQUEUE = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local added = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if not redis.call('ZSCORE', KEYS[3], id) and (ARGV[1] == 'replay'
      or (redis.call('HEXISTS', KEYS[4], id) == 0 and not redis.call('ZSCORE', KEYS[6], id))) then
    redis.call('HSET', KEYS[4], id, ARGV[i + 1])
    redis.call('ZADD', KEYS[2], now, id)
    added = added + 1
  end
end
return added
"""

# ARGV[1] lease ms, ARGV[2] most deliveries to take, ARGV[3] per-subscription limit.
# Returns {now, earliest due time if the subscription has room (-1: none), deliveries due beyond
# those taken that its room allows, 1 if nothing is queued or leased, lease expiry, doc, {id, job}...}
_CLAIM = _NOW + """
local lease_ms, take, per_sub = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[2], now, id)
end
local state = redis.call('HGET', KEYS[1], 'state')
local taken, next_due, due, doc = {}, -1, 0, ''
if not state then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[6])
elseif state == 'active' then
  local free = per_sub - redis.call('ZCARD', KEYS[3])
  if free > 0 and take > 0 then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, math.min(free, take))) do
      redis.call('ZREM', KEYS[2], id)
      local job = redis.call('HGET', KEYS[4], id)
      if job then
        redis.call('ZADD', KEYS[3], now + lease_ms, id)
        table.insert(taken, {id, job})
        free = free - 1
      end
    end
    if #taken > 0 then doc = redis.call('HGET', KEYS[1], 'doc') end
  end
  if free > 0 then
    due = math.min(free, redis.call('ZCOUNT', KEYS[2], '-inf', now))
    local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if first[2] then next_due = tonumber(first[2]) end
  end
end
local empty = 0
if redis.call('ZCARD', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then empty = 1 end
return {now, next_due, due, empty, now + lease_ms, doc, taken}
"""

# ARGV: 1 log size, 2 disable after ms, 3 reason given when disabling for lack of success, 4 how
# long a finished delivery is remembered (ms), 5 delivery id, 6 lease held (ms), 7 outcome
# (delivered|retrying|failed|gone|release), 8 retry delay ms, 9 job JSON for the retry, 10 log
# entry JSON, 11 last error. Returns {state afterwards ('deleted' if the subscription is gone),
# 1 if this attempt disabled it}. Queue changes happen only while the caller still holds the
# lease; the attempt is recorded anyway.
_FINISH = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'deleted', 0} end
local log_size, disable_after, id, outcome = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[5], ARGV[7]
if tonumber(redis.call('ZSCORE', KEYS[3], id)) == tonumber(ARGV[6]) then
  redis.call('ZREM', KEYS[3], id)
  if outcome == 'retrying' then
    redis.call('HSET', KEYS[4], id, ARGV[9])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[8]), id)
  elseif outcome == 'release' then
    redis.call('ZADD', KEYS[2], now, id)
  else
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZADD', KEYS[6], now, id)
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[4]))
  end
end
local disabled = 0
if outcome == 'delivered' then
  redis.call('HSET', KEYS[1], 'failures', 0, 'last_success_at', now)
  redis.call('HDEL', KEYS[1], 'failing_since')
  redis.call('HINCRBY', KEYS[1], 'delivered', 1)
elseif outcome ~= 'release' then
  redis.call('HINCRBY', KEYS[1], 'failures', 1)
  redis.call('HSET', KEYS[1], 'last_failure_at', now, 'last_error', ARGV[11])
  redis.call('HSETNX', KEYS[1], 'failing_since', now)
  if outcome ~= 'retrying' then redis.call('HINCRBY', KEYS[1], 'failed', 1) end
  local reason = false
  if outcome == 'gone' then
    reason = 'the receiver answered 410 Gone'
  elseif now - tonumber(redis.call('HGET', KEYS[1], 'failing_since')) >= disable_after then
    reason = ARGV[3]
  end
  if reason and redis.call('HGET', KEYS[1], 'state') == 'active' then
    redis.call('HSET', KEYS[1], 'state', 'disabled', 'disabled_at', now, 'disabled_reason', reason)
    disabled = 1
  end
end
if outcome ~= 'release' then
  redis.call('LPUSH', KEYS[5], ARGV[10])
  redis.call('LTRIM', KEYS[5], 0, log_size - 1)
end
return {redis.call('HGET', KEYS[1], 'state'), disabled}
"""


def event_time(event_id: str) -> str:
    """The change's time (RFC 3339) from its stream ID: the body's ``timestamp``, same on every attempt."""
    parsed = streamids.parse(event_id)
    ms = parsed[0] if parsed else 0
    return timefmt.rfc3339(datetime.fromtimestamp(ms / 1000, UTC))


@dataclass(frozen=True)
class Job:
    """One delivery: a change for one subscription. ``attempts`` counts attempts already made."""

    sub_id: str
    id: str
    slug: str
    event_id: str
    type: str
    body: str
    attempts: int = 0

    @classmethod
    def for_change(cls, sub_id: str, slug: str, event_id: str, event_type: str, data: str) -> Job:
        return cls.for_subscriptions([sub_id], slug, event_id, event_type, data)[0]

    @classmethod
    def for_subscriptions(cls, sub_ids: list[str], slug: str, event_id: str, event_type: str, data: str
                          ) -> list[Job]:
        """One job per subscription, sharing one Standard Webhooks body ``{"type", "timestamp", "data"}``
        (encoded once per change; ``data`` is embedded verbatim)."""
        body = orjson.dumps({"type": event_type, "timestamp": event_time(event_id),
                             "data": orjson.Fragment(data)}).decode()
        return [cls(sub_id, message_id(slug, event_id, sub_id), slug, event_id, event_type, body)
                for sub_id in sub_ids]

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, raw: str) -> Job:
        return cls(**orjson.loads(raw))


@dataclass(frozen=True)
class Claim:
    """A leased delivery, with the subscription's config as it is now (URL and secret included)."""

    job: Job
    lease: int
    subscription: dict[str, Any]


@dataclass(frozen=True)
class Attempted:
    """What became of a claimed delivery: an attempt's outcome, or ``release`` (handed back untried)."""

    claim: Claim
    outcome: str
    log_entry: dict[str, Any] | None = None
    retry_ms: int = 0
    error: str = ""


Call = tuple[AsyncScript, str, list[Any]]  # (script, subscription id, ARGV)


@dataclass(frozen=True)
class _Answer:
    """One subscription's answer to a claim call."""

    claims: list[Claim]
    wait_ms: int | None  # until its earliest queued delivery, if it has room for one
    due: int  # deliveries due now beyond those taken, within its room
    empty: bool  # nothing queued or leased


class DeliveryQueue:
    """The queue of every subscription. ``done_keep_ms``: how long a finished delivery is remembered,
    so that queueing its change again adds nothing (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, *, done_keep_ms: int = 120_000) -> None:
        self.redis = redis
        self.done_keep_ms = done_keep_ms
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)

    async def load(self) -> None:
        """Load the scripts into Redis (again: a restart empties its script cache; on a cluster,
        into every primary, so a new or promoted one has them too)."""
        for script in (self._enqueue, self._claim, self._finish):
            script.sha = await self.redis.script_load(script.script)

    async def _send(self, calls: list[Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for script, sub_id, args in calls:
                script_keys = whkeys.all_of(sub_id)
                # Not ``pipe.evalsha``: redis-py's cluster pipeline refuses that method, though it
                # routes the command itself by its keys like any other.
                pipe.execute_command("EVALSHA", script.sha, len(script_keys), *script_keys, *args)
            return await execute(self.redis, pipe, raise_on_error=False)

    async def _call(self, calls: list[Call]) -> list[Any]:
        """Run each call in one pipelined round trip (on a cluster, one per node, side by side).
        Each result is the script's reply or the exception of that call alone.

        A bare ``EVALSHA``: a call refused with NOSCRIPT (Redis lost its scripts: a restart, a
        failover, a new primary) ran nothing, so the scripts are loaded and exactly those calls
        are sent again, once. No other call is ever sent twice."""
        if not calls:
            return []
        results = await self._send(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            log.info("webhook queue: loading its scripts into Redis (first use, or Redis restarted)")
            await self.load()
            for i, result in zip(missing, await self._send([calls[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def enqueue(self, jobs: list[Job], *, replay: bool = False) -> int:
        """Queue ``jobs`` and make their subscriptions active; returns how many were queued.

        Not a replay: a delivery already queued, leased or recently done is left alone, so queueing
        a change twice adds nothing. A replay: queued deliveries restart at attempt 1 and done ones
        are queued again; leased ones are left to finish. Raises the first failure after the calls
        that succeeded took effect (a call that failed may or may not have run: queueing the same
        jobs again is harmless either way)."""
        by_sub: dict[str, list[Any]] = {}
        for job in jobs:
            by_sub.setdefault(job.sub_id, ["replay" if replay else "new"]).extend((job.id, job.to_json()))
        calls: list[Call] = [(self._enqueue, sub_id, args) for sub_id, args in by_sub.items()]
        results = await self._call(calls)
        queued = [sub_id for (_, sub_id, _), result in zip(calls, results, strict=True)
                  if not isinstance(result, Exception)]
        if queued:  # after the deliveries are in their queues (see the module docstring)
            await self.redis.sadd(whkeys.ACTIVE, *queued)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return sum(int(result) for result in results)

    async def claim(self, *, limit: int, per_subscription: int, lease_ms: int) -> tuple[int | None, list[Claim]]:
        """Lease up to ``limit`` due deliveries, at most ``per_subscription`` leased per subscription
        at any time across all workers. Returns (ms until the earliest delivery due at a
        subscription with room, None if none; the claims).

        One claim call per active subscription, in a random order so that none is always served
        last. When the room cannot cover every subscription's limit, a first round (taking
        nothing) asks each how many it has due, and the room is shared out in that order."""
        subs = list(await self.redis.smembers(whkeys.ACTIVE))
        random.shuffle(subs)
        if len(subs) * per_subscription <= limit:
            answers = await self._claim_each(dict.fromkeys(subs, per_subscription), per_subscription, lease_ms)
        else:
            answers = await self._claim_each(dict.fromkeys(subs, 0), per_subscription, lease_ms)
            asks, room = {}, limit
            for sub_id in subs:
                due = answers[sub_id].due if sub_id in answers else 0
                if due and room:
                    asks[sub_id] = min(due, room)
                    room -= asks[sub_id]
            answers |= await self._claim_each(asks, per_subscription, lease_ms)
        await self._forget([sub_id for sub_id, answer in answers.items() if answer.empty])
        waits = [answer.wait_ms for answer in answers.values() if answer.wait_ms is not None]
        return (min(waits) if waits else None), [claim for answer in answers.values() for claim in answer.claims]

    async def _claim_each(self, asks: dict[str, int], per_subscription: int, lease_ms: int) -> dict[str, _Answer]:
        """One claim call per subscription in ``asks`` (id -> most to take). A subscription whose
        call failed (its shard is down) is left out and logged; if every call failed, the first
        failure is raised."""
        calls: list[Call] = [(self._claim, sub_id, [lease_ms, take, per_subscription]) for sub_id, take in asks.items()]
        answers: dict[str, _Answer] = {}
        failures: list[Exception] = []
        for (_, sub_id, _), result in zip(calls, await self._call(calls), strict=True):
            if isinstance(result, Exception):
                failures.append(result)
                continue
            now, next_due, due, empty, lease, raw_doc, taken = result
            doc = orjson.loads(raw_doc) if taken else {}
            answers[sub_id] = _Answer(
                [Claim(Job.from_json(raw), int(lease), doc) for _id, raw in taken],
                max(0, int(next_due) - int(now)) if int(next_due) >= 0 else None, int(due), bool(empty))
        if failures and not answers:
            raise failures[0]
        if failures:
            log.warning("webhook queue: %d of %d subscription(s) could not be claimed from (%s)", len(failures),
                        len(calls), failures[0])
        return answers

    async def _forget(self, emptied: list[str]) -> None:
        """Take subscriptions found with nothing queued or leased out of the active set, then look
        again and put back those that got work in between."""
        if not emptied:
            return
        await self.redis.srem(whkeys.ACTIVE, *emptied)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for sub_id in emptied:
                    pipe.zcard(whkeys.queue(sub_id))
                    pipe.zcard(whkeys.leases(sub_id))
                counts = await execute(self.redis, pipe)
        except Exception:
            # Whether work arrived meanwhile is unknown (a shard down): they all go back, or a
            # delivery queued in between would wait for the next one queued for its subscription.
            # A subscription put back for nothing costs one claim call, which removes it again.
            with contextlib.suppress(Exception):
                await self.redis.sadd(whkeys.ACTIVE, *emptied)
            raise
        back = [sub_id for i, sub_id in enumerate(emptied) if counts[2 * i] or counts[2 * i + 1]]
        if back:
            await self.redis.sadd(whkeys.ACTIVE, *back)

    async def finish(self, attempts: list[Attempted], *, log_size: int = 200, disable_after_ms: int = 0,
                     disable_reason: str = "") -> list[str | Exception | None]:
        """Record attempts' outcomes, one call per attempt (see ``_FINISH``); ``release`` hands a
        delivery back untried. Returns for each attempt its subscription's state afterwards (None
        if it was deleted), or the exception that kept it from being recorded."""
        calls: list[Call] = []
        for done in attempts:
            job = done.claim.job
            retry_job = (Job(**{**asdict(job), "attempts": job.attempts + 1}).to_json()
                         if done.outcome == "retrying" else "")
            calls.append((self._finish, job.sub_id, [
                log_size, disable_after_ms, disable_reason, self.done_keep_ms, job.id, done.claim.lease,
                done.outcome, done.retry_ms, retry_job, orjson.dumps(done.log_entry or {}).decode(), done.error]))
        results = await self._call(calls)
        if any(not isinstance(result, Exception) and int(result[1]) for result in results):
            try:  # workers reload their subscriptions and queue nothing more for the disabled one
                await announce_change(self.redis)
            except Exception as exc:  # the next change of any subscription makes them reload
                log.warning("webhook queue: a subscription was disabled but workers could not be told (%s)", exc)
        return [result if isinstance(result, Exception) else (None if result[0] == "deleted" else result[0])
                for result in results]
