"""Errors as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import orjson
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from liveblog.store import StoreError


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra or {}  # extension members of the problem document


def problem_response(status: int, title: str, detail: str, headers: dict[str, str] | None = None,
                     **extra: Any) -> Response:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json",
                    headers=headers)


async def on_problem(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)


async def on_store_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreError)
    return problem_response(exc.status, exc.title, exc.detail,
                            headers={"Retry-After": "2"} if exc.status == 503 else None)


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(status).phrase else {
        404: "no such resource",
        405: "method not allowed on this resource",
    }.get(status, HTTPStatus(status).phrase)
    return problem_response(status, HTTPStatus(status).phrase, str(detail),
                            headers=dict(exc.headers) if exc.headers else None)


async def on_redis_down(_request: Request, exc: Exception) -> Response:
    return problem_response(503, "Service Unavailable", f"the data store is unreachable: {type(exc).__name__}",
                            headers={"Retry-After": "2"})


# Redis refusals that pass: out of memory (maxmemory + noeviction), a replica or a primary being
# replaced (READONLY, MASTERDOWN, NOREPLICAS), a dataset loading, a script running too long (BUSY),
# a cluster re-sharding. A refused write did not run. A script's refusal comes wrapped in an "Error
# running script ... -OOM ..." message before Redis 7, hence the search rather than the class.
_TRANSIENT = re.compile(r"(?:^|-)(OOM|READONLY|MASTERDOWN|NOREPLICAS|LOADING|BUSY|TRYAGAIN|CLUSTERDOWN)\b")
REFUSED_RETRY_AFTER = "5"


def transient_refusal(exc: Exception) -> str | None:
    """The Redis error code of a refusal that will pass (``OOM``, ``READONLY``, ...), else None."""
    if isinstance(exc, OutOfMemoryError):
        return "OOM"
    if isinstance(exc, ReadOnlyError):
        return "READONLY"
    match = _TRANSIENT.search(str(exc))
    return match.group(1) if match else None


async def on_redis_refusal(_request: Request, exc: Exception) -> Response:
    """A Redis error reply: a transient refusal is a 503 with ``Retry-After``; anything else is
    re-raised for the server-error handler."""
    code = transient_refusal(exc)
    if code is None:
        raise exc
    detail = "the data store is out of memory" if code == "OOM" else f"the data store refused the command ({code})"
    return problem_response(503, "Service Unavailable", f"{detail}; nothing was changed, try again later",
                            headers={"Retry-After": REFUSED_RETRY_AFTER})


async def on_client_disconnect(_request: Request, _exc: Exception) -> Response:
    """The client went away (or was disconnected for stalling) while sending its body: nobody is left
    to answer, and it is not a server error."""
    return Response(status_code=400)


async def on_unexpected(_request: Request, _exc: Exception) -> Response:
    """The catch-all: an error no other handler answers is a problem document too, never text/plain.
    Starlette raises the exception again after this answer, so the server logs it (once, with its
    traceback); the client learns nothing about the internals."""
    return problem_response(500, "Internal Server Error", "an unexpected error occurred; it has been logged")
