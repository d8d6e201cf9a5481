"""Webhook subscriptions: validation, storage and presentation (the admin side), and the snapshot
of subscriptions the dispatcher matches changes against.

A subscription is one hash (``lb:wh:{id}:sub``): ``doc`` is its configuration as JSON (secret
included; it is never shown again after creation), the other fields are its state and health,
updated by the workers' delivery script. Every change to configuration or state gives
``lb:wh:version`` a new value so workers reload their snapshot.

The subscription's keys, the index ``lb:wh:subs`` and the version live in different slots of a Redis
Cluster, so they are not changed in one transaction but in an order that is safe at every step:
the version is changed last (a worker reloading sees the change complete), and a deletion removes the
subscription's own keys first (the queue scripts then skip and clean it up at once).
"""

from __future__ import annotations

import builtins
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from liveblog import timefmt
from liveblog.redisconn import execute
from liveblog.store import NotFound, ValidationError, valid_slug
from liveblog.webhooks import keys as whkeys
from liveblog.webhooks.signing import new_secret
from liveblog.webhooks.ssrf import AddressPolicy, Refused, check_url

EVENT_TYPES = ("entry.created", "entry.updated", "entry.deleted", "blog.updated")
STATES = ("active", "disabled")
MAX_BLOGS = 1000
MAX_DESCRIPTION = 500
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    blogs: tuple[str, ...]
    events: tuple[str, ...]
    description: str | None
    secret: str
    created_ms: int

    @classmethod
    def from_doc(cls, raw: str | bytes) -> Subscription:
        doc = orjson.loads(raw)
        return cls(doc["id"], doc["url"], tuple(doc["blogs"]), tuple(doc["events"]), doc.get("description"),
                   doc["secret"], int(doc["created_ms"]))

    def to_doc(self) -> str:
        return orjson.dumps({"id": self.id, "url": self.url, "blogs": self.blogs, "events": self.events,
                             "description": self.description, "secret": self.secret,
                             "created_ms": self.created_ms}).decode()

    def follows(self, slug: str) -> bool:
        return "*" in self.blogs or slug in self.blogs

    def wants(self, slug: str, event_type: str, event_ms: int) -> bool:
        """Whether a change goes to this subscription. Changes older than the subscription are not
        sent (only a replay sends them), which also makes reading a blog's history harmless."""
        return event_ms >= self.created_ms and event_type in self.events and self.follows(slug)


def _iso(ms: str | None) -> str | None:
    return timefmt.rfc3339(datetime.fromtimestamp(int(ms) / 1000, UTC)) if ms else None


def present(sub: Subscription, health: dict[str, str], pending: int) -> dict[str, Any]:
    """The API view: configuration without the secret, state and failure counts."""
    return {
        "id": sub.id,
        "url": sub.url,
        "blogs": list(sub.blogs),
        "events": list(sub.events),
        "description": sub.description,
        "created_at": _iso(str(sub.created_ms)),
        "state": health.get("state", "active"),
        "disabled_at": _iso(health.get("disabled_at")),
        "disabled_reason": health.get("disabled_reason"),
        "consecutive_failures": int(health.get("failures") or 0),
        "failing_since": _iso(health.get("failing_since")),
        "last_success_at": _iso(health.get("last_success_at")),
        "last_failure_at": _iso(health.get("last_failure_at")),
        "last_error": health.get("last_error"),
        "delivered_total": int(health.get("delivered") or 0),
        "failed_total": int(health.get("failed") or 0),
        "pending": pending,
    }


def _reject_unknown(fields: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}")


def _blogs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_BLOGS:
        raise ValidationError(f"'blogs' must be a list of 1-{MAX_BLOGS} blog slugs, or [\"*\"] for every blog")
    if "*" in value:
        if value != ["*"]:
            raise ValidationError("'blogs': \"*\" (every blog) cannot be combined with slugs")
        return ("*",)
    for slug in value:
        if not valid_slug(slug):
            raise ValidationError(f"'blogs' contains something that is not a blog slug: {slug!r}")
    return tuple(dict.fromkeys(value))


def _events(value: Any) -> tuple[str, ...]:
    if value is None:
        return EVENT_TYPES
    if not isinstance(value, list) or not value or any(e not in EVENT_TYPES for e in value):
        raise ValidationError(f"'events' must be a non-empty list of: {', '.join(EVENT_TYPES)}")
    return tuple(dict.fromkeys(value))


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise ValidationError(f"'description' must be a string of at most {MAX_DESCRIPTION} characters")
    return value.strip() or None


class Subscriptions:
    """Admin operations on subscriptions (any process may run them; Redis holds everything)."""

    def __init__(self, redis: aioredis.Redis, policy: AddressPolicy) -> None:
        self.redis = redis
        self.policy = policy

    async def _url(self, value: Any) -> str:
        try:
            return await check_url(value, self.policy)
        except Refused as exc:
            raise ValidationError(str(exc)) from exc

    async def _now_ms(self) -> int:
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create and return the subscription, with its secret (the only time it is shown)."""
        _reject_unknown(fields, {"url", "blogs", "events", "description"})
        if "url" not in fields or "blogs" not in fields:
            raise ValidationError("'url' and 'blogs' are required")
        blogs, events, description = _blogs(fields["blogs"]), _events(fields.get("events")), \
            _description(fields.get("description"))
        url = await self._url(fields["url"])
        sub = Subscription(f"wh_{secrets.token_hex(10)}", url, blogs, events, description, new_secret(),
                           await self._now_ms())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(whkeys.sub(sub.id), mapping={"doc": sub.to_doc(), "state": "active", "failures": 0})
            pipe.zadd(whkeys.SUBS, {sub.id: sub.created_ms})
            await execute(self.redis, pipe)
        await announce_change(self.redis)
        return {**present(sub, {"state": "active"}, 0), "secret": sub.secret}

    async def load(self, sub_id: str) -> tuple[Subscription, dict[str, str]]:
        health = await self.redis.hgetall(whkeys.sub(sub_id)) if set(sub_id) <= _ID_CHARS else {}
        if not health.get("doc"):
            raise NotFound(f"no webhook subscription '{sub_id}'")
        return Subscription.from_doc(health.pop("doc")), health

    async def _pending(self, sub_ids: list[str]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for sub_id in sub_ids:
                pipe.zcard(whkeys.queue(sub_id))
                pipe.zcard(whkeys.leases(sub_id))
            counts = await execute(self.redis, pipe)
        return [counts[i] + counts[i + 1] for i in range(0, len(counts), 2)]

    async def get(self, sub_id: str) -> dict[str, Any]:
        sub, health = await self.load(sub_id)
        return present(sub, health, (await self._pending([sub_id]))[0])

    async def all(self) -> list[tuple[Subscription, dict[str, str]]]:
        ids = await self.redis.zrange(whkeys.SUBS, 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for sub_id in ids:
                pipe.hgetall(whkeys.sub(sub_id))
            hashes = await execute(self.redis, pipe)
        return [(Subscription.from_doc(h.pop("doc")), h) for h in hashes if h.get("doc")]

    async def list(self) -> list[dict[str, Any]]:
        subs = await self.all()
        pending = await self._pending([sub.id for sub, _ in subs])
        return [present(sub, health, count) for (sub, health), count in zip(subs, pending, strict=True)]

    async def update(self, sub_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Change configuration and/or ``state``. Setting ``state: active`` re-enables a disabled
        subscription with a clean failure record; its queued deliveries resume."""
        _reject_unknown(fields, {"url", "blogs", "events", "description", "state"})
        if not fields:
            raise ValidationError("nothing to change: send url, blogs, events, description or state")
        sub, health = await self.load(sub_id)
        state = fields.get("state", health.get("state"))
        if state not in STATES:
            raise ValidationError("'state' must be 'active' or 'disabled'")
        changed = Subscription(
            sub.id,
            await self._url(fields["url"]) if "url" in fields else sub.url,
            _blogs(fields["blogs"]) if "blogs" in fields else sub.blogs,
            _events(fields["events"]) if "events" in fields else sub.events,
            _description(fields["description"]) if "description" in fields else sub.description,
            sub.secret,
            sub.created_ms,
        )
        async with self.redis.pipeline(transaction=True) as pipe:  # one key: one slot
            pipe.hset(whkeys.sub(sub_id), "doc", changed.to_doc())
            if state != health.get("state"):
                pipe.hset(whkeys.sub(sub_id), "state", state)
                if state == "active":
                    pipe.hset(whkeys.sub(sub_id), "failures", 0)
                    pipe.hdel(whkeys.sub(sub_id), "failing_since", "disabled_at", "disabled_reason")
                else:
                    pipe.hset(whkeys.sub(sub_id), mapping={"disabled_at": await self._now_ms(),
                                                           "disabled_reason": "disabled by an admin"})
            await execute(self.redis, pipe)
        await announce_change(self.redis)
        return await self.get(sub_id)

    async def delete(self, sub_id: str) -> None:
        await self.load(sub_id)
        await self.redis.delete(*whkeys.all_of(sub_id))  # first: no claim or queueing uses it after this
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(whkeys.SUBS, sub_id)
            pipe.srem(whkeys.ACTIVE, sub_id)
            await execute(self.redis, pipe)
        await announce_change(self.redis)

    async def deliveries(self, sub_id: str, limit: int) -> builtins.list[dict[str, Any]]:
        await self.load(sub_id)
        return [orjson.loads(raw) for raw in await self.redis.lrange(whkeys.log(sub_id), 0, limit - 1)]


async def announce_change(redis: aioredis.Redis) -> None:
    """Tell the workers that the subscriptions changed: ``lb:wh:version`` gets a new random value.

    Random, not a counter: an emptied store (FLUSHALL) would start a counter again at 1, the very
    value a worker may hold from before, and that worker would go on matching changes against the
    subscriptions that were wiped (and never see the ones created after)."""
    await redis.set(whkeys.VERSION, secrets.token_hex(8))


class Snapshot:
    """The dispatcher's view of the active subscriptions, reloaded when ``lb:wh:version`` changes.

    Read after the changes it is matched against, so a subscription created before a change was
    written is always in it.
    """

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions = subscriptions
        self.version: str | None = None
        self.active: list[Subscription] = []

    async def current(self) -> list[Subscription]:
        version = await self.subscriptions.redis.get(whkeys.VERSION) or "0"
        if version != self.version:
            subs = await self.subscriptions.all()
            self.active = [sub for sub, health in subs if health.get("state") == "active"]
            self.version = version
        return self.active
