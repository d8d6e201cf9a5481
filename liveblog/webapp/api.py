"""The editor API: blogs and entries (see CONTRACT.md)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog import metrics
from liveblog.drafts import UNPUBLISHED, Drafts, is_draft_id, unpublished_status
from liveblog.model import Entry, PresentedEntry
from liveblog.present import Presenter
from liveblog.store import PreconditionFailed, Store
from liveblog.webapp.auth import is_editor_of, require
from liveblog.webapp.inputs import entry_id_param, idempotency_key, json_object, query_int, slug_param
from liveblog.webapp.problems import Problem

# Readers' first page of the API may be served from a CDN for a few seconds during a spike.
PUBLIC_CACHE = "public, max-age=5, stale-while-revalidate=10"
# What editors read carries the source: never kept by a shared cache.
EDITOR_CACHE = "private, no-store"


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json", headers=headers)


def _store(request: Request) -> Store:
    return request.app.state.store


def _drafts(request: Request) -> Drafts:
    return request.app.state.drafts


def _presenter(request: Request) -> Presenter:
    return request.app.state.presenter


async def _present_entry(request: Request, entry: Entry, *, editor: bool) -> PresentedEntry:
    return _presenter(request).entry(entry, await _store(request).timezone(entry["blog"]), for_editor=editor)


async def list_blogs(request: Request) -> Response:
    blogs = [_presenter(request).blog(blog) for blog in await _store(request).list_blogs()]
    return json_response({"blogs": blogs}, headers={"Cache-Control": PUBLIC_CACHE})


async def create_blog(request: Request) -> Response:
    await require(request, "admin")
    blog = _presenter(request).blog(await _store(request).create_blog(await json_object(request)))
    metrics.CHANGES_PUBLISHED.labels("blog.updated").inc()
    return json_response(blog, 201, headers={"Location": blog["urls"]["api"]})


async def get_blog(request: Request) -> Response:
    slug = slug_param(request)
    blog = _presenter(request).blog(await _store(request).get_blog(slug))
    blog["readers"] = await request.app.state.presence.readers(slug)
    return json_response(blog, headers={"Cache-Control": PUBLIC_CACHE})


async def update_blog(request: Request) -> Response:
    slug = slug_param(request)
    await require(request, "editor", blog=slug)
    blog = _presenter(request).blog(await _store(request).update_blog(slug, await json_object(request)))
    metrics.CHANGES_PUBLISHED.labels("blog.updated").inc()
    return json_response(blog)


def etag(entry: Entry) -> str:
    return f'"{entry["version"]}"'


def if_match(request: Request) -> frozenset[int] | None:
    """The versions an ``If-Match`` header accepts; None when absent or ``*`` (any current version).

    Strong comparison (RFC 9110): a weak tag never matches."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    versions = set()
    for tag in (part.strip() for part in raw.split(",")):
        if tag.startswith("W/"):
            continue
        if len(tag) < 3 or tag[0] != '"' or tag[-1] != '"' or not tag[1:-1].isdigit() or len(tag) > 22:
            raise Problem(400, f'If-Match must hold entity tags such as "3" (an entry\'s version), not {raw[:80]!r}')
        versions.add(int(tag[1:-1]))
    return frozenset(versions)


async def entry_response(request: Request, entry: Entry, *, editor: bool, status: int = 200,
                         headers: dict[str, str] | None = None) -> Response:
    """One entry: with its source for an editor (never cached by others), without it for anyone else."""
    shown = await _present_entry(request, entry, editor=editor)
    cache = {"Cache-Control": EDITOR_CACHE} if editor else {"Vary": "Authorization"}
    return json_response(shown, status, headers={"ETag": etag(entry), **cache, **(headers or {})})


async def precondition_failed(request: Request, exc: PreconditionFailed) -> Problem:
    """412 with the entry as it is now under ``current`` (the caller is an editor: with its source)."""
    return Problem(412, exc.detail, headers={"ETag": etag(exc.current)},
                   extra={"current": await _present_entry(request, exc.current, editor=True)})


async def create_entry(request: Request) -> Response:
    slug = slug_param(request)
    token = await require(request, "editor", blog=slug)
    key = idempotency_key(request)
    fields = await json_object(request)
    profile = None
    if "author_id" in fields:
        if "author" in fields:
            raise Problem(422, "send either 'author' (a name) or 'author_id' (a profile), not both")
        profile = await request.app.state.authors.profile(fields.pop("author_id"))
    elif "author" not in fields and token.get("author_id"):  # a token tied to an author signs as that author
        profile = await request.app.state.authors.profile(token["author_id"])
    fields.setdefault("author", token["name"])
    unpublished = unpublished_status(fields)
    if unpublished is not None:
        entry, created = await _drafts(request).create(slug, fields, *unpublished, idempotency_key=key,
                                                       author_profile=profile, by=token["name"])
    else:
        entry, created = await _store(request).create_entry(slug, fields, idempotency_key=key,
                                                            author_profile=profile, by=token["name"])
    headers = {"Location": f"/api/blogs/{slug}/entries/{entry['id']}"}
    if created and unpublished is None:
        metrics.CHANGES_PUBLISHED.labels("entry.created").inc()
    elif not created:
        headers["Idempotent-Replayed"] = "true"
    return await entry_response(request, entry, editor=True, status=201, headers=headers)


async def list_unpublished(request: Request, slug: str, status: str) -> Response:
    """``?status=draft|scheduled``: editors only."""
    await require(request, "editor", blog=slug)
    stored = await _drafts(request).list(slug, status)
    entries = _presenter(request).entries(stored, await _store(request).timezone(slug), for_editor=True)
    return json_response({"entries": entries, "next": None}, headers={"Cache-Control": EDITOR_CACHE})


async def list_entries(request: Request) -> Response:
    slug = slug_param(request)
    status = request.query_params.get("status") or "published"
    if status in UNPUBLISHED:
        return await list_unpublished(request, slug, status)
    if status != "published":
        raise Problem(400, "'status' must be 'published', 'draft' or 'scheduled'")
    limit = query_int(request, "limit", 20, low=1, high=100)
    before = request.query_params.get("before") or None
    stored = await _store(request).list_entries(slug, limit=limit, before=before)
    editor = await is_editor_of(request, slug)
    entries = _presenter(request).entries(stored, await _store(request).timezone(slug), for_editor=editor)
    following = None
    if len(entries) == limit:
        following = f"/api/blogs/{slug}/entries?limit={limit}&before={entries[-1]['id']}"
    cache = {"Cache-Control": EDITOR_CACHE} if editor else {"Cache-Control": PUBLIC_CACHE, "Vary": "Authorization"}
    return json_response({"entries": entries, "next": following}, headers=cache)


async def get_entry(request: Request) -> Response:
    slug, entry_id = slug_param(request), entry_id_param(request)
    if is_draft_id(entry_id):
        await require(request, "editor", blog=slug)
        return await entry_response(request, await _drafts(request).get(slug, entry_id), editor=True)
    entry = await _store(request).get_entry(slug, entry_id)
    return await entry_response(request, entry, editor=await is_editor_of(request, slug))


async def update_entry(request: Request) -> Response:
    slug, entry_id = slug_param(request), entry_id_param(request)
    token = await require(request, "editor", blog=slug)
    versions = if_match(request)
    fields = await json_object(request)
    try:
        if is_draft_id(entry_id):
            entry = await _drafts(request).update(slug, entry_id, fields, if_versions=versions, by=token["name"])
            if entry.get("status", "published") == "published":
                metrics.CHANGES_PUBLISHED.labels("entry.created").inc()
            return await entry_response(request, entry, editor=True)
        status = fields.pop("status", "published")
        if status != "published":
            raise Problem(422, "a published entry stays published ('status' may only be 'published')")
        if "publish_at" in fields:
            raise Problem(422, "'publish_at' is for drafts and scheduled entries, not published ones")
        entry = await _store(request).update_entry(slug, entry_id, fields, if_versions=versions, by=token["name"])
    except PreconditionFailed as exc:
        raise await precondition_failed(request, exc) from None
    metrics.CHANGES_PUBLISHED.labels("entry.updated").inc()
    return await entry_response(request, entry, editor=True)


async def delete_entry(request: Request) -> Response:
    slug, entry_id = slug_param(request), entry_id_param(request)
    await require(request, "editor", blog=slug)
    if is_draft_id(entry_id):
        await _drafts(request).delete(slug, entry_id)
        return Response(status_code=204)
    try:
        await _store(request).delete_entry(slug, entry_id, if_versions=if_match(request))
    except PreconditionFailed as exc:
        raise await precondition_failed(request, exc) from None
    metrics.CHANGES_PUBLISHED.labels("entry.deleted").inc()
    return Response(status_code=204)


async def entry_revisions(request: Request) -> Response:
    """Every version of an entry, oldest first (editors: the versions carry the source)."""
    slug, entry_id = slug_param(request), entry_id_param(request)
    await require(request, "editor", blog=slug)
    revisions = await _store(request).revisions(slug, entry_id)
    return json_response({"revisions": revisions}, headers={"Cache-Control": EDITOR_CACHE})


routes = [
    Route("/api/blogs", list_blogs, methods=["GET"]),
    Route("/api/blogs", create_blog, methods=["POST"]),
    Route("/api/blogs/{slug}", get_blog, methods=["GET"]),
    Route("/api/blogs/{slug}", update_blog, methods=["PATCH"]),
    Route("/api/blogs/{slug}/entries", list_entries, methods=["GET"]),
    Route("/api/blogs/{slug}/entries", create_entry, methods=["POST"]),
    Route("/api/blogs/{slug}/entries/{entry_id}", get_entry, methods=["GET"]),
    Route("/api/blogs/{slug}/entries/{entry_id}", update_entry, methods=["PATCH"]),
    Route("/api/blogs/{slug}/entries/{entry_id}", delete_entry, methods=["DELETE"]),
    Route("/api/blogs/{slug}/entries/{entry_id}/revisions", entry_revisions, methods=["GET"]),
]
