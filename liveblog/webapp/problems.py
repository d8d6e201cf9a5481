"""Errors as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from liveblog.store import StoreError


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}


def problem_response(status: int, title: str, detail: str, headers: dict[str, str] | None = None,
                     **extra: Any) -> Response:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json",
                    headers=headers)


async def on_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.title, exc.detail, exc.headers)


async def on_store_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    return problem_response(exc.status, exc.title, exc.detail)


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else {
        404: "no such resource",
        405: "method not allowed on this resource",
    }.get(status, HTTPStatus(status).phrase)
    return problem_response(status, HTTPStatus(status).phrase, str(detail), headers=exc.headers)


async def on_redis_down(_request: Request, exc: Exception) -> Response:
    return problem_response(503, "Service Unavailable", f"the data store is unreachable: {type(exc).__name__}",
                            headers={"Retry-After": "2"})


async def on_client_disconnect(_request: Request, _exc: Exception) -> Response:
    """The client went away (or was disconnected for stalling) while sending its body: nobody is left
    to answer, and it is not a server error."""
    return Response(status_code=400)
