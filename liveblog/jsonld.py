"""schema.org ``LiveBlogPosting`` for a blog's live page (what search engines read).

Built from the current state at render time, so edits and deletions are reflected on the next
render; ``datePublished`` of an update is its first publication and never changes.
"""

from __future__ import annotations

from typing import Any

from liveblog.model import PresentedBlog, PresentedEntry
from liveblog.render import html_text

# Search engines read a bounded list; the newest updates are the ones that matter.
MAX_UPDATES = 100
HEADLINE_MAX = 110


def _headline(entry: PresentedEntry, text: str) -> str:
    headline = entry.get("title") or text
    if len(headline) > HEADLINE_MAX:
        headline = headline[: HEADLINE_MAX - 1].rstrip() + "…"
    return headline


def _update(entry: PresentedEntry) -> dict[str, Any]:
    text = html_text(entry["body_html"])
    item: dict[str, Any] = {
        "@type": "BlogPosting",
        "@id": entry["url"],
        "url": entry["url"],
        "headline": _headline(entry, text),
        "datePublished": entry["published_at"],
        "dateModified": entry["updated_at"],
        "articleBody": text,
    }
    if entry.get("author"):
        item["author"] = person(entry)
    if entry.get("image"):
        item["image"] = entry["image"]
    return item


def blog_posting(blog: PresentedBlog, entry: PresentedEntry, *,
                 publisher: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-LD document of one update's own page: a BlogPosting that is part of the live blog."""
    page = blog["urls"]["page"]
    doc: dict[str, Any] = {"@context": "https://schema.org", **_update(entry), "mainEntityOfPage": entry["url"],
                           "inLanguage": blog["language"],
                           "isPartOf": {"@type": "LiveBlogPosting", "@id": page, "url": page,
                                        "headline": blog["title"]}}
    if entry.get("image"):
        doc["image"] = entry["image"]
    if publisher is not None:
        doc["publisher"] = publisher
    return doc


def person(entry: PresentedEntry) -> dict[str, Any]:
    """The entry's author as a schema.org Person (with its profile link and avatar when it has one)."""
    author: dict[str, Any] = {"@type": "Person", "name": entry["author"]}
    profile = entry.get("author_profile") or {}
    if profile.get("url"):
        author["url"] = profile["url"]
    if profile.get("title"):
        author["jobTitle"] = profile["title"]
    if profile.get("avatar"):
        author["image"] = profile["avatar"]
    return author


def publisher(name: str | None, logo: str | None) -> dict[str, Any] | None:
    """The publishing Organization (LIVEBLOG_PUBLISHER_NAME / _LOGO), or None when unset."""
    if not name:
        return None
    org: dict[str, Any] = {"@type": "Organization", "name": name}
    if logo:
        org["logo"] = {"@type": "ImageObject", "url": logo}
    return org


def live_blog_posting(blog: PresentedBlog, entries: list[PresentedEntry], *,
                      publisher: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-LD document for ``blog`` with ``entries`` (current state, newest first)."""
    page = blog["urls"]["page"]
    latest = max([blog["updated_at"], *(entry["updated_at"] for entry in entries)])
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "LiveBlogPosting",
        "@id": page,
        "url": page,
        "mainEntityOfPage": page,
        "headline": blog["title"],
        "inLanguage": blog["language"],
        "datePublished": blog["created_at"],
        "dateModified": latest,
        "coverageStartTime": blog["coverage_start"],
        "liveBlogUpdate": [_update(entry) for entry in entries[:MAX_UPDATES]],
    }
    if blog.get("description"):
        doc["description"] = blog["description"]
    if blog["status"] == "ended" and blog.get("coverage_end"):
        doc["coverageEndTime"] = blog["coverage_end"]
    if publisher is not None:
        doc["publisher"] = publisher
    return doc
