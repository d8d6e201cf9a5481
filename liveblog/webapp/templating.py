"""Jinja2 templates and static files shared by every HTML page (live page, embed, editor).

Use it like this::

    from liveblog.webapp.templating import render

    async def page(request: Request) -> Response:
        return render(request, "editor.html", {"blog": blog}, headers={"Cache-Control": "no-store"})

- Templates come from ``web/templates`` of a source checkout, else from the copy packed into the
  wheel (``liveblog/_web/templates``); static files likewise from ``web/static``.
- Autoescaping is on, and ``None`` renders as nothing (an untitled or anonymous entry shows no "None").
- ``static_url('live.js')`` gives ``/static/live.js?v=<content hash>``; a request carrying exactly that
  hash is cached for a year (the hash changes with the file); any other (no ``v``, an old or made-up
  one) for 5 minutes, so a stale or forged version can never pin a file in caches.
- The ``script_json`` filter writes a value as JSON that is safe inside ``<script type="application/json">``
  (and ``application/ld+json``): ``<``, ``>``, ``&`` and U+2028/9 are escaped, so ``</script>`` in data
  cannot close the element. Pages have no inline script (see ``csp``); read such blocks from /static code.
- ``render`` adds security headers (``Content-Security-Policy`` from ``csp()``, ``nosniff``, a referrer
  policy); keys in ``headers`` override them.
- ``static_routes`` mounts ``/static``; it is included once, by ``liveblog.webapp.pages.routes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_PREFIX = "/static"
VERSIONED_CACHE = "public, max-age=31536000, immutable"
UNVERSIONED_CACHE = "public, max-age=300"


def web_dir() -> Path:
    """``web/`` of a source checkout, or the copy packed into the wheel as ``liveblog/_web``."""
    checkout = Path(__file__).resolve().parents[2] / "web"
    if (checkout / "templates").is_dir():
        return checkout
    return Path(str(resources.files("liveblog") / "_web"))


TEMPLATES_DIR = web_dir() / "templates"
STATIC_DIR = web_dir() / "static"


PLAYER_ORIGINS = ("https://www.youtube-nocookie.com", "https://player.vimeo.com")


def csp(*, frame_ancestors: str = "'none'") -> str:
    """The pages' Content-Security-Policy: own scripts, styles and connections only, no inline script.

    Images may also come from any https origin, because editors embed photos hosted elsewhere in
    update bodies; the page's own assets never leave the origin. Frames only from the two video
    players that ``web/static/embeds.js`` loads when a reader clicks a placeholder (render.py).
    """
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "connect-src 'self'",
        "font-src 'self'",
        f"frame-src {' '.join(PLAYER_ORIGINS)}",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        f"frame-ancestors {frame_ancestors}",
    ])


SECURITY_HEADERS = {
    "Content-Security-Policy": csp(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def script_json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block; ``</script>`` in data cannot break out."""
    text = orjson.dumps(value).decode()
    for raw, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)


@lru_cache(maxsize=128)
def _file_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """``/static/<name>?v=<hash>``: cacheable for good, and a new deploy changes the URL."""
    return f"{STATIC_PREFIX}/{name}?v={_file_version(name)}"


env = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=lambda value: "" if value is None else value,
)
env.filters["script_json"] = script_json
env.globals["static_url"] = static_url


def render(request: Request, name: str, context: Mapping[str, Any], *, status: int = 200,
           headers: Mapping[str, str] | None = None) -> Response:
    """Render template ``name`` with ``context`` (plus ``request``) into an HTML response."""
    html = env.get_template(name).render({"request": request, **context})
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


class _CachedStatic(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            version = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v")
            current = version == [_file_version(path)]
            response.headers["Cache-Control"] = VERSIONED_CACHE if current else UNVERSIONED_CACHE
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


static_routes: list[BaseRoute] = [Mount(STATIC_PREFIX, app=_CachedStatic(directory=str(STATIC_DIR)), name="static")]
