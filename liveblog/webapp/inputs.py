"""Request bodies: size-capped, strictly parsed JSON objects, with precise errors."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request

from liveblog.store import NotFound, valid_entry_id, valid_slug
from liveblog.webapp.problems import Problem

IDEMPOTENCY_KEY_MAX = 200
# Printable ASCII without spaces: the key becomes part of a Redis key name.
_IDEMPOTENCY_KEY = re.compile(rf"\A[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}\Z")


def slug_param(request: Request) -> str:
    """The path's ``{slug}``, checked at the edge: anything that is not a slug is an unknown blog
    (404), so no key is ever built from it."""
    slug = request.path_params["slug"]
    if not valid_slug(slug):
        raise NotFound(f"no blog {slug[:80]!r}")
    return slug


def entry_id_param(request: Request) -> str:
    """The path's ``{entry_id}`` (digits), else 404."""
    entry_id = request.path_params["entry_id"]
    if not valid_entry_id(entry_id):
        raise NotFound(f"no entry {entry_id[:80]!r}")
    return entry_id


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise Problem(400, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters "
                           "without spaces")
    return key


async def json_object(request: Request) -> dict[str, Any]:
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Problem(413, f"the request body is larger than {limit} bytes")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise Problem(415, f"send JSON (Content-Type: application/json), not {ctype}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Problem(413, f"the request body is larger than {limit} bytes")
    if not body.strip():
        raise Problem(400, "the request body is empty; send a JSON object")
    try:
        value = orjson.loads(bytes(body))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the request body is not valid JSON: {exc}", title="Malformed JSON") from exc
    if not isinstance(value, dict):
        raise Problem(422, "the request body must be a JSON object")
    return value


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise Problem(400, f"'{name}' must be a whole number, not {raw!r}") from exc
    if not low <= value <= high:
        raise Problem(400, f"'{name}' must be between {low} and {high}")
    return value
