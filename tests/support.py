"""Helpers shared by the HTTP tests: posting an entry, and checking that HTML is inert."""

from __future__ import annotations

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
