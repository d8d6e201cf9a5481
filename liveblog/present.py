"""Presentation: what a stored blog or entry looks like when it is served.

Redis holds facts only (an entry's source and rendered HTML, its times in UTC, flags, author,
version, ids; a blog's settings). Everything derived for readers is computed here, when served:
links from the current ``LIVEBLOG_PUBLIC_URL`` (so moving the service moves every link, old entries
included) and time labels from the UTC times in the blog's timezone. Every way out goes through
this module: the API, the event stream (live and catch-up), pages, feeds, JSON-LD and webhooks.

Records written by earlier versions carry stored ``url``/labels/``urls``: they are overwritten here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import orjson

from liveblog import timefmt
from liveblog.model import Blog, BlogUrls, Entry, PresentedBlog, PresentedEntry

# Fields only an editor's read shows (the source as written); never in public output.
EDITOR_ONLY = frozenset({"body"})
ENTRY_EVENTS = frozenset({"entry.created", "entry.updated", "entry.deleted"})
# Root-relative photo paths in a rendered body: an attribute's start, or a later srcset candidate.
_MEDIA_REF = re.compile(r'(?<=(?:src|set)=")/media/|(?<=w, )/media/')


def anchor(entry_id: str) -> str:
    """The fragment of an update on the live page."""
    return f"aggiornamento-{entry_id}"


@dataclass(frozen=True)
class Presenter:
    """Presentation under one public base URL (``http://host:port``, no trailing slash)."""

    public_url: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    def blog_urls(self, slug: str) -> BlogUrls:
        base = f"{self.public_url}/blogs/{slug}"
        return {
            "page": base,
            "events": f"{base}/events",
            "atom": f"{base}/feed.atom",
            "json_feed": f"{base}/feed.json",
            "embed": f"{base}/embed",
            "api": f"{self.public_url}/api/blogs/{slug}",
        }

    def body_html(self, body_html: str) -> str:
        """The stored body with its photos' paths made absolute (feeds and partners need them so)."""
        if "/media/" not in body_html:
            return body_html
        return _MEDIA_REF.sub(f"{self.public_url}/media/", body_html)

    def entry_url(self, slug: str, entry_id: str) -> str:
        """The update's own page (``update_page.py``), which links to the live page at the update."""
        return f"{self.public_url}/blogs/{slug}/updates/{entry_id}"

    def absolute(self, link: str | None) -> str | None:
        """A link as served: paths of this service (``/media/…``) get the public base URL."""
        return f"{self.public_url}{link}" if link and link.startswith("/") else link

    def profile(self, author: dict[str, Any]) -> dict[str, Any]:
        """An author profile as served (its avatar may be a path of an uploaded photo)."""
        return {**author, "avatar": self.absolute(author.get("avatar"))}

    def blog(self, doc: Blog) -> PresentedBlog:
        """A stored blog as served: its links added."""
        return {**doc, "urls": self.blog_urls(doc["slug"])}

    def entry(self, entry: Entry, tz: str, *, for_editor: bool = False) -> PresentedEntry:
        """A stored entry as served: ``url``, ``time_label`` and ``updated_label`` (the edit time,
        shown only once the entry has been edited after publication) in the blog's timezone ``tz``.
        The source ``body`` is kept only for editors (``for_editor``); an entry stored before sources
        were kept has only its sanitized HTML, which is a valid source too (Markdown passes HTML through)."""
        if for_editor:
            shown = cast(Entry, {**entry, "body": entry.get("body", entry["body_html"])})
        else:
            shown = cast(Entry, {k: v for k, v in entry.items() if k not in EDITOR_ONLY})
        published = timefmt.parse_rfc3339(entry["published_at"])
        updated = timefmt.parse_rfc3339(entry["updated_at"])
        profile = entry.get("author_profile")
        return {
            **shown,
            "status": entry.get("status", "published"),
            "author_profile": self.profile(profile) if profile else None,
            "body_html": self.body_html(entry["body_html"]),
            "image": self.absolute(entry.get("image")),
            "url": self.entry_url(entry["blog"], entry["id"]),
            "time_label": timefmt.time_label(published, tz),
            "updated_label": timefmt.time_label(updated, tz) if updated > published else None,
        }

    def entries(self, entries: list[Entry], tz: str, *, for_editor: bool = False) -> list[PresentedEntry]:
        return [self.entry(entry, tz, for_editor=for_editor) for entry in entries]

    def change(self, event_type: str, data: str, tz: str) -> str:
        """A change's stored ``data`` (JSON) as readers and partners get it (JSON, one line).

        Called once per change by each process's hub and by the webhook intake, never per reader."""
        if event_type in ENTRY_EVENTS:
            return orjson.dumps(self.entry(orjson.loads(data), tz)).decode()
        if event_type == "blog.updated":
            return orjson.dumps(self.blog(orjson.loads(data))).decode()
        return data
