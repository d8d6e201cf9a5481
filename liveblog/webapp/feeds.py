"""Atom (RFC 4287) and JSON Feed 1.1 per blog, with strong ETags and conditional GET.

Both feeds are built from one snapshot: the blog, its newest entries, and the time of the blog's
last change (the newest stream ID). That time is the feed's ``updated`` and its ``Last-Modified``:
unlike the entries' own timestamps it also moves when an entry is deleted.
"""

from __future__ import annotations

import hashlib
import mimetypes
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog import streamids, timefmt
from liveblog.model import Blog, BlogUrls, PresentedBlog, PresentedEntry
from liveblog.present import Presenter
from liveblog.render import html_text, plain_embeds, xml_chars
from liveblog.store import Store
from liveblog.webapp.inputs import slug_param

FEED_SIZE = 50
TITLE_WORDS = 12
CACHE_CONTROL = "public, max-age=5"
ATOM_NS = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
# Ids are URNs derived from the blog's slug and creation time, not from the public URL, so moving
# the service to another host does not make every feed reader show every update again.
_ID_NAMESPACE = uuid.UUID("0b5e7c1e-4a0f-5d3c-9a39-6c1b2f0f4e11")
_UNTITLED = {"it": "Aggiornamento delle {}", "en": "Update at {}"}


@dataclass(frozen=True)
class Snapshot:
    blog: PresentedBlog
    entries: list[PresentedEntry]
    changed: datetime  # the blog's last change (any entry created, edited or deleted, or the blog itself)

    @property
    def urls(self) -> BlogUrls:
        return self.blog["urls"]


async def _snapshot(request: Request) -> Snapshot:
    store: Store = request.app.state.store
    presenter: Presenter = request.app.state.presenter
    slug = slug_param(request)
    blog = presenter.blog(await store.get_blog(slug))  # NotFound -> 404 problem
    # Read before the entries: if a change lands in between, the feed claims an older time than
    # its content (harmless: a client re-fetches once) and never a newer one (a stale 304 for good).
    last = streamids.parse(await store.changes.newest_id(slug))
    entries = presenter.entries(await store.list_entries(slug, limit=FEED_SIZE), blog["timezone"])
    changed = timefmt.parse_rfc3339(blog["updated_at"])
    if last is not None and last[0] > 0:
        changed = max(changed, datetime.fromtimestamp(last[0] / 1000, UTC))
    return Snapshot(blog, entries, changed)


def item_id(blog: Blog, entry_id: str | None = None) -> str:
    """A stable ``urn:uuid:`` for the blog (``entry_id`` None) or one of its entries."""
    name = f"{blog['slug']}/{blog['created_at']}" + (f"/{entry_id}" if entry_id is not None else "")
    return uuid.uuid5(_ID_NAMESPACE, name).urn


def entry_title(entry: PresentedEntry, language: str) -> str:
    """The entry's title, else its first words, else "Aggiornamento delle 14.25"."""
    if entry["title"]:
        return entry["title"]
    words = html_text(entry["body_html"]).split()
    if words:
        return " ".join(words[:TITLE_WORDS]) + ("…" if len(words) > TITLE_WORDS else "")
    return _UNTITLED.get(language, _UNTITLED["it"]).format(entry["time_label"])


def _image_type(url: str) -> str:
    """The enclosure's media type, from the file name (ours end in .jpg, .webp or .gif)."""
    return mimetypes.guess_type(url.split("?")[0])[0] or "image/jpeg"


# ---- Atom ----------------------------------------------------------------------------------------

def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    # ElementTree writes any character; XML 1.0 forbids some (text stored before they were refused).
    element = ET.SubElement(parent, tag, {name: xml_chars(value) for name, value in attrs.items()})
    if text is not None:
        element.text = xml_chars(text)
    return element


def _author(parent: ET.Element, name: str, uri: str | None = None) -> None:
    author = _sub(parent, "author")
    _sub(author, "name", name)
    if uri:
        _sub(author, "uri", uri)


def _profile(entry: PresentedEntry) -> dict[str, Any]:
    return entry.get("author_profile") or {}


def atom_document(snap: Snapshot) -> bytes:
    blog, urls = snap.blog, snap.urls
    # Unqualified names under a default namespace declaration: the plain ``<feed xmlns="…">`` that
    # feed readers expect, rather than ElementTree's ``ns0:`` prefixes.
    feed = ET.Element("feed", {"xmlns": ATOM_NS, XML_LANG: blog["language"]})
    _sub(feed, "id", item_id(blog))
    _sub(feed, "title", blog["title"])
    if blog.get("description"):
        _sub(feed, "subtitle", blog["description"])
    _sub(feed, "updated", timefmt.rfc3339(snap.changed))
    _sub(feed, "link", rel="self", type="application/atom+xml", href=urls["atom"])
    _sub(feed, "link", rel="alternate", type="text/html", href=urls["page"])
    _sub(feed, "link", rel="alternate", type="application/feed+json", href=urls["json_feed"])
    # Entries without an author inherit this one (RFC 4287 §4.1.1 needs an author for each entry).
    _author(feed, blog["title"])
    _sub(feed, "generator", "liveblog")
    for entry in snap.entries:
        node = _sub(feed, "entry")
        _sub(node, "id", item_id(blog, entry["id"]))
        _sub(node, "title", entry_title(entry, blog["language"]))
        _sub(node, "updated", entry["updated_at"])
        _sub(node, "published", entry["published_at"])
        _sub(node, "link", rel="alternate", type="text/html", href=entry["url"])
        if entry["author"]:
            _author(node, entry["author"], _profile(entry).get("url"))
        if entry.get("key_event"):
            _sub(node, "category", term="key-event")
        image = entry.get("image")
        if image:
            _sub(node, "link", rel="enclosure", type=_image_type(image), href=image)
        _sub(node, "content", plain_embeds(entry["body_html"]), type="html")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


# ---- JSON Feed -----------------------------------------------------------------------------------

def json_feed_document(snap: Snapshot) -> bytes:
    blog, urls = snap.blog, snap.urls
    language = blog["language"]
    items = []
    for entry in snap.entries:
        item: dict[str, Any] = {
            "id": item_id(blog, entry["id"]),
            "url": entry["url"],
            "title": entry_title(entry, language),
            "content_html": plain_embeds(entry["body_html"]),
            "date_published": entry["published_at"],
            "date_modified": entry["updated_at"],
        }
        if entry.get("image"):
            item["image"] = entry["image"]
        if entry.get("author"):
            profile = _profile(entry)
            item["authors"] = [{"name": entry["author"],
                                **{name: profile[name] for name in ("url", "avatar") if profile.get(name)}}]
        if entry.get("key_event"):
            item["tags"] = ["key-event"]
        items.append(item)
    document: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": blog["title"],
        "home_page_url": urls["page"],
        "feed_url": urls["json_feed"],
        "language": language,
        "authors": [{"name": blog["title"]}],
        "expired": blog["status"] == "ended",
        "items": items,
    }
    if blog.get("description"):
        document["description"] = blog["description"]
    return orjson.dumps(document)


# ---- HTTP: validators and conditional GET ---------------------------------------------------------

def _etag_matches(header: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison, a list of tags, or ``*``."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


def _last_modified(changed: datetime, now: datetime) -> datetime:
    """HTTP dates have whole seconds. A response made in the same second as the last change could
    be followed by another change within that second that an ``If-Modified-Since`` would then hide;
    such a response claims the second before, so the next conditional request gets the full feed."""
    floor = changed.replace(microsecond=0)
    if now.replace(microsecond=0) <= floor:
        return datetime.fromtimestamp(floor.timestamp() - 1, UTC)
    return floor


def _not_modified(request: Request, etag: str, changed: datetime) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:  # takes precedence over If-Modified-Since (RFC 9110 §13.2.2)
        return _etag_matches(if_none_match, etag)
    if_modified_since = request.headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError, OverflowError):  # year 99999999999 overflows
        return False  # an invalid date is ignored
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return changed.replace(microsecond=0) <= since


def _feed_endpoint(build: Callable[[Snapshot], bytes], media_type: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        snap = await _snapshot(request)
        body = build(snap)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {
            "ETag": etag,
            "Last-Modified": format_datetime(_last_modified(snap.changed, timefmt.now()), usegmt=True),
            "Cache-Control": CACHE_CONTROL,
        }
        if _not_modified(request, etag, snap.changed):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    return endpoint


routes = [
    Route("/blogs/{slug}/feed.atom", _feed_endpoint(atom_document, "application/atom+xml; charset=utf-8"),
          methods=["GET"]),
    Route("/blogs/{slug}/feed.json", _feed_endpoint(json_feed_document, "application/feed+json; charset=utf-8"),
          methods=["GET"]),
]
