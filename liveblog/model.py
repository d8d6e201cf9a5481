"""The records: what Redis stores for a blog and an entry (facts), and what is served (presented).

Stored records hold facts only; links and labels are added when served by ``liveblog.present``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Blog(TypedDict):
    """A blog as stored (``lb:{slug}:blog`` field ``doc``, and the ``data`` of ``blog.updated``)."""

    slug: str
    title: str
    description: str | None
    status: str  # live | ended
    language: str
    timezone: str  # IANA name; the blog's time labels are computed in it
    created_at: str  # RFC 3339, UTC
    updated_at: str
    coverage_start: str
    coverage_end: str | None
    related: list[dict[str, str]]


class BlogUrls(TypedDict):
    page: str
    events: str
    atom: str
    json_feed: str
    embed: str
    api: str


class PresentedBlog(Blog):
    urls: BlogUrls
    readers: NotRequired[int]  # open event streams across processes (GET /api/blogs/{slug} only)


class Entry(TypedDict):
    """An entry as stored (``lb:{slug}:entries``, and the ``data`` of its ``entry.*`` changes)."""

    id: str
    blog: str  # the blog's slug
    title: str | None
    body_html: str  # sanitized
    author: str | None
    published_at: str  # RFC 3339, UTC
    updated_at: str
    key_event: bool
    pinned: bool
    version: int
    author_profile: NotRequired[dict[str, Any] | None]  # the author's profile when posted (authors.py)
    body: NotRequired[str]  # the source as written: shown to editors only
    image: NotRequired[str | None]  # the absolute URL of the entry's first image (media)
    status: NotRequired[str]  # published (absent in older entries) | draft | scheduled (drafts.py)
    publish_at: NotRequired[str | None]  # scheduled drafts: when they are published
    deleted: NotRequired[bool]  # only in an ``entry.deleted`` change
    deleted_at: NotRequired[str]


class PresentedEntry(Entry):
    url: str
    time_label: str  # publication time in the blog's timezone, ``14.25``
    updated_label: str | None  # edit time, once edited after publication
