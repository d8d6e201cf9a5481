"""Bearer-token checks: 401 without a valid token, 403 with too low a role or for another blog."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from liveblog.tokens import RANK, allows
from liveblog.webapp.problems import Problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="liveblog"'}


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def require(request: Request, role: str, *, blog: str | None = None) -> dict[str, Any]:
    """The token's record, if it has ``role`` (or higher) and, when ``blog`` is given, may act on it."""
    token = _bearer(request)
    if token is None:
        raise Problem(401, "this action needs 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    record = await request.app.state.tokens.lookup(token)
    if record is None:
        raise Problem(401, "the bearer token is not valid", headers=_CHALLENGE)
    if RANK.get(record["role"], 0) < RANK[role]:
        raise Problem(403, f"this action needs the '{role}' role; the token has '{record['role']}'")
    if blog is not None and not allows(record, blog):
        raise Problem(403, f"this token may not act on blog '{blog}'")
    return record


async def is_editor_of(request: Request, blog: str) -> bool:
    """Whether the request carries a valid token that may edit ``blog`` (reads show editors more).

    Reads never fail on a bad token: without a usable one they get what anyone gets."""
    token = _bearer(request)
    if token is None:
        return False
    record = await request.app.state.tokens.lookup(token)
    return record is not None and RANK.get(record["role"], 0) >= RANK["editor"] and allows(record, blog)
