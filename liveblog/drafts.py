"""Drafts and scheduled entries: kept for editors only, outside every public path.

An unpublished entry lives in the blog's ``drafts`` hash (plus, when scheduled, its ``scheduled``
zset), never in the entries hash, the indexes or the change log, and its id (``d`` + random hex) is
not taken from the public id counter: no public response, page, feed, event or webhook can reveal it,
its id or how many there are. Writing a draft emits nothing. Publishing it is one write script
(``Store.publish_draft``) that takes the draft and writes the entry, its ``entry.created`` change and
its public id together; it does nothing when the draft has changed or is gone, so any number of
processes racing to publish one scheduled entry publish it once.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, cast

import orjson

from liveblog import keys, timefmt
from liveblog.model import Entry
from liveblog.store import (
    APPEND_REVISION,
    NotFound,
    PreconditionFailed,
    Store,
    ValidationError,
    dumps,
    entry_changes,
    fingerprint_of,
    new_entry,
    revision_of,
)

UNPUBLISHED = ("draft", "scheduled")

# KEYS: 1 drafts hash, 2 scheduled zset, 3 idempotency key, 4 revisions hash.
# ARGV: 1 draft id, 2 expected JSON ("" = must not exist), 3 new JSON ("" = delete),
#       4 due ms ("" = not scheduled), 5 idempotency TTL ("0" = none), 6 idempotency value,
#       7 revision JSON ("" = none).
_DRAFT_WRITE = APPEND_REVISION + """
if ARGV[5] ~= '0' then
  local prior = redis.call('GET', KEYS[3])
  if prior then return {'dup', prior} end
end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if cur then return {'exists', ''} end
elseif cur ~= ARGV[2] then
  return {'conflict', ''}
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  append_revision(KEYS[4], ARGV[1], ARGV[7])
end
if ARGV[4] == '' or ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
if ARGV[5] ~= '0' then redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[5]) end
return {'ok', ''}
"""


def is_draft_id(entry_id: str) -> bool:
    return entry_id.startswith("d")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def publish_at_of(value: Any) -> datetime:
    """A ``publish_at`` from a client: RFC 3339 with an offset, in the future."""
    if not isinstance(value, str):
        raise ValidationError("'publish_at' must be an RFC 3339 date-time such as 2026-05-01T18:30:00+02:00")
    try:
        moment = timefmt.parse_rfc3339(value)
    except ValueError as exc:
        raise ValidationError(f"'publish_at' is not an RFC 3339 date-time: {value[:60]!r}") from exc
    if moment.tzinfo is None:
        raise ValidationError("'publish_at' needs a time zone offset (Z or +02:00)")
    if moment <= timefmt.now():
        raise ValidationError("'publish_at' must be in the future")
    return moment


def unpublished_status(fields: dict[str, Any]) -> tuple[str, datetime | None] | None:
    """Pops ``status``/``publish_at`` from a new entry's fields: None for a published entry, else
    (``draft``, None) or (``scheduled``, when)."""
    status = fields.pop("status", None)
    publish_at = fields.pop("publish_at", None)
    if status not in (None, "published", *UNPUBLISHED):
        raise ValidationError("'status' must be 'published', 'draft' or 'scheduled'")
    if publish_at is not None:
        if status not in (None, "scheduled"):
            raise ValidationError("'publish_at' makes an entry 'scheduled'; leave 'status' out or send 'scheduled'")
        return "scheduled", publish_at_of(publish_at)
    if status == "scheduled":
        raise ValidationError("a 'scheduled' entry needs 'publish_at'")
    return (status, None) if status == "draft" else None


class Drafts:
    """Unpublished entries of all blogs (stateless, like the store it writes through)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._write_script = store.redis.register_script(_DRAFT_WRITE)

    async def _write(self, slug: str, draft_id: str, expected: str, entry: Entry | None, *,
                     idem_key: str | None = None, idem_value: str = "", by: str | None = None) -> list[str]:
        due = ""
        if entry is not None and entry["status"] == "scheduled":
            due = str(_ms(timefmt.parse_rfc3339(str(entry["publish_at"]))))
        result = await self._write_script(
            keys=[keys.drafts(slug), keys.scheduled(slug), keys.idempotency(slug, idem_key or "-"),
                  keys.revisions(slug)],
            args=[draft_id, expected, dumps(entry) if entry is not None else "", due,
                  self.store.idempotency_ttl if idem_key else 0, idem_value,
                  revision_of(entry, by) if entry is not None else ""])
        if result[0] == "ok" and due:
            # The global index of blogs to watch is another slot: written after the blog's own keys
            # (the scheduler removes a blog only after seeing its zset empty, then checks again).
            await self.redis.sadd(keys.SCHEDULED, slug)
        return [str(part) for part in result]

    async def create(self, slug: str, fields: dict[str, Any], status: str, publish_at: datetime | None, *,
                     idempotency_key: str | None = None, author_profile: dict[str, Any] | None = None,
                     by: str | None = None) -> tuple[Entry, bool]:
        fields = dict(fields)
        blog = await self.store.get_blog(slug)
        fingerprint = fingerprint_of({**fields, "status": status,
                                      "publish_at": timefmt.rfc3339(publish_at) if publish_at else None})
        entry = new_entry(slug, fields, timefmt.now(), author_profile, self.store.renderer(blog))
        draft_id = "d" + secrets.token_hex(8)
        entry["id"], entry["status"] = draft_id, status
        entry["publish_at"] = timefmt.rfc3339(publish_at) if publish_at else None
        result = await self._write(slug, draft_id, "", entry, idem_key=idempotency_key,
                                   idem_value=f"{draft_id}:{fingerprint}", by=by)
        if result[0] == "dup":
            prior_id, _, prior_fingerprint = result[1].partition(":")
            if prior_fingerprint != fingerprint:
                raise ValidationError("this Idempotency-Key was already used with a different request body")
            return await self.get(slug, prior_id), False
        return entry, True

    async def _current(self, slug: str, draft_id: str) -> tuple[str, Entry]:
        raw = await self.redis.hget(keys.drafts(slug), draft_id)
        if raw is None:
            await self.store.get_blog(slug)
            raise NotFound(f"no draft or scheduled entry '{draft_id}' in blog '{slug}'")
        return raw, orjson.loads(raw)

    async def get(self, slug: str, draft_id: str) -> Entry:
        return (await self._current(slug, draft_id))[1]

    async def list(self, slug: str, status: str) -> list[Entry]:
        """Drafts (newest first) or scheduled entries (soonest first)."""
        await self.store.get_blog(slug)
        found = [orjson.loads(raw) for raw in (await self.redis.hgetall(keys.drafts(slug))).values()]
        found = [entry for entry in found if entry["status"] == status]
        if status == "scheduled":
            return sorted(found, key=lambda entry: (entry["publish_at"], entry["id"]))
        return sorted(found, key=lambda entry: (entry["updated_at"], entry["id"]), reverse=True)

    async def update(self, slug: str, draft_id: str, fields: dict[str, Any], *,
                     if_versions: frozenset[int] | None = None, by: str | None = None) -> Entry:
        """Change a draft (a new version) without any public trace. ``status`` ``draft`` unschedules,
        ``publish_at`` (re)schedules; ``status`` ``published`` publishes it, with the other changes."""
        fields = dict(fields)
        status = fields.pop("status", None)
        publish_at = fields.pop("publish_at", None)
        if status not in (None, "published", *UNPUBLISHED):
            raise ValidationError("'status' must be 'published', 'draft' or 'scheduled'")
        when = publish_at_of(publish_at) if publish_at is not None else None
        if status == "scheduled" and when is None:
            raise ValidationError("a 'scheduled' entry needs 'publish_at'")
        changes = entry_changes(fields, self.store.renderer(await self.store.get_blog(slug)))
        for _ in range(10):
            raw, entry = await self._current(slug, draft_id)
            if if_versions is not None and entry["version"] not in if_versions:
                raise PreconditionFailed(f"the entry is at version {entry['version']}: someone changed it meanwhile",
                                         entry)
            if changes or status == "draft" or when is not None:
                entry.update(changes)  # type: ignore[typeddict-item]
                entry["version"] += 1
                entry["updated_at"] = timefmt.rfc3339(timefmt.now())
                if when is not None:
                    entry["status"], entry["publish_at"] = "scheduled", timefmt.rfc3339(when)
                elif status == "draft":
                    entry["status"], entry["publish_at"] = "draft", None
                new_raw = dumps(entry)
                if (await self._write(slug, draft_id, raw, entry, by=by))[0] != "ok":
                    continue
                raw = new_raw
            if status != "published":
                return entry
            published = await self._publish(slug, draft_id, raw, entry)
            if published is not None:
                return published
        raise ValidationError("the draft is being changed by someone else; try again")

    async def delete(self, slug: str, draft_id: str) -> None:
        for _ in range(10):
            raw, _entry = await self._current(slug, draft_id)
            if (await self._write(slug, draft_id, raw, None))[0] == "ok":
                return
        raise ValidationError("the draft is being changed by someone else; try again")

    async def _publish(self, slug: str, draft_id: str, raw: str, entry: Entry) -> Entry | None:
        stamp = timefmt.rfc3339(timefmt.now())
        # "id" first and empty: the write script puts the public id there.
        published = cast(Entry, {"id": "", **{k: v for k, v in entry.items() if k not in ("id", "publish_at")},
                                 "status": "published", "published_at": stamp, "updated_at": stamp})
        return await self.store.publish_draft(slug, draft_id, raw, published)

    async def publish_due(self, slug: str, draft_id: str, now: datetime) -> Entry | None:
        """Publish ``draft_id`` if it is scheduled and due by ``now``; None if it is not (any more)."""
        raw = await self.redis.hget(keys.drafts(slug), draft_id)
        if raw is None:
            return None
        entry = orjson.loads(raw)
        if entry["status"] != "scheduled" or timefmt.parse_rfc3339(entry["publish_at"]) > now:
            return None
        return await self._publish(slug, draft_id, raw, entry)
