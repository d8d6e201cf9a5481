"""``GET /blogs/{slug}/updates/{id}``: one update's own page, the ``url`` of every entry.

Server-rendered and cacheable like the live page; what it adds is what share buttons and link
previews read: a canonical link, OpenGraph and Twitter card meta, and a JSON-LD ``BlogPosting`` that
is part of the live blog. It links to the live page at that update. A deleted update's page is 410
(gone for good: crawlers and previews drop it), an id that never was is 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from liveblog.jsonld import blog_posting
from liveblog.present import Presenter, anchor
from liveblog.render import html_text
from liveblog.store import NotFound, Store, ValidationError
from liveblog.webapp.api import PUBLIC_CACHE
from liveblog.webapp.pages import labels, not_found, publisher_of
from liveblog.webapp.templating import render

DESCRIPTION_MAX = 200


def excerpt(text: str, limit: int = DESCRIPTION_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


async def update_page(request: Request) -> Response:
    slug, entry_id = request.path_params["slug"], request.path_params["entry_id"]
    store: Store = request.app.state.store
    presenter: Presenter = request.app.state.presenter
    try:
        blog = presenter.blog(await store.get_blog(slug))
        entry = presenter.entry(await store.get_entry(slug, entry_id), blog["timezone"])
    except (NotFound, ValidationError):
        if await store.was_deleted(slug, entry_id):
            return render(request, "gone.html", {"L": labels("it"), "lang": "it", "live": f"/blogs/{slug}"},
                          status=410, headers={"Cache-Control": PUBLIC_CACHE})
        return not_found(request)
    text = html_text(entry["body_html"])
    context: dict[str, Any] = {
        "blog": blog,
        "entry": entry,
        "L": labels(blog["language"]),
        "lang": blog["language"],
        "title": entry.get("title") or excerpt(text, 90),
        "description": excerpt(text),
        "image": entry.get("image"),
        "live": f"/blogs/{slug}#{anchor(entry['id'])}",
        "jsonld": blog_posting(blog, entry, publisher=publisher_of(request)),
    }
    return render(request, "update.html", context, headers={"Cache-Control": PUBLIC_CACHE})


routes: list[BaseRoute] = [Route("/blogs/{slug}/updates/{entry_id}", update_page, methods=["GET", "HEAD"])]
