"""Author profiles: a name, a role title ("inviata a Kiev"), a profile link and an avatar.

Profiles live in one global hash (``lb:authors``, single-key commands only, so any cluster slot).
A post names its author by ``author_id``; the entry then keeps a copy of the profile as it was
when the update was written (a fact of the update, like its text), shown as ``author_profile``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis

from liveblog import keys, timefmt
from liveblog.render import plain_text
from liveblog.store import NotFound, ValidationError

LIMITS = {"name": 120, "title": 120, "url": 500, "avatar": 500}
PROFILE_FIELDS = ("id", "name", "title", "url", "avatar")
ID_BYTES = 5


def _link(fields: dict[str, Any], name: str, *, media_path_ok: bool) -> str | None:
    """An https link (or http), or for avatars a path of this service's media (``/media/…``)."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > LIMITS[name] or not value.isprintable() or " " in value:
        raise ValidationError(f"'{name}' must be a URL of at most {LIMITS[name]} characters")
    if media_path_ok and value.startswith("/media/") and ".." not in value:
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        where = " or a /media/… path of an uploaded photo" if media_path_ok else ""
        raise ValidationError(f"'{name}' must be an http(s) URL{where}")
    return value


def validate(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - {"name", "title", "url", "avatar"})
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}")
    profile: dict[str, Any] = {}
    for name in ("name", "title"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise ValidationError(f"'{name}' must be a string")
        if value is not None and len(value) > LIMITS[name]:
            raise ValidationError(f"'{name}' is longer than {LIMITS[name]} characters")
        profile[name] = plain_text(value).strip() or None if value else None
    if not profile["name"]:
        raise ValidationError("'name' is required")
    profile["url"] = _link(fields, "url", media_path_ok=False)
    profile["avatar"] = _link(fields, "avatar", media_path_ok=True)
    return profile


class Authors:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def create(self, fields: dict[str, Any]) -> dict[str, Any]:
        profile = validate(fields)
        while True:
            author_id = secrets.token_hex(ID_BYTES)
            doc = {"id": author_id, **profile, "created_at": timefmt.rfc3339(timefmt.now())}
            if await self.redis.hsetnx(keys.AUTHORS, author_id, orjson.dumps(doc).decode()):
                return doc

    async def get(self, author_id: Any) -> dict[str, Any]:
        if not isinstance(author_id, str) or not author_id.isalnum() or len(author_id) > 40:
            raise ValidationError("'author_id' must be the id of an author (GET /api/authors)")
        raw = await self.redis.hget(keys.AUTHORS, author_id)
        if raw is None:
            raise NotFound(f"no author '{author_id}'")
        return orjson.loads(raw)

    async def list(self) -> list[dict[str, Any]]:
        docs = [orjson.loads(raw) for raw in (await self.redis.hgetall(keys.AUTHORS)).values()]
        return sorted(docs, key=lambda doc: (doc["name"].casefold(), doc["id"]))

    async def profile(self, author_id: Any) -> dict[str, Any]:
        """What an entry keeps of its author: the profile fields, for ``author_profile``.
        An unknown id is a 422 of the post (not a 404 of the blog)."""
        try:
            doc = await self.get(author_id)
        except NotFound as exc:
            raise ValidationError(str(exc)) from exc
        return {name: doc.get(name) for name in PROFILE_FIELDS}
