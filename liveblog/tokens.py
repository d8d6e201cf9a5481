"""Bearer tokens: random secrets shown once, stored only as SHA-256 hashes with a name and a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import orjson
import redis.asyncio as aioredis

from liveblog import keys, timefmt

ROLES = ("editor", "admin")
RANK = {"editor": 1, "admin": 2}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    def __init__(self, redis: aioredis.Redis, *, bootstrap_admin: str | None = None) -> None:
        self.redis = redis
        self.bootstrap_admin = bootstrap_admin

    async def create(self, name: str, role: str = "editor") -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not name.strip():
            raise ValueError("a token needs a name")
        token = f"lb_{secrets.token_urlsafe(32)}"
        record = {"name": name.strip(), "role": role, "created_at": timefmt.rfc3339(timefmt.now())}
        await self.redis.hset(keys.TOKENS, digest(token), orjson.dumps(record).decode())
        return token

    async def lookup(self, token: str) -> dict[str, Any] | None:
        """The token's record, or None. The bootstrap admin token is compared in constant time."""
        if self.bootstrap_admin and hmac.compare_digest(token.encode(), self.bootstrap_admin.encode()):
            return {"name": "bootstrap-admin", "role": "admin"}
        raw = await self.redis.hget(keys.TOKENS, digest(token))
        return orjson.loads(raw) if raw else None
