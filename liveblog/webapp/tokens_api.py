"""Admin API for bearer tokens: list, create (the secret is shown once), revoke."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog.tokens import Tokens
from liveblog.webapp.api import json_response
from liveblog.webapp.auth import require
from liveblog.webapp.inputs import json_object
from liveblog.webapp.problems import Problem


def _tokens(request: Request) -> Tokens:
    return request.app.state.tokens


async def list_tokens(request: Request) -> Response:
    await require(request, "admin")
    return json_response({"tokens": await _tokens(request).list()}, headers={"Cache-Control": "no-store"})


async def create_token(request: Request) -> Response:
    await require(request, "admin")
    fields = await json_object(request)
    unknown = sorted(set(fields) - {"name", "role", "blogs", "author_id"})
    if unknown:
        raise Problem(422, f"unknown field(s): {', '.join(unknown)}")
    name = fields.get("name")
    if not isinstance(name, str):
        raise Problem(422, "'name' is required: who or what the token is for")
    blogs = fields.get("blogs") or []
    if not isinstance(blogs, list):
        raise Problem(422, "'blogs' must be a list of blog slugs")
    try:
        record, token = await _tokens(request).create(name, fields.get("role") or "editor", blogs,
                                                      author_id=fields.get("author_id"))
    except ValueError as exc:
        raise Problem(422, str(exc)) from None
    return json_response({**record, "token": token}, 201,
                         headers={"Location": f"/api/tokens/{record['id']}", "Cache-Control": "no-store"})


async def revoke_token(request: Request) -> Response:
    await require(request, "admin")
    token_id = request.path_params["token_id"]
    if not await _tokens(request).revoke(token_id):
        raise Problem(404, f"no token '{token_id}'")
    return Response(status_code=204)


routes = [
    Route("/api/tokens", list_tokens, methods=["GET"]),
    Route("/api/tokens", create_token, methods=["POST"]),
    Route("/api/tokens/{token_id}", revoke_token, methods=["DELETE"]),
]
