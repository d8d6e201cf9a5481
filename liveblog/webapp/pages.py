"""The reader's pages: ``GET /blogs/{slug}`` (the live page) and ``GET /blogs/{slug}/embed``.

Server-rendered (they work without JavaScript), then kept live by ``web/static/live.js`` over the
event stream. The page is cacheable for a few seconds; it carries the ID of the newest change it
reflects (read with the blog and entries in one atomic step, ``Store.snapshot``), and live.js resumes
the stream from there, so a page served from a cache (or rendered while an update lands) misses
nothing and gets nothing twice; live.js also deduplicates by entry id and version.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from liveblog import timefmt
from liveblog.jsonld import MAX_UPDATES, live_blog_posting, publisher
from liveblog.present import Presenter
from liveblog.store import NotFound, Store, ValidationError
from liveblog.webapp.api import PUBLIC_CACHE
from liveblog.webapp.inputs import slug_param
from liveblog.webapp.templating import csp, render, static_routes

PAGE_SIZE = 20

LABELS: dict[str, dict[str, str]] = {
    "it": {
        "update_at": "aggiornamento ore",
        "edited_at": "aggiornato alle",
        "time_sep": ".",
        "new_one": "1 nuovo aggiornamento",
        "new_many": "{n} nuovi aggiornamenti",
        "announce": "Nuovo aggiornamento ore {time}",
        "key_event": "Momento chiave",
        "pinned": "In evidenza",
        "key_events": "Momenti chiave",
        "updates": "Aggiornamenti",
        "load_older": "Carica aggiornamenti precedenti",
        "loading": "Caricamento…",
        "load_failed": "Caricamento non riuscito: riprova",
        "state_live": "In diretta",
        "state_connecting": "Connessione…",
        "state_reconnecting": "Connessione persa, riconnessione…",
        "state_ended": "Diretta terminata",
        "ended_notice": "La diretta è terminata. Grazie per averci seguito.",
        "noscript": "Ricarica la pagina per vedere gli ultimi aggiornamenti.",
        "no_updates": "Nessun aggiornamento per ora.",
        "share": "Condividi",
        "copied": "Link copiato",
        "permalink": "Link a questo aggiornamento",
        "related": "Articoli correlati",
        "started": "Diretta iniziata il",
        "skip": "Vai agli aggiornamenti",
        "embed": "Incorpora questa diretta nel tuo sito",
        "embed_help": "Copia questo codice nella tua pagina:",
        "open_full": "Apri la diretta completa",
        "newer": "Torna agli aggiornamenti più recenti",
        "feeds": "Feed",
        "not_found": "Pagina non trovata",
        "not_found_detail": "Questa diretta non esiste o non è più disponibile.",
        "readers_one": "1 lettore",
        "follow_live": "Segui la diretta",
        "gone": "Aggiornamento rimosso",
        "gone_detail": "Questo aggiornamento è stato rimosso dalla redazione.",
        "readers_many": "{n} lettori",
    },
    "en": {
        "update_at": "update at",
        "edited_at": "edited at",
        "time_sep": ":",
        "new_one": "1 new update",
        "new_many": "{n} new updates",
        "announce": "New update at {time}",
        "key_event": "Key event",
        "pinned": "Pinned",
        "key_events": "Key events",
        "updates": "Updates",
        "load_older": "Load earlier updates",
        "loading": "Loading…",
        "load_failed": "Could not load: try again",
        "state_live": "Live",
        "state_connecting": "Connecting…",
        "state_reconnecting": "Connection lost, reconnecting…",
        "state_ended": "Coverage ended",
        "ended_notice": "This live coverage has ended. Thanks for following.",
        "noscript": "Reload the page to see the latest updates.",
        "no_updates": "No updates yet.",
        "share": "Share",
        "copied": "Link copied",
        "permalink": "Link to this update",
        "related": "Related articles",
        "started": "Coverage started on",
        "skip": "Skip to the updates",
        "embed": "Embed this live blog on your site",
        "embed_help": "Copy this code into your page:",
        "open_full": "Open the full live blog",
        "newer": "Back to the latest updates",
        "feeds": "Feeds",
        "not_found": "Page not found",
        "not_found_detail": "This live blog does not exist or is no longer available.",
        "readers_one": "1 reader",
        "follow_live": "Follow the live coverage",
        "gone": "Update removed",
        "gone_detail": "This update was removed by the newsroom.",
        "readers_many": "{n} readers",
    },
}


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["it"])


def not_found(request: Request, language: str = "it") -> Response:
    return render(request, "404.html", {"L": labels(language), "lang": language}, status=404,
                  headers={"Cache-Control": "public, max-age=5"})


async def _context(request: Request, *, embed: bool) -> dict[str, Any] | None:
    """Everything the live page and the embed show; None for an unknown blog or page."""
    store: Store = request.app.state.store
    presenter: Presenter = request.app.state.presenter
    before = request.query_params.get("before") or None
    try:
        slug = slug_param(request)
        if before is None:
            # The blog and its entries exactly as of the resume point `after`, in one atomic read:
            # the stream replays every change after it, none the page already shows.
            snap = await store.snapshot(slug, unpinned=max(MAX_UPDATES, PAGE_SIZE + 1))
            stored, after, stored_pinned, stored_newest = snap.blog, snap.after, snap.pinned, snap.newest
        else:  # the no-JavaScript "older updates" page: one page of the archive, not live
            stored, after, stored_pinned = await store.get_blog(slug), None, []
            stored_newest = await store.list_entries(slug, limit=PAGE_SIZE + 1, before=before)
    except (NotFound, ValidationError):
        return None
    blog = presenter.blog(stored)
    pinned = presenter.entries(stored_pinned, blog["timezone"])
    newest = presenter.entries(stored_newest, blog["timezone"])
    # The archive page lists every entry in order; the live page shows the pinned ones apart.
    unpinned = newest if before is not None else [e for e in newest if not e["pinned"]]
    shown = unpinned[:PAGE_SIZE]
    more = len(unpinned) > PAGE_SIZE
    cursor = shown[-1]["id"] if more else None
    L = labels(blog["language"])
    base = f"/blogs/{slug}/embed" if embed else f"/blogs/{slug}"
    settings = request.app.state.settings
    config = {
        "slug": slug,
        "status": blog["status"],
        # Live (not an archive page): kept current; an ended blog's page holds no stream but checks
        # `blog` every `ended_poll` seconds, so a reopened blog comes back to life in open pages.
        "stream": before is None,
        "events": f"/blogs/{slug}/events",
        "blog": f"/api/blogs/{slug}",
        "ended_poll": settings.page_ended_poll_seconds,
        "after": after,
        # The reader's watchdog reconnects when neither a change nor a heartbeat came for two of these.
        "heartbeat": settings.heartbeat_seconds,
        # Updates kept rendered during a long session; live.js drops older ones ("load older" again).
        "max_entries": settings.page_max_entries,
        "older": f"/api/blogs/{slug}/entries?limit={PAGE_SIZE}",
        "older_page": base,
        "next": f"/api/blogs/{slug}/entries?limit={PAGE_SIZE}&before={cursor}" if cursor else None,
        "next_page": f"{base}?before={cursor}" if cursor else None,
        "embed": embed,
        "labels": L,
    }
    created = timefmt.parse_rfc3339(blog["created_at"])
    return {
        "blog": blog,
        "L": L,
        "lang": blog["language"],
        "pinned": pinned,
        "entries": shown,
        "archive": before is not None,
        "embed": embed,
        "config": config,
        "started": timefmt.date_label(created, blog["timezone"], blog["language"]),
        "jsonld": None if embed or before is not None else live_blog_posting(
            blog, newest, publisher=publisher_of(request)),
    }


def publisher_of(request: Request) -> dict[str, Any] | None:
    settings = request.app.state.settings
    return publisher(settings.publisher_name, settings.publisher_logo)


async def live_page(request: Request) -> Response:
    context = await _context(request, embed=False)
    if context is None:
        return not_found(request)
    context["readers"] = await request.app.state.presence.readers(context["blog"]["slug"])
    return render(request, "live.html", context, headers={"Cache-Control": PUBLIC_CACHE})


async def embed_page(request: Request) -> Response:
    """The live list with minimal chrome, for partners' iframes (any site may frame it)."""
    context = await _context(request, embed=True)
    if context is None:
        return not_found(request)
    return render(request, "embed.html", context,
                  headers={"Cache-Control": PUBLIC_CACHE, "Content-Security-Policy": csp(frame_ancestors="*")})


routes: list[BaseRoute] = [
    Route("/blogs/{slug}", live_page, methods=["GET", "HEAD"]),
    Route("/blogs/{slug}/embed", embed_page, methods=["GET", "HEAD"]),
    *static_routes,
]
