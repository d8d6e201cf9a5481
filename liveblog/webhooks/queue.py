"""The delivery queue: one delivery per (change, subscription), scheduled and leased in Redis.

Per subscription: a ``q`` zset (delivery id -> due ms), a ``lease`` zset (delivery id -> lease expiry
ms) and a ``jobs`` hash (delivery id -> job JSON). All times come from the Redis clock (``TIME``),
so workers on machines with skewed clocks agree.

- A change becomes deliveries in the same script that acknowledges it in the blog stream's
  consumer group, so a crash leaves either the change pending (reclaimed and fanned out again) or
  the deliveries queued, never neither, and a change fanned out twice (after a reclaim race) is
  enqueued once because only the first ``XACK`` succeeds.
- Claiming moves a due delivery into ``lease`` with an expiry longer than one attempt can take.
  A worker that dies holding leases loses nothing: the next claim by anyone puts expired leases back.
- The per-subscription limit is counted on the shared ``lease`` zset, so it holds across all
  workers: a slow partner occupies at most that many attempts anywhere, and its backlog waits in
  its own queue instead of in front of other partners' deliveries.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from liveblog import streamids, timefmt
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.signing import message_id

_NOW = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] active set, KEYS[2] the blog stream (mode 'ack' only)
# ARGV[1] mode ('ack': acknowledge the change first, never touch a known delivery; 'replay': reset
# queued deliveries to attempt 1), ARGV[2] group, ARGV[3] stream id, then triples (sub, id, job JSON)
_ENQUEUE = _NOW + """
if ARGV[1] == 'ack' and redis.call('XACK', KEYS[2], ARGV[2], ARGV[3]) == 0 then return -1 end
local added = 0
for i = 4, #ARGV, 3 do
  local p = 'lb:wh:{' .. ARGV[i] .. '}:'
  local id = ARGV[i + 1]
  if redis.call('EXISTS', p .. 'sub') == 1 and not redis.call('ZSCORE', p .. 'lease', id)
     and (ARGV[1] == 'replay' or redis.call('HEXISTS', p .. 'jobs', id) == 0) then
    redis.call('HSET', p .. 'jobs', id, ARGV[i + 2])
    redis.call('ZADD', p .. 'q', now, id)
    redis.call('SADD', KEYS[1], ARGV[i])
    added = added + 1
  end
end
return added
"""

# KEYS[1] active set. ARGV[1] lease ms, ARGV[2] most deliveries to take, ARGV[3] per-subscription
# limit, ARGV[4] rotation (where to start in the set, so no subscription is always served last).
# Returns {now, earliest due time among subscriptions with room (-1: none), {sub, id, job, lease, doc}...}
_CLAIM = _NOW + """
local lease_ms, room, per_sub = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local subs = redis.call('SMEMBERS', KEYS[1])
local taken, next_due = {}, -1
for k = 0, #subs - 1 do
  local sub = subs[(k + tonumber(ARGV[4])) % #subs + 1]
  local p = 'lb:wh:{' .. sub .. '}:'
  local q, lease = p .. 'q', p .. 'lease'
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', lease, '-inf', now)) do
    redis.call('ZREM', lease, id)
    redis.call('ZADD', q, now, id)
  end
  local state = redis.call('HGET', p .. 'sub', 'state')
  if not state then
    redis.call('DEL', q, lease, p .. 'jobs')
  elseif state == 'active' then
    local free = per_sub - redis.call('ZCARD', lease)
    if free > 0 and room > 0 then
      local doc = redis.call('HGET', p .. 'sub', 'doc')
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, math.min(free, room))) do
        redis.call('ZREM', q, id)
        local job = redis.call('HGET', p .. 'jobs', id)
        if job then
          redis.call('ZADD', lease, now + lease_ms, id)
          table.insert(taken, {sub, id, job, tostring(now + lease_ms), doc})
          room = room - 1
          free = free - 1
        end
      end
    end
    if free > 0 then
      local first = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
      if first[2] and (next_due < 0 or tonumber(first[2]) < next_due) then next_due = tonumber(first[2]) end
    end
  end
  if redis.call('ZCARD', q) == 0 and redis.call('ZCARD', lease) == 0 then redis.call('SREM', KEYS[1], sub) end
end
return {now, next_due, taken}
"""

# KEYS[1] version counter. ARGV: 1 log size, 2 disable after ms, 3 reason given when disabling for
# lack of success, then per attempt 8 values: sub, delivery id, lease held (ms), outcome
# (delivered|retrying|failed|gone|release), retry delay ms, job JSON for the retry, log entry JSON,
# last error. Returns each attempt's subscription state afterwards ('deleted' if it is gone).
# Queue changes happen only while the caller still holds the lease; the attempt is recorded anyway.
_FINISH = _NOW + """
local log_size, disable_after = tonumber(ARGV[1]), tonumber(ARGV[2])
local states = {}
for i = 4, #ARGV, 8 do
  local p = 'lb:wh:{' .. ARGV[i] .. '}:'
  local sub, id, outcome = p .. 'sub', ARGV[i + 1], ARGV[i + 3]
  if redis.call('EXISTS', sub) == 0 then
    table.insert(states, 'deleted')
  else
    if tonumber(redis.call('ZSCORE', p .. 'lease', id)) == tonumber(ARGV[i + 2]) then
      redis.call('ZREM', p .. 'lease', id)
      if outcome == 'retrying' then
        redis.call('HSET', p .. 'jobs', id, ARGV[i + 5])
        redis.call('ZADD', p .. 'q', now + tonumber(ARGV[i + 4]), id)
      elseif outcome == 'release' then
        redis.call('ZADD', p .. 'q', now, id)
      else
        redis.call('HDEL', p .. 'jobs', id)
      end
    end
    if outcome == 'delivered' then
      redis.call('HSET', sub, 'failures', 0, 'last_success_at', now)
      redis.call('HDEL', sub, 'failing_since')
      redis.call('HINCRBY', sub, 'delivered', 1)
    elseif outcome ~= 'release' then
      redis.call('HINCRBY', sub, 'failures', 1)
      redis.call('HSET', sub, 'last_failure_at', now, 'last_error', ARGV[i + 7])
      redis.call('HSETNX', sub, 'failing_since', now)
      if outcome ~= 'retrying' then redis.call('HINCRBY', sub, 'failed', 1) end
      local reason = false
      if outcome == 'gone' then
        reason = 'the receiver answered 410 Gone'
      elseif now - tonumber(redis.call('HGET', sub, 'failing_since')) >= disable_after then
        reason = ARGV[3]
      end
      if reason and redis.call('HGET', sub, 'state') == 'active' then
        redis.call('HSET', sub, 'state', 'disabled', 'disabled_at', now, 'disabled_reason', reason)
        redis.call('INCR', KEYS[1])
      end
    end
    if outcome ~= 'release' then
      redis.call('LPUSH', p .. 'log', ARGV[i + 6])
      redis.call('LTRIM', p .. 'log', 0, log_size - 1)
    end
    table.insert(states, redis.call('HGET', sub, 'state'))
  end
end
return states
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


class DeliveryQueue:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._enqueue = redis.register_script(_ENQUEUE)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)

    @staticmethod
    def _enqueue_call(jobs: list[Job], ack: tuple[str, str] | None) -> tuple[list[str], list[Any]]:
        args: list[Any] = ["ack" if ack else "replay", whkeys.GROUP, ack[1] if ack else ""]
        for job in jobs:
            args += [job.sub_id, job.id, job.to_json()]
        return ([whkeys.ACTIVE, ack[0]] if ack else [whkeys.ACTIVE]), args

    async def enqueue(self, jobs: list[Job]) -> int:
        """Queue ``jobs`` (a replay): queued deliveries restart at attempt 1, leased ones are left alone.
        Returns how many were queued."""
        script_keys, args = self._enqueue_call(jobs, None)
        return int(await self._enqueue(keys=script_keys, args=args))

    def enqueue_in(self, pipe: Pipeline, jobs: list[Job], *, ack: tuple[str, str]) -> None:
        """Add to ``pipe``: queue ``jobs`` and acknowledge the change ``ack=(stream, event_id)`` in one
        script; nothing is queued if the change was already acknowledged, nor any delivery already
        known. ``execute`` gives the count queued (-1: already acknowledged).

        A bare ``EVALSHA``, without the ``SCRIPT EXISTS`` round trip redis-py adds to every pipeline
        that runs a script: after Redis lost its scripts ``execute`` raises ``NoScriptError``, and
        the caller calls :meth:`load` and sends the pipeline again (each acknowledgement runs once)."""
        script_keys, args = self._enqueue_call(jobs, ack)
        pipe.evalsha(self._enqueue.sha, len(script_keys), *script_keys, *args)

    async def load(self) -> None:
        """Load the scripts into Redis (again: a restart empties its script cache)."""
        for script in (self._enqueue, self._claim, self._finish):
            script.sha = await self.redis.script_load(script.script)

    async def claim(self, *, limit: int, per_subscription: int, lease_ms: int) -> tuple[int, int | None, list[Claim]]:
        """Lease up to ``limit`` due deliveries. Returns (Redis time ms, earliest due ms or None, claims)."""
        now, next_due, taken = await self._claim(
            keys=[whkeys.ACTIVE], args=[lease_ms, limit, per_subscription, random.randrange(1 << 30)])
        claims = [Claim(Job.from_json(raw), int(lease), orjson.loads(doc)) for _sub, _id, raw, lease, doc in taken]
        return int(now), (int(next_due) if int(next_due) >= 0 else None), claims

    async def finish(self, attempts: list[Attempted], *, log_size: int = 200, disable_after_ms: int = 0,
                     disable_reason: str = "") -> list[str | None]:
        """Record attempts' outcomes in one script call (see ``_FINISH``); ``release`` hands a delivery
        back untried. Returns each subscription's state afterwards (None if it was deleted)."""
        args: list[Any] = [log_size, disable_after_ms, disable_reason]
        for done in attempts:
            job = done.claim.job
            retry_job = (Job(**{**asdict(job), "attempts": job.attempts + 1}).to_json()
                         if done.outcome == "retrying" else "")
            args += [job.sub_id, job.id, done.claim.lease, done.outcome, done.retry_ms, retry_job,
                     orjson.dumps(done.log_entry or {}).decode(), done.error]
        states = await self._finish(keys=[whkeys.VERSION], args=args)
        return [None if state == "deleted" else state for state in states]
