"""``/api/authors``: author profiles (admins create them; editors list them to sign updates)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog.authors import Authors
from liveblog.present import Presenter
from liveblog.webapp.api import json_response
from liveblog.webapp.auth import require
from liveblog.webapp.inputs import json_object


def _authors(request: Request) -> Authors:
    return request.app.state.authors


async def create_author(request: Request) -> Response:
    await require(request, "admin")
    author = await _authors(request).create(await json_object(request))
    presenter: Presenter = request.app.state.presenter
    return json_response(presenter.profile(author), 201)


async def list_authors(request: Request) -> Response:
    await require(request, "editor")
    presenter: Presenter = request.app.state.presenter
    return json_response({"authors": [presenter.profile(doc) for doc in await _authors(request).list()]},
                         headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/authors", list_authors, methods=["GET"]),
    Route("/api/authors", create_author, methods=["POST"]),
]
