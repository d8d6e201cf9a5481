"""The editor's page as served (headers, no inline script, labels) and ``POST /api/preview``."""

from __future__ import annotations

import json
import uuid
from html.parser import HTMLParser

import httpx
import pytest

from tests.conftest import JSON, admin


class PageParts(HTMLParser):
    """The scripts, stylesheets and <html lang> of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.lang: str | None = None
        self.scripts: list[dict[str, str | None]] = []
        self.script_text: list[str] = []
        self.stylesheets: list[str] = []
        self.inline_handlers: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.inline_handlers += [name for name in found if name.startswith("on")]
        if tag == "html":
            self.lang = found.get("lang")
        elif tag == "script":
            self.scripts.append(found)
            self._in_script = True
            self.script_text.append("")
        elif tag == "link" and found.get("rel") == "stylesheet":
            self.stylesheets.append(found["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text[-1] += data


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


async def make_blog(client: httpx.AsyncClient, **fields: str) -> dict:
    response = await client.post("/api/blogs", headers=admin(),
                                 json={"slug": f"ed-{uuid.uuid4().hex[:10]}", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_editor_page_is_self_contained_and_has_no_inline_script(client: httpx.AsyncClient, blog: str) -> None:
    response = await client.get(f"/editor/{blog}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "noindex" in response.headers["x-robots-tag"]
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy

    page = PageParts(response.text)
    assert page.lang == "it"
    assert not page.inline_handlers
    executable = [s for s in page.scripts if s.get("type") != "application/json"]
    assert [s["src"].split("?")[0] for s in executable] == [  # type: ignore[union-attr]
        "/static/editor.js", "/static/embeds.js", "/static/editor-media.js"]
    assert "/static/editor.css" in [href.split("?")[0] for href in page.stylesheets]
    for url in [s["src"] for s in executable] + page.stylesheets:
        asset = await client.get(url)  # same origin, served by the app
        assert asset.status_code == 200 and asset.content

    data = [text for s, text in zip(page.scripts, page.script_text, strict=True) if s.get("type") == "application/json"]
    config = json.loads(data[0])
    assert config["blog"]["slug"] == blog and config["blog"]["status"] == "live"
    assert config["api"] == f"/api/blogs/{blog}" and config["events"] == f"/blogs/{blog}/events"
    assert config["preview"] == "/api/preview?language=it"  # the blog's words for video placeholders
    assert config["labels"]["publish"] == "Pubblica"
    assert "Pubblica" in response.text and "Accedi" in response.text


async def test_english_blog_gets_an_english_editor(client: httpx.AsyncClient) -> None:
    made = await make_blog(client, title="War in Ukraine", language="en")
    response = await client.get(f"/editor/{made['slug']}")
    page = PageParts(response.text)
    assert page.lang == "en"
    assert "Publish" in response.text and "Sign in" in response.text and "Pubblica" not in response.text


async def test_hostile_blog_title_cannot_break_out_of_the_page(client: httpx.AsyncClient) -> None:
    # Entities survive the store's tag stripping as text, so the title really contains "</script>".
    made = await make_blog(client, title="&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; Titolo")
    assert "</script>" in made["title"]
    response = await client.get(f"/editor/{made['slug']}")
    page = PageParts(response.text)
    assert len(page.scripts) == 4  # editor.js, embeds.js, editor-media.js and the JSON config, nothing injected
    config = json.loads(next(t for s, t in zip(page.scripts, page.script_text, strict=True)
                             if s.get("type") == "application/json"))
    assert config["blog"]["title"] == made["title"]


async def test_unknown_blog_is_a_404_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/editor/no-such-blog-at-all")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


async def test_preview_renders_exactly_what_a_post_publishes(client: httpx.AsyncClient, blog: str,
                                                             editor: dict[str, str]) -> None:
    source = ("## Ore 14\n\nKirby: *partnership* con [Teheran](https://example.org) e <b>bold</b>\n\n"
              "- uno\n- due\n\n<script>alert(1)</script><img src=x onerror=alert(2)>"
              '<a href="javascript:alert(3)">x</a>')
    preview = await client.post("/api/preview", headers=editor, json={"body": source})
    assert preview.status_code == 200
    assert preview.headers["cache-control"] == "no-store"
    posted = await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": source})
    assert preview.json()["body_html"] == posted.json()["body_html"]
    assert preview.json()["author"] == posted.json()["author"] == "Redazione test"
    html = preview.json()["body_html"]
    assert "<em>partnership</em>" in html and "<li>uno</li>" in html
    assert "<script" not in html and "onerror" not in html and "javascript:" not in html


async def test_preview_of_nothing_is_empty(client: httpx.AsyncClient, editor: dict[str, str]) -> None:
    """The page checks a token at sign-in with an empty preview."""
    for body in ({"body": ""}, {}):
        response = await client.post("/api/preview", headers=editor, json=body)
        assert response.status_code == 200 and response.json() == {"body_html": "", "author": "Redazione test"}


@pytest.mark.parametrize(("headers", "status"), [
    (JSON, 401),
    ({"Authorization": "Bearer not-a-real-token", **JSON}, 401),
    ({"Authorization": "Basic dXNlcjpwYXNz", **JSON}, 401),
])
async def test_preview_needs_an_editor_token(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    response = await client.post("/api/preview", headers=headers, json={"body": "ciao"})
    problem(response, status)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_preview_accepts_an_admin_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/preview", headers=admin(), json={"body": "ciao"})
    assert response.status_code == 200 and response.json()["body_html"] == "<p>ciao</p>"


@pytest.mark.parametrize(("body", "status", "detail"), [
    ({"body": 42}, 422, "'body' must be a string"),
    ({"body": "x" * 50_001}, 422, "longer than 50000"),
    ([1, 2], 422, "JSON object"),
])
async def test_preview_rejects_bad_input(client: httpx.AsyncClient, editor: dict[str, str], body: object,
                                         status: int, detail: str) -> None:
    response = await client.post("/api/preview", headers=editor, json=body)
    assert detail in problem(response, status)["detail"]


async def test_preview_rejects_non_json(client: httpx.AsyncClient, editor_token: str) -> None:
    response = await client.post("/api/preview", content=b"body=ciao",
                                 headers={"Authorization": f"Bearer {editor_token}",
                                          "Content-Type": "application/x-www-form-urlencoded"})
    problem(response, 415)


def test_editor_script_uses_no_has_selector() -> None:
    """``:has()`` in querySelectorAll throws a SyntaxError on browsers without it (Firefox < 121)."""
    from pathlib import Path

    script = (Path(__file__).resolve().parent.parent / "web" / "static" / "editor.js").read_text()
    assert ":has(" not in script
