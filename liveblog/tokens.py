"""Bearer tokens: random secrets shown once, stored only as SHA-256 hashes.

A token's record (``lb:tokens``: hash of the secret -> JSON) holds a public ``id``, a name, a role
and the blogs an editor token is limited to (none: every blog). ``id`` is random, so neither the
secret nor its hash ever leaves Redis; ``{lb:tokens}:ids`` maps it back to the hash for revocation.
Every check reads Redis (one ``HGET``; there is no per-process cache), so a revoked token is refused
at once by every process. ``last_used_at`` is written at most once per token per
``touch_interval`` per process, never once per request.

Records written before ids existed get one the first time they are read (an atomic script).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from liveblog import keys, timefmt
from liveblog.authors import Authors
from liveblog.store import SLUG_RE, ValidationError

ROLES = ("editor", "admin")
RANK = {"editor": 1, "admin": 2}
ID_RE = re.compile(r"^tok_[0-9a-f]{16}$")
NAME_MAX = 120

# KEYS: 1 records, 2 ids. ARGV: 1 hash of the secret, 2 id, 3 record. Safe to run twice.
_CREATE = """
local owner = redis.call('HGET', KEYS[2], ARGV[2])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# Gives a record of the previous version (no id) the id ARGV[2]; returns the record as it is now.
_MIGRATE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
if cjson.decode(raw)['id'] then return raw end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return false end
raw = '{"id":' .. cjson.encode(ARGV[2]) .. ',' .. string.sub(raw, 2)
redis.call('HSET', KEYS[1], ARGV[1], raw)
return raw
"""

# KEYS: 1 records, 2 ids, 3 last use. ARGV: 1 id. Returns 1 if the token existed.
_REVOKE = """
local hash = redis.call('HGET', KEYS[2], ARGV[1])
if not hash then return 0 end
redis.call('HDEL', KEYS[1], hash)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_id() -> str:
    return f"tok_{secrets.token_hex(8)}"


def allows(record: dict[str, Any], slug: str) -> bool:
    """Whether ``record`` may act on blog ``slug`` (a token with no blogs listed may act on all)."""
    return not record.get("blogs") or slug in record["blogs"]


def _checked(name: str, role: str, blogs: list[str] | tuple[str, ...]) -> tuple[str, list[str]]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a token needs a name")
    if len(name.strip()) > NAME_MAX:
        raise ValueError(f"a token's name is at most {NAME_MAX} characters")
    bad = [slug for slug in blogs if not isinstance(slug, str) or not SLUG_RE.match(slug)]
    if bad:
        raise ValueError(f"not a blog slug: {bad[0]!r}")
    if blogs and role != "editor":
        raise ValueError("only editor tokens can be limited to blogs")
    return name.strip(), sorted(set(blogs))


class Tokens:
    def __init__(self, redis: aioredis.Redis, *, bootstrap_admin: str | None = None,
                 touch_interval: float = 60.0) -> None:
        self.redis = redis
        self.bootstrap_admin = bootstrap_admin
        self.touch_interval = touch_interval
        self._touched: dict[str, float] = {}  # token id -> monotonic time of this process's last write
        self.authors = Authors(redis)
        self._create = redis.register_script(_CREATE)
        self._migrate = redis.register_script(_MIGRATE)
        self._revoke = redis.register_script(_REVOKE)

    async def create(self, name: str, role: str = "editor", blogs: list[str] | tuple[str, ...] = (),
                     author_id: str | None = None) -> tuple[dict[str, Any], str]:
        """A new token: (its public record, the secret). The secret is not kept anywhere. A token tied to
        an author (``author_id``, which must name a profile) signs its posts as that author. Bad input
        (an unknown author included) is a ValueError: the API answers 422, the CLI exits with 2."""
        name, scoped = _checked(name, role, blogs)
        if author_id is not None:
            try:
                await self.authors.profile(author_id)
            except ValidationError as exc:  # (profiles are never deleted: a check, then the write)
                raise ValueError(f"cannot tie the token to an author: {exc}") from None
        token = f"lb_{secrets.token_urlsafe(32)}"
        while True:
            record = {"id": new_id(), "name": name, "role": role, "blogs": scoped,
                      "created_at": timefmt.rfc3339(timefmt.now())}
            if author_id is not None:
                record["author_id"] = author_id
            if await self._create(keys=[keys.TOKENS, keys.TOKEN_IDS],
                                  args=[digest(token), record["id"], orjson.dumps(record).decode()]):
                return {**record, "last_used_at": None}, token

    async def _with_id(self, hashed: str, raw: str) -> dict[str, Any] | None:
        """The record, given an id first if it is from the previous version (None: revoked meanwhile)."""
        record = orjson.loads(raw)
        while "id" not in record:
            migrated = await self._migrate(keys=[keys.TOKENS, keys.TOKEN_IDS], args=[hashed, new_id()])
            if migrated is None and await self.redis.hget(keys.TOKENS, hashed) is None:
                return None
            record = orjson.loads(migrated) if migrated else record
        record.setdefault("blogs", [])
        return record

    async def lookup(self, token: str) -> dict[str, Any] | None:
        """The token's record, or None. The bootstrap admin token is compared in constant time."""
        if self.bootstrap_admin and hmac.compare_digest(token.encode(), self.bootstrap_admin.encode()):
            return {"id": None, "name": "bootstrap-admin", "role": "admin", "blogs": []}
        hashed = digest(token)
        raw = await self.redis.hget(keys.TOKENS, hashed)
        if raw is None:
            return None
        record = await self._with_id(hashed, raw)
        if record is not None:
            await self._touch(record["id"])
        return record

    async def _touch(self, token_id: str) -> None:
        """Record the use, unless this process did within ``touch_interval``."""
        now = time.monotonic()
        last = self._touched.get(token_id)
        if last is not None and now - last < self.touch_interval:
            return
        self._touched[token_id] = now
        await self.redis.hset(keys.TOKEN_USED, token_id, timefmt.rfc3339(timefmt.now()))

    async def list(self) -> list[dict[str, Any]]:
        """Every stored token's public record, oldest first (never the secret nor its hash)."""
        stored = await self.redis.hgetall(keys.TOKENS)
        used = await self.redis.hgetall(keys.TOKEN_USED)
        records = []
        for hashed, raw in stored.items():
            record = await self._with_id(hashed, raw)
            if record is not None:
                records.append({**record, "last_used_at": used.get(record["id"])})
        return sorted(records, key=lambda r: (r.get("created_at") or "", r["id"]))

    async def revoke(self, token_id: str) -> bool:
        """Forget the token; False if no token has this id."""
        if not ID_RE.match(token_id):
            return False
        self._touched.pop(token_id, None)
        return bool(await self._revoke(keys=[keys.TOKENS, keys.TOKEN_IDS, keys.TOKEN_USED], args=[token_id]))
