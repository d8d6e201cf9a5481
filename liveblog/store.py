"""The store: blogs and entries in Redis, every change written atomically with its event.

Each write is one Lua script call that (1) checks the record's current state (compare-and-set),
(2) writes the new current state, (3) appends the change to the blog's stream and (4) trims the
stream. A reader can therefore never see an entry's state without its event, or the reverse.
Trimming the stream loses only history: the current state lives in the ``entries`` hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from liveblog import keys, timefmt
from liveblog.changelog import ChangeLog, RedisChangeLog
from liveblog.clusterwait import script_then_wait
from liveblog.model import Blog, Entry
from liveblog.present import EDITOR_ONLY
from liveblog.render import MediaLookup, Rendered, plain_text, render, xml_chars

# \A and \Z, not ^ and $: "$" also matches before a final newline, and "ab\n" is no slug.
SLUG_RE = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z")
# Public ids are digits; drafts (drafts.py) have ids of their own: "d" + 16 hex digits.
ENTRY_ID_RE = re.compile(r"\A(?:[0-9]{1,19}|d[0-9a-f]{16})\Z")
LIMITS = {"title": 300, "description": 2000, "author": 120, "body": 50_000}
STATUSES = ("live", "ended")
LANGUAGES = ("it", "en")
DEFAULT_TIMEZONE = "Europe/Rome"
# Presentation fields that versions before presentation-at-read-time stored in entries; dropped on load.
_PRESENTED = ("url", "time_label", "updated_label")

# KEYS: 1 hash, 2 order zset, 3 stream, 4 trimmed marker, 5 idempotency key, 6 pinned zset,
#       7 change counter (each change carries the next number as field `n`: a gap reveals a rollback),
#       8 deleted ids (a set: a deleted update's page answers 410 Gone, not 404), 9 entry id counter
# ARGV: 1 field ("" = a new entry: take the next id from KEYS[9] and put it wherever ARGV 3, 6 and 9
#       hold the byte \1), 2 expected ("" = must not exist, "*" = any), 3 new state ("" = delete),
#       4 order score ("" = no ordering), 5 event type, 6 event data, 7 stream cap,
#       8 idempotency TTL ("0" = none), 9 idempotency value,
#       10 pinned ("1", "0", or "" for records that cannot be pinned), 11 pinned score
# The id is taken only once the write is certain, so refused posts and replays use none up.
#       12 draft id ("" = none; else this write publishes that draft, see drafts.py), 13 the draft's
#       expected JSON (anything else: 'gone', nothing written, no id used), 14 revision JSON ("" = none)
# KEYS (cont.): 10 drafts hash, 11 scheduled zset, 12 revisions hash (entry id -> JSON array of versions)
# ARGV (cont.): 15 sharded pub/sub channel to publish the change number on ("" = none: a single Redis,
#       whose readers block in XREAD; on a Redis Cluster it is the blog's own ``changed`` channel, in
#       the blog's slot, which wakes the readers there, see clusterlog.py; SPUBLISH needs Redis 7)
# Lua helper shared with drafts.py: append one version's JSON to the entry's array of revisions.
APPEND_REVISION = """
local function append_revision(key, field, rev)
  if rev == '' then return end
  local revs = redis.call('HGET', key, field)
  if revs then revs = string.sub(revs, 1, -2) .. ',' .. rev .. ']' else revs = '[' .. rev .. ']' end
  redis.call('HSET', key, field, revs)
end
"""
_COMMIT = APPEND_REVISION + """
if ARGV[12] ~= '' then
  if redis.call('HGET', KEYS[10], ARGV[12]) ~= ARGV[13] then return {'gone', ''} end
  redis.call('HDEL', KEYS[10], ARGV[12])
  redis.call('ZREM', KEYS[11], ARGV[12])
end
if ARGV[8] ~= '0' then
  local prior = redis.call('GET', KEYS[5])
  if prior then return {'dup', prior} end
end
local field, state, data, idem = ARGV[1], ARGV[3], ARGV[6], ARGV[9]
if field == '' then
  field = tostring(redis.call('INCR', KEYS[9]))
  state = (string.gsub(state, '\\1', field))
  data = (string.gsub(data, '\\1', field))
  idem = (string.gsub(idem, '\\1', field))
end
local cur = redis.call('HGET', KEYS[1], field)
if ARGV[2] == '' then
  if cur then return {'exists', cur} end
elseif ARGV[2] ~= '*' then
  if cur ~= ARGV[2] then return {'conflict', cur or ''} end
end
if ARGV[12] ~= '' then
  local revs = redis.call('HGET', KEYS[12], ARGV[12])
  if revs then
    redis.call('HSET', KEYS[12], field, revs)
    redis.call('HDEL', KEYS[12], ARGV[12])
  end
end
if state == '' then
  redis.call('HDEL', KEYS[12], field)
  redis.call('HDEL', KEYS[1], field)
  redis.call('SADD', KEYS[8], field)
  if ARGV[4] ~= '' then redis.call('ZREM', KEYS[2], field) end
else
  redis.call('HSET', KEYS[1], field, state)
  append_revision(KEYS[12], field, ARGV[14])
  if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], ARGV[4], field) end
end
if ARGV[10] == '1' and state ~= '' then
  redis.call('ZADD', KEYS[6], ARGV[11], field)
elseif ARGV[10] ~= '' then
  redis.call('ZREM', KEYS[6], field)
end
local n = redis.call('INCR', KEYS[7])
local sid = redis.call('XADD', KEYS[3], '*', 'type', ARGV[5], 'data', data, 'n', n)
if ARGV[15] ~= '' then redis.call('SPUBLISH', ARGV[15], n) end
local cap = tonumber(ARGV[7])
local len = redis.call('XLEN', KEYS[3])
if len > cap + math.max(1, math.floor(cap / 10)) then
  local old = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', len - cap + 1)
  redis.call('SET', KEYS[4], old[#old - 1][1])
  redis.call('XTRIM', KEYS[3], 'MINID', old[#old][1])
end
if ARGV[8] ~= '0' then redis.call('SET', KEYS[5], idem, 'EX', ARGV[8]) end
return {'ok', sid, field}
"""

# A consistent snapshot for a live page, read in one step so no write falls between its parts.
# KEYS: 1 stream, 2 blog hash, 3 pinned zset, 4 order zset, 5 entries hash.
# ARGV: 1 how many unpinned entries are wanted (as many more newest are read as there are pinned ones).
# Returns {newest change ID or '0-0', blog doc or false, pinned entries, newest entries}.
_SNAPSHOT = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local doc = redis.call('HGET', KEYS[2], 'doc')
local function states(ids)
  if #ids == 0 then return {} end
  return redis.call('HMGET', KEYS[5], unpack(ids))
end
local pinned = redis.call('ZREVRANGE', KEYS[3], 0, -1)
local ids = redis.call('ZREVRANGE', KEYS[4], 0, tonumber(ARGV[1]) + #pinned - 1)
return {newest[1] and newest[1][1] or '0-0', doc, states(pinned), states(ids)}
"""

# Where a new entry's id goes before the write script has taken it: orjson escapes every control
# character, so this byte appears in a document only where _with_id_slot puts it.
_ID_SLOT = "\x01"


class StoreError(Exception):
    """Base of the errors the API turns into problem+json responses."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationError(StoreError):
    status = 422
    title = "Invalid input"


class NotFound(StoreError):
    status = 404
    title = "Not found"


class Conflict(StoreError):
    status = 409
    title = "Conflict"


class NotDurable(StoreError):
    """The change was made on the primary, but fewer replicas than required confirmed it in time: it
    would be lost if the primary failed now. It is not undone (other readers may have seen it; the
    idempotency record is part of it), so a retry with the same Idempotency-Key answers with it
    instead of making it again."""

    status = 503
    title = "Service Unavailable"


class PreconditionFailed(StoreError):
    """``If-Match`` named another version than the entry's current one; ``current`` is that entry."""

    status = 412
    title = "Precondition Failed"

    def __init__(self, detail: str, current: Entry) -> None:
        super().__init__(detail)
        self.current = current


@dataclass(frozen=True)
class Snapshot:
    """A blog as of one change (``after``): what a page renders, then resumes its stream from."""

    after: str
    blog: Blog
    pinned: list[Entry]  # newest first
    newest: list[Entry]  # newest first, pinned ones included


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _text(fields: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise ValidationError(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"'{name}' must be a string")
    if len(value) > LIMITS[name]:
        raise ValidationError(f"'{name}' is longer than {LIMITS[name]} characters")
    cleaned = plain_text(xml_chars(value))
    if required and not cleaned:
        raise ValidationError(f"'{name}' must not be empty")
    return cleaned or None


def _flag(fields: dict[str, Any], name: str) -> bool | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValidationError(f"'{name}' must be true or false")
    return value


def without_source(entry: Entry) -> dict[str, Any]:
    """An entry's facts for its change in the stream: no source, so that nothing reading the stream
    (readers, partners, replays) can ever get it, whatever presents it."""
    return {name: value for name, value in entry.items() if name not in EDITOR_ONLY}


def _source(fields: dict[str, Any], *, required: bool) -> str | None:
    """The body exactly as written (Markdown or HTML), after checking it."""
    if "body" not in fields and not required:
        return None
    body = fields.get("body")
    if not isinstance(body, str):
        raise ValidationError("'body' is required" if body is None else "'body' must be a string")
    if len(body) > LIMITS["body"]:
        raise ValidationError(f"'body' is longer than {LIMITS['body']} characters")
    body = xml_chars(body)  # what XML 1.0 forbids would break the Atom feed
    if not body.strip():
        raise ValidationError("'body' must not be empty")
    return body


def _with_id_slot(text: str) -> str:
    """``text`` (a new entry's JSON, with ``"id":""`` first) with the id left for the write script."""
    head = '{"id":""'
    assert text.startswith(head)
    return '{"id":"' + _ID_SLOT + '"' + text[len(head):]


def _reject_unknown(fields: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}")


def valid_slug(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and SLUG_RE.fullmatch(value) is not None


def valid_entry_id(value: Any) -> bool:
    return isinstance(value, str) and ENTRY_ID_RE.fullmatch(value) is not None


def fingerprint_of(fields: dict[str, Any]) -> str:
    """What an Idempotency-Key is stored with: a replay must send the same fields."""
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def new_entry(slug: str, fields: dict[str, Any], moment: datetime, author_profile: dict[str, Any] | None,
              renderer: Callable[[str], Rendered]) -> Entry:
    """A new entry's state from checked ``fields``, with ``id`` "" first (the write script takes it).
    ``renderer`` is the blog's (``Store.renderer``)."""
    body = _source(fields, required=True) or ""
    rendered = renderer(body)
    stamp = timefmt.rfc3339(moment)
    entry: Entry = {
        "id": "",
        "blog": slug,
        "title": _text(fields, "title"),
        "body": body,
        "body_html": rendered.html,
        "image": rendered.image,
        "author": _text(fields, "author"),
        "published_at": stamp,
        "updated_at": stamp,
        "key_event": bool(_flag(fields, "key_event")),
        "pinned": bool(_flag(fields, "pinned")),
        "version": 1,
    }
    if author_profile is not None:
        entry["author"], entry["author_profile"] = author_profile["name"], author_profile
    return entry


def entry_changes(fields: dict[str, Any], renderer: Callable[[str], Rendered]) -> dict[str, Any]:
    """The checked changes a PATCH of an entry asks for (``renderer``: the blog's, see ``Store.renderer``)."""
    _reject_unknown(fields, {"body", "title", "author", "key_event", "pinned"})
    body = _source(fields, required=False)
    changes: dict[str, Any] = {}
    if body is not None:
        rendered = renderer(body)
        changes["body"], changes["body_html"], changes["image"] = body, rendered.html, rendered.image
    for name in ("title", "author"):
        if name in fields:
            changes[name] = _text(fields, name)
    for name in ("key_event", "pinned"):
        if name in fields:
            if fields[name] is None:
                raise ValidationError(f"'{name}' must be true or false")
            changes[name] = _flag(fields, name)
    return changes


def revision_of(entry: Entry, by: str | None) -> str:
    """One version of an entry as its revisions keep it (JSON): what was written, by whom, when."""
    return dumps({"version": entry["version"], "body": entry.get("body", entry["body_html"]),
                  "title": entry["title"], "key_event": entry["key_event"], "pinned": entry["pinned"],
                  "updated_at": timefmt.rfc3339(timefmt.now()), "by": by or entry["author"]})


class Store:
    """Blogs and entries. Stateless: any number of processes may use one Redis at once."""

    def __init__(self, redis: aioredis.Redis, *, stream_maxlen: int = 10_000,
                 idempotency_ttl: int = 24 * 3600, media: MediaLookup | None = None, min_replicas: int = 0,
                 wait_timeout_ms: int = 1000) -> None:
        self.redis = redis
        self.media = media  # stored photos, for the bodies' responsive images
        self.min_replicas = min_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._timezones: dict[str, str] = {}
        self.stream_maxlen = stream_maxlen
        self.idempotency_ttl = idempotency_ttl
        # On a Redis Cluster no reader can block on all streams at once (CROSSSLOT), so each change is
        # also announced on its blog's sharded channel (clusterlog.py).
        self.announces = isinstance(redis, RedisCluster)
        self._commit = redis.register_script(_COMMIT)
        self._snapshot = redis.register_script(_SNAPSHOT)
        self.changes: ChangeLog = RedisChangeLog(redis)  # reads of the blogs' change logs

    def renderer(self, blog: Blog) -> Callable[[str], Rendered]:
        """How bodies of ``blog`` are rendered (its language, the stored photos)."""
        return lambda body: render(body, self.media, blog["language"])

    # ---- low level -------------------------------------------------------------------------

    async def _write(self, slug: str, *, field: str, expected: str, state: str, score: str, event: str,
                     data: str, hash_key: str, idem_key: str | None = None, idem_value: str = "",
                     entry: Entry | None = None, draft: tuple[str, str] = ("", ""),
                     revision: str = "") -> list[str]:
        """One atomic change; ``entry`` (an entry's new or last state) keeps the pinned index true.
        ``draft`` (its id and expected JSON) makes the change that draft's publication (see drafts.py);
        ``revision`` (JSON) is kept as the new version of the entry."""
        pinned, pinned_score = "", ""
        if entry is not None:
            pinned = "1" if entry["pinned"] else "0"
            pinned_score = str(int(timefmt.parse_rfc3339(entry["published_at"]).timestamp() * 1000))
        keys_ = [hash_key, keys.order(slug), keys.stream(slug), keys.trimmed(slug),
                 keys.idempotency(slug, idem_key or "-"), keys.pinned(slug), keys.changes(slug),
                 keys.deleted(slug), keys.seq(slug)]
        args = [field, expected, state, score, event, data, self.stream_maxlen,
                self.idempotency_ttl if idem_key else 0, idem_value, pinned, pinned_score]
        all_keys = [*keys_, keys.drafts(slug), keys.scheduled(slug), keys.revisions(slug)]
        all_args = [*args, *draft, revision, keys.changed(slug) if self.announces else ""]
        if not self.min_replicas:
            return [str(part) for part in await self._commit(keys=all_keys, args=all_args)]
        if isinstance(self.redis, RedisCluster):
            result, replicas = await script_then_wait(self.redis, self._commit, all_keys, all_args,
                                                      self.min_replicas, self.wait_timeout_ms)
        else:
            # WAIT counts the replicas that have this connection's writes: same connection, hence a pipeline.
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._commit(keys=all_keys, args=all_args, client=pipe)
                pipe.execute_command("WAIT", self.min_replicas, self.wait_timeout_ms)
                result, replicas = await pipe.execute()
        if replicas < self.min_replicas:
            raise NotDurable(f"the change was made but only {replicas} of the {self.min_replicas} required "
                             f"replicas confirmed it within {self.wait_timeout_ms} ms, so it is not known "
                             "durable; retry with the same Idempotency-Key to get its result without "
                             "making it twice")
        return [str(part) for part in result]

    # ---- blogs -----------------------------------------------------------------------------

    async def create_blog(self, fields: dict[str, Any], *, related: list[dict[str, str]] | None = None
                          ) -> Blog:
        """Create a blog. ``related`` (links to related articles) is set by importers, not the API."""
        _reject_unknown(fields, {"slug", "title", "description", "language", "timezone"})
        slug = fields.get("slug")
        if not valid_slug(slug):
            raise ValidationError("'slug' must be 1-64 lowercase letters, digits and inner hyphens")
        language = fields.get("language") or "it"
        if language not in LANGUAGES:
            raise ValidationError(f"'language' must be one of {', '.join(LANGUAGES)}")
        tz = fields.get("timezone") or DEFAULT_TIMEZONE
        if not isinstance(tz, str) or not timefmt.valid_timezone(tz):
            raise ValidationError("'timezone' must be an IANA time zone such as Europe/Rome")
        stamp = timefmt.rfc3339(timefmt.now())
        doc: Blog = {
            "slug": slug,
            "title": _text(fields, "title", required=True) or "",
            "description": _text(fields, "description"),
            "status": "live",
            "language": language,
            "timezone": tz,
            "created_at": stamp,
            "updated_at": stamp,
            "coverage_start": stamp,
            "coverage_end": None,
            "related": related or [],
        }
        state = dumps(doc)
        result = await self._write(slug, field="doc", expected="", state=state, score="", event="blog.updated",
                                   data=state, hash_key=keys.blog(slug))
        # The index is global (another cluster slot), so it is written after the blog itself and
        # again on a conflicting retry: a crash in between never leaves a blog unlisted for good.
        await self.redis.zadd(keys.BLOGS, {slug: int(timefmt.now().timestamp() * 1000)}, nx=True)
        if result[0] == "exists":
            raise Conflict(f"a blog with slug '{slug}' already exists")
        return doc

    async def _blog_doc(self, slug: str) -> tuple[str, Blog]:
        raw = await self.redis.hget(keys.blog(slug), "doc")
        if raw is None:
            raise NotFound(f"no blog '{slug}'")
        return raw, cast(Blog, orjson.loads(raw))

    async def get_blog(self, slug: str) -> Blog:
        if not valid_slug(slug):
            raise NotFound(f"no blog '{slug}'")
        return (await self._blog_doc(slug))[1]

    async def timezone(self, slug: str) -> str:
        """The blog's timezone (what its time labels are computed in); NotFound for no such blog.

        Cached per process: a blog's timezone is set when it is created and never changes."""
        tz = self._timezones.get(slug)
        if tz is None:
            tz = self._timezones[slug] = (await self.get_blog(slug))["timezone"]
        return tz

    async def list_blogs(self) -> list[Blog]:
        slugs = await self.redis.zrange(keys.BLOGS, 0, -1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for slug in slugs:
                pipe.hget(keys.blog(slug), "doc")
            raws = await pipe.execute()
        return [orjson.loads(raw) for raw in raws if raw is not None]

    async def blog_slugs(self) -> list[str]:
        return list(await self.redis.zrange(keys.BLOGS, 0, -1))

    async def update_blog(self, slug: str, fields: dict[str, Any]) -> Blog:
        _reject_unknown(fields, {"title", "description", "status"})
        status = fields.get("status")
        if status is not None and status not in STATUSES:
            raise ValidationError("'status' must be 'live' or 'ended'")
        title = _text(fields, "title")
        if "title" in fields and not title:
            raise ValidationError("'title' must not be empty")
        description = _text(fields, "description")
        for _ in range(10):
            raw, doc = await self._blog_doc(slug)
            stamp = timefmt.rfc3339(timefmt.now())
            if title:
                doc["title"] = title
            if "description" in fields:
                doc["description"] = description
            if status and status != doc["status"]:
                doc["status"] = status
                doc["coverage_end"] = stamp if status == "ended" else None
            doc["updated_at"] = stamp
            state = dumps(doc)
            result = await self._write(slug, field="doc", expected=raw, state=state, score="",
                                       event="blog.updated", data=state, hash_key=keys.blog(slug))
            if result[0] == "ok":
                return doc
        raise Conflict("the blog is being changed by someone else; try again")

    # ---- entries ---------------------------------------------------------------------------

    @staticmethod
    def _load_entry(raw: str) -> Entry:
        """A stored entry's facts (what older versions stored for presentation is left out)."""
        entry = orjson.loads(raw)
        for name in _PRESENTED:
            entry.pop(name, None)
        return cast(Entry, entry)

    async def create_entry(self, slug: str, fields: dict[str, Any], *, idempotency_key: str | None = None,
                           published_at: datetime | None = None, author_profile: dict[str, Any] | None = None,
                           by: str | None = None) -> tuple[Entry, bool]:
        """Create an entry; returns (entry, created). A replayed idempotency key returns the original.
        ``author_profile`` (see ``authors.py``) is kept with the entry as it is now; ``by`` (who wrote it:
        the token's name) goes with its first revision.

        The entry keeps ``body`` (its source, as written) beside ``body_html``; the change sent to
        readers and partners does not carry it."""
        _reject_unknown(fields, {"body", "title", "author", "key_event", "pinned"})
        _, blog = await self._blog_doc(slug)
        fingerprint = fingerprint_of(fields)
        moment = published_at or timefmt.now()
        entry = new_entry(slug, fields, moment, author_profile, self.renderer(blog))
        result = await self._write(
            slug, field="", expected="", state=_with_id_slot(dumps(entry)),
            score=str(int(moment.timestamp() * 1000)), event="entry.created",
            data=_with_id_slot(dumps(without_source(entry))), hash_key=keys.entries(slug),
            idem_key=idempotency_key, idem_value=f"{_ID_SLOT}:{fingerprint}", entry=entry,
            revision=revision_of(entry, by),
        )
        if result[0] == "dup":
            prior_id, _, prior_fingerprint = result[1].partition(":")
            if prior_fingerprint != fingerprint:
                raise ValidationError("this Idempotency-Key was already used with a different request body")
            return await self.get_entry(slug, prior_id), False
        entry["id"] = result[2]
        return entry, True

    async def publish_draft(self, slug: str, draft_id: str, raw: str, entry: Entry) -> Entry | None:
        """Publish the draft ``draft_id`` stored as ``raw`` (``entry`` is its published state, with id
        ""): one write script takes the draft and writes the entry with its event and a public id.
        None when the draft is no longer ``raw`` (published by another process, edited or deleted)."""
        moment = timefmt.parse_rfc3339(entry["published_at"])
        result = await self._write(
            slug, field="", expected="", state=_with_id_slot(dumps(entry)),
            score=str(int(moment.timestamp() * 1000)), event="entry.created",
            data=_with_id_slot(dumps(without_source(entry))), hash_key=keys.entries(slug),
            entry=entry, draft=(draft_id, raw),
        )
        if result[0] != "ok":
            return None
        published = entry.copy()
        published["id"] = result[2]
        return published

    async def get_entry(self, slug: str, entry_id: str) -> Entry:
        raw = await self.redis.hget(keys.entries(slug), entry_id)
        if raw is None:
            await self._blog_doc(slug)
            raise NotFound(f"no entry '{entry_id}' in blog '{slug}'")
        return self._load_entry(raw)

    async def revisions(self, slug: str, entry_id: str) -> list[dict[str, Any]]:
        """Every version of an entry (public or draft), oldest first. An entry written before versions
        were kept has only its current one."""
        raw = await self.redis.hget(keys.revisions(slug), entry_id)
        if raw is not None:
            return orjson.loads(raw)
        source = keys.drafts(slug) if entry_id.startswith("d") else keys.entries(slug)
        current = await self.redis.hget(source, entry_id)
        if current is None:
            await self._blog_doc(slug)
            raise NotFound(f"no entry '{entry_id}' in blog '{slug}'")
        entry = self._load_entry(current)
        return [{**orjson.loads(revision_of(entry, None)), "updated_at": entry["updated_at"]}]

    async def was_deleted(self, slug: str, entry_id: str) -> bool:
        """Whether ``entry_id`` names an update of ``slug`` that was deleted (its page is 410)."""
        return SLUG_RE.fullmatch(slug) is not None and bool(await self.redis.sismember(keys.deleted(slug), entry_id))

    async def _current(self, slug: str, entry_id: str, if_versions: frozenset[int] | None
                       ) -> tuple[str, Entry]:
        """The entry's stored JSON and value; 412 if ``if_versions`` (from If-Match) misses its version.

        The caller writes with the stored JSON as the expected state, so the version checked here is
        the one replaced: the check and the write are one atomic step."""
        raw = await self.redis.hget(keys.entries(slug), entry_id)
        if raw is None:
            raise NotFound(f"no entry '{entry_id}' in blog '{slug}'")
        entry = self._load_entry(raw)
        if if_versions is not None and entry["version"] not in if_versions:
            raise PreconditionFailed(f"the entry is at version {entry['version']}: someone changed it meanwhile",
                                     entry)
        return raw, entry

    async def update_entry(self, slug: str, entry_id: str, fields: dict[str, Any], *,
                           if_versions: frozenset[int] | None = None, by: str | None = None) -> Entry:
        """Change an entry (version + 1). Pinning alone is not an edit: ``updated_at`` stays."""
        if not fields:
            raise ValidationError("nothing to change: send body, title, author, key_event or pinned")
        _, blog = await self._blog_doc(slug)
        changes = entry_changes(fields, self.renderer(blog))
        edit = set(fields) != {"pinned"}
        for _ in range(10):
            raw, entry = await self._current(slug, entry_id, if_versions)
            entry = cast(Entry, {**entry, **changes})
            entry["version"] += 1
            if edit:
                entry["updated_at"] = timefmt.rfc3339(timefmt.now())
            result = await self._write(slug, field=entry_id, expected=raw, state=dumps(entry), score="",
                                       event="entry.updated", data=dumps(without_source(entry)),
                                       hash_key=keys.entries(slug), entry=entry, revision=revision_of(entry, by))
            if result[0] == "ok":
                return entry
        raise Conflict("the entry is being changed by someone else; try again")

    async def delete_entry(self, slug: str, entry_id: str, *, if_versions: frozenset[int] | None = None
                           ) -> None:
        await self._blog_doc(slug)
        for _ in range(10):
            raw, last = await self._current(slug, entry_id, if_versions)
            data = dumps({**without_source(last), "deleted": True, "deleted_at": timefmt.rfc3339(timefmt.now())})
            result = await self._write(slug, field=entry_id, expected=raw, state="", score="0",
                                       event="entry.deleted", data=data, hash_key=keys.entries(slug),
                                       entry=last)
            if result[0] == "ok":
                return
        raise Conflict("the entry is being changed by someone else; try again")

    async def list_entries(self, slug: str, *, limit: int = 20, before: str | None = None
                           ) -> list[Entry]:
        """Newest first; ``before`` is the id of the last entry of the previous page."""
        await self._blog_doc(slug)
        start = 0
        if before is not None:
            rank = await self.redis.zrevrank(keys.order(slug), before)
            if rank is None:
                raise ValidationError(f"'before' names no entry of this blog: {before!r}")
            start = rank + 1
        ids = await self.redis.zrevrange(keys.order(slug), start, start + limit - 1)
        if not ids:
            return []
        raws = await self.redis.hmget(keys.entries(slug), ids)
        return [self._load_entry(raw) for raw in raws if raw is not None]

    async def pinned_entries(self, slug: str) -> list[Entry]:
        """The pinned entries, newest first (an index kept by every write, so pages need not scan)."""
        ids = await self.redis.zrevrange(keys.pinned(slug), 0, -1)
        if not ids:
            return []
        raws = await self.redis.hmget(keys.entries(slug), ids)
        return [self._load_entry(raw) for raw in raws if raw is not None]

    async def snapshot(self, slug: str, unpinned: int) -> Snapshot:
        """The blog, its pinned entries and its newest entries (``unpinned`` of them not pinned, when
        there are that many) exactly as of the change ``after``.

        One atomic read: a page that renders this and resumes its stream after ``after`` neither
        misses a change nor gets one it already shows (separate reads could fall either side of a write).
        """
        if not SLUG_RE.match(slug):
            raise NotFound(f"no blog '{slug}'")
        keys_ = [keys.stream(slug), keys.blog(slug), keys.pinned(slug), keys.order(slug), keys.entries(slug)]
        after, doc, pinned, entries = await self._snapshot(keys=keys_, args=[unpinned])
        if not doc:
            raise NotFound(f"no blog '{slug}'")
        return Snapshot(after, cast(Blog, orjson.loads(doc)), [self._load_entry(raw) for raw in pinned if raw],
                        [self._load_entry(raw) for raw in entries if raw])
