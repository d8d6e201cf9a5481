"""Helpers shared by the HTTP tests: posting an entry (once, or through a failover), and checking that
HTML is inert."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from html.parser import HTMLParser
from typing import Any

import httpx


async def post(client: httpx.AsyncClient, slug: str, headers: dict[str, str], body: str | None = None,
               **fields: Any) -> dict[str, Any]:
    """Create an entry through the API; fails the test unless it is a 201."""
    payload = {"body": body, **fields} if body is not None else fields
    response = await client.post(f"/api/blogs/{slug}/entries", headers=headers, json=payload)
    assert response.status_code == 201, response.text
    return response.json()


async def write_through(http: httpx.AsyncClient, slug: str, editor: dict[str, str], body: str,
                        answers: list[int]) -> str:
    """Post one entry through a store failover: 503s (problem+json with Retry-After) and lost
    connections are retried with the same Idempotency-Key, as a client should, until 201. Every status
    seen goes to ``answers``; returns the entry's id."""
    key = uuid.uuid4().hex
    for _ in range(300):
        with contextlib.suppress(httpx.TransportError):
            response = await http.post(f"/api/blogs/{slug}/entries", json={"body": body},
                                       headers={**editor, "Idempotency-Key": key})
            answers.append(response.status_code)
            if response.status_code == 201:
                return str(response.json()["id"])
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "retry-after" in response.headers
        await asyncio.sleep(0.1)
    raise AssertionError(f"{body!r} never succeeded: {answers[-5:]}")


HOSTILE = (
    '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">link</a>'
    '<iframe src="https://evil.example"></iframe><p style="x" onclick="alert(4)">testo</p>'
    "\n\n[md](javascript:alert(5)) [ok](https://example.org)"
)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_clean(html: str) -> None:
    """No script-capable element, no event handler, no style, no javascript: URL (parsed, not grepped)."""
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.found:
        assert tag not in ("script", "iframe", "object", "embed", "style"), html
        for name, value in attrs:
            assert not name.startswith("on") and name != "style", html
            if name in ("href", "src"):
                assert not (value or "").strip().lower().startswith(("javascript:", "data:")), html
