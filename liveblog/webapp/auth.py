"""Bearer-token checks for write endpoints: 401 without a valid token, 403 with too low a role."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from liveblog.tokens import RANK
from liveblog.webapp.problems import Problem

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="liveblog"'}


async def require(request: Request, role: str) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "this action needs 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    record = await request.app.state.tokens.lookup(token.strip())
    if record is None:
        raise Problem(401, "the bearer token is not valid", headers=_CHALLENGE)
    if RANK.get(record["role"], 0) < RANK[role]:
        raise Problem(403, f"this action needs the '{role}' role; the token has '{record['role']}'")
    return record
