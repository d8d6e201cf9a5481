"""The editor's page (``GET /editor/{slug}``) and its preview endpoint (``POST /api/preview``).

The page is static HTML plus ``/static/editor.js``; everything it does goes through the public API
with the bearer token the editor pastes in (kept in the tab's sessionStorage, never in a cookie, so
the page needs no CSRF defence). The preview renders Markdown with the very function that renders
posted updates, so what the editor sees is what readers will get.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog import render as bodies
from liveblog.store import LIMITS, NotFound, Store, ValidationError
from liveblog.tokens import allows
from liveblog.webapp.api import json_response
from liveblog.webapp.auth import require
from liveblog.webapp.inputs import json_object, slug_param
from liveblog.webapp.pages import not_found
from liveblog.webapp.problems import Problem
from liveblog.webapp.templating import render

# Every visible string of the page, by blog language; the template and editor.js both read these.
LABELS: dict[str, dict[str, str]] = {
    "it": {
        "page_title": "Redazione",
        "reader_page": "Pagina dei lettori",
        "sign_in_title": "Accedi per scrivere",
        "sign_in_help": "Incolla il token di redazione. Resta solo in questa scheda.",
        "token": "Token",
        "sign_in": "Accedi",
        "sign_out": "Esci",
        "signed_in_as": "Connesso come {name}",
        "title": "Titolo (facoltativo)",
        "body": "Testo (Markdown)",
        "body_placeholder": "Scrivi l'aggiornamento… **grassetto**, *corsivo*, [link](https://…)",
        "preview": "Anteprima: come la vedranno i lettori",
        "preview_empty": "L'anteprima appare qui mentre scrivi.",
        "key_event": "Momento chiave",
        "pinned": "In evidenza",
        "publish": "Pubblica",
        "publishing": "Pubblicazione…",
        "shortcut": "Ctrl+Invio",
        "published_at": "Pubblicato alle {time}",
        "time_sep": ".",
        "published_list": "Aggiornamenti pubblicati",
        "save_draft": "Salva bozza",
        "schedule_at": "Pubblica il (ora del blog)",
        "schedule": "Programma",
        "pending_list": "Bozze e aggiornamenti programmati",
        "none_pending": "Nessuna bozza.",
        "draft_badge": "bozza",
        "draft_saved": "Bozza salvata: i lettori non la vedono.",
        "scheduled_for": "programmato per il {time}",
        "publish_now": "Pubblica ora",
        "revisions": "Versioni",
        "revision_line": "v{version} · {time} · {by}",
        "restore": "Ripristina",
        "none_yet": "Ancora nessun aggiornamento.",
        "load_more": "Carica aggiornamenti precedenti",
        "edit": "Modifica",
        "save": "Salva",
        "cancel": "Annulla",
        "delete": "Elimina",
        "confirm_delete": "Eliminare questo aggiornamento? I lettori non lo vedranno più.",
        "pin": "Metti in evidenza",
        "unpin": "Togli dall'evidenza",
        "mark_key": "Momento chiave",
        "unmark_key": "Non più chiave",
        "badge_pinned": "in evidenza",
        "badge_key": "momento chiave",
        "edited_at": "aggiornato alle {time}",
        "changed_elsewhere": "Nel frattempo qualcuno ha modificato questo aggiornamento.",
        "status_live": "In diretta",
        "status_ended": "Conclusa",
        "end_blog": "Termina la diretta",
        "reopen_blog": "Riapri la diretta",
        "confirm_end": "Terminare la diretta? I lettori vedranno che è conclusa.",
        "conn_live": "collegato",
        "conn_connecting": "connessione…",
        "conn_lost": "connessione persa, riprovo…",
        "network_error": "Rete non raggiungibile: il testo è salvo, riprova.",
        "error_prefix": "Non riuscito:",
        "photo": "Aggiungi foto",
        "photo_help": "Oppure trascina o incolla una foto nel testo.",
        "uploading": "Caricamento di {name}… {percent}%",
        "uploaded": "Foto caricata: scrivi il testo alternativo (ora selezionato) per chi non vede l'immagine.",
        "upload_too_large": "La foto {name} è troppo grande: il massimo è {max} MB.",
        "upload_not_image": "{name} non è un'immagine JPEG, PNG, WebP o GIF.",
        "upload_unprocessable": "La foto {name} non può essere elaborata: {detail}",
        "upload_auth": "Accesso scaduto: esci e accedi di nuovo, poi riprova.",
        "upload_network": "Rete non raggiungibile: la foto {name} non è stata caricata, riprova.",
        "upload_failed": "Caricamento di {name} non riuscito ({status}): {detail}",
        "alt_warning": "Attenzione: una foto non ha un testo alternativo descrittivo ({alt}). "
                       "Chi usa un lettore di schermo non saprà cosa mostra: correggi l'aggiornamento quando puoi.",
        "alt_empty": "vuoto",
        "error_detail": "Dettaglio tecnico:",
        "error_400": "La richiesta non è valida.",
        "error_401": "Il token non è valido o è stato revocato: accedi di nuovo.",
        "error_403": "Questo token non può farlo: ruolo o diretta non consentiti.",
        "error_404": "Non trovato: forse è stato eliminato.",
        "error_409": "Qualcuno lo sta modificando proprio ora: riprova.",
        "error_412": "Nel frattempo un collega ha modificato questo aggiornamento.",
        "error_413": "Il testo è troppo lungo.",
        "error_415": "La richiesta non è valida.",
        "error_422": "{field} non è valido.",
        "error_422_long": "{field} è troppo lungo.",
        "error_422_empty": "{field} è vuoto.",
        "error_429": "Troppe richieste: riprova tra poco.",
        "error_5xx": "Il servizio non risponde: il testo è salvo, riprova tra poco.",
        "error_other": "Errore imprevisto (HTTP {status}).",
        "field_body": "Il testo",
        "field_title": "Il titolo",
        "field_author": "La firma",
        "field_other": "Un campo",
        "conflict_title": "Un collega ha salvato questo aggiornamento mentre scrivevi.",
        "conflict_mine": "La tua versione",
        "conflict_theirs": "La versione del collega",
        "conflict_keep_mine": "Tieni la mia",
        "conflict_take_theirs": "Prendi la sua",
        "conflict_edit_theirs": "Modifica sulla sua",
        "conflict_kept": "Il tuo testo di prima, da copiare se ti serve:",
        "changed_meanwhile": "Nel frattempo un collega l'ha modificato: controlla e riprova.",
    },
    "en": {
        "page_title": "Newsroom",
        "reader_page": "Readers' page",
        "sign_in_title": "Sign in to write",
        "sign_in_help": "Paste your newsroom token. It stays in this tab only.",
        "token": "Token",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "signed_in_as": "Signed in as {name}",
        "title": "Title (optional)",
        "body": "Text (Markdown)",
        "body_placeholder": "Write the update… **bold**, *italic*, [link](https://…)",
        "preview": "Preview: what readers will see",
        "preview_empty": "The preview appears here as you type.",
        "key_event": "Key event",
        "pinned": "Pin to top",
        "publish": "Publish",
        "publishing": "Publishing…",
        "shortcut": "Ctrl+Enter",
        "published_at": "Published at {time}",
        "time_sep": ":",
        "published_list": "Published updates",
        "save_draft": "Save draft",
        "schedule_at": "Publish on (blog time)",
        "schedule": "Schedule",
        "pending_list": "Drafts and scheduled updates",
        "none_pending": "No drafts.",
        "draft_badge": "draft",
        "draft_saved": "Draft saved: readers do not see it.",
        "scheduled_for": "scheduled for {time}",
        "publish_now": "Publish now",
        "revisions": "Versions",
        "revision_line": "v{version} · {time} · {by}",
        "restore": "Restore",
        "none_yet": "No updates yet.",
        "load_more": "Load earlier updates",
        "edit": "Edit",
        "save": "Save",
        "cancel": "Cancel",
        "delete": "Delete",
        "confirm_delete": "Delete this update? Readers will no longer see it.",
        "pin": "Pin",
        "unpin": "Unpin",
        "mark_key": "Key event",
        "unmark_key": "Not key",
        "badge_pinned": "pinned",
        "badge_key": "key event",
        "edited_at": "edited at {time}",
        "changed_elsewhere": "Someone else changed this update meanwhile.",
        "status_live": "Live",
        "status_ended": "Ended",
        "end_blog": "End the live blog",
        "reopen_blog": "Reopen the live blog",
        "confirm_end": "End the live blog? Readers will see that it is over.",
        "conn_live": "connected",
        "conn_connecting": "connecting…",
        "conn_lost": "connection lost, retrying…",
        "network_error": "Network unreachable: your text is kept, try again.",
        "error_prefix": "Failed:",
        "photo": "Add photo",
        "photo_help": "Or drag or paste a photo into the text.",
        "uploading": "Uploading {name}… {percent}%",
        "uploaded": "Photo uploaded: type its alternative text (now selected) for readers who cannot see it.",
        "upload_too_large": "The photo {name} is too large: at most {max} MB.",
        "upload_not_image": "{name} is not a JPEG, PNG, WebP or GIF image.",
        "upload_unprocessable": "The photo {name} cannot be processed: {detail}",
        "upload_auth": "Your sign-in has expired: sign out and in again, then retry.",
        "upload_network": "Network unreachable: the photo {name} was not uploaded, try again.",
        "upload_failed": "Uploading {name} failed ({status}): {detail}",
        "alt_warning": "Warning: a photo has no descriptive alternative text ({alt}). "
                       "Screen-reader users will not know what it shows: correct the update when you can.",
        "alt_empty": "empty",
        "error_detail": "Technical detail:",
        "error_400": "The request is not valid.",
        "error_401": "The token is not valid or was revoked: sign in again.",
        "error_403": "This token may not do that: its role or blogs do not allow it.",
        "error_404": "Not found: it may have been deleted.",
        "error_409": "Someone is changing it right now: try again.",
        "error_412": "A colleague changed this update meanwhile.",
        "error_413": "The text is too long.",
        "error_415": "The request is not valid.",
        "error_422": "{field} is not valid.",
        "error_422_long": "{field} is too long.",
        "error_422_empty": "{field} is empty.",
        "error_429": "Too many requests: try again shortly.",
        "error_5xx": "The service does not answer: your text is kept, try again shortly.",
        "error_other": "Unexpected error (HTTP {status}).",
        "field_body": "The text",
        "field_title": "The title",
        "field_author": "The byline",
        "field_other": "A field",
        "conflict_title": "A colleague saved this update while you were writing.",
        "conflict_mine": "Your version",
        "conflict_theirs": "Your colleague's version",
        "conflict_keep_mine": "Keep mine",
        "conflict_take_theirs": "Take theirs",
        "conflict_edit_theirs": "Edit on top of theirs",
        "conflict_kept": "Your earlier text, to copy if you need it:",
        "changed_meanwhile": "A colleague changed it meanwhile: check and try again.",
    },
}


async def editor_page(request: Request) -> Response:
    store: Store = request.app.state.store
    try:
        slug = slug_param(request)
        blog = request.app.state.presenter.blog(await store.get_blog(slug))
    except NotFound:
        return not_found(request)  # the readers' HTML 404: a person is looking at this page
    labels = LABELS.get(blog["language"], LABELS["it"])
    config: dict[str, Any] = {
        "blog": blog,
        "labels": labels,
        # Same-origin paths: the page may be reached under another name than LIVEBLOG_PUBLIC_URL.
        "api": f"/api/blogs/{slug}",
        "events": f"/blogs/{slug}/events",
        "preview": f"/api/preview?language={blog['language']}",  # the words of video placeholders
        "media": "/api/media",
        "max_media_mb": round(request.app.state.settings.max_media_bytes / (1024 * 1024), 1),
    }
    return render(request, "editor.html", {"blog": blog, "t": labels, "lang": blog["language"], "config": config},
                  headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"})


async def preview(request: Request) -> Response:
    """``{body, blog?}`` -> ``{body_html, author}``: the sanitized HTML and byline a post would have now.

    Needs an editor token like posting does (for ``blog``, when given: 403 if the token is limited to
    other blogs); an empty body is fine (the page uses that to check a token at sign-in)."""
    token = await require(request, "editor")
    fields = await json_object(request)
    blog = fields.get("blog")
    if blog is not None and not (isinstance(blog, str) and allows(token, blog)):
        raise Problem(403, f"this token may not act on blog {blog!r}")
    body = fields.get("body", "")
    if not isinstance(body, str):
        raise ValidationError("'body' must be a string")
    if len(body) > LIMITS["body"]:
        raise ValidationError(f"'body' is longer than {LIMITS['body']} characters")
    language = request.query_params.get("language", "it")
    html = bodies.render(body, request.app.state.media_library, language).html
    return json_response({"body_html": html, "author": token["name"]},
                         headers={"Cache-Control": "no-store"})


routes = [
    Route("/editor/{slug}", editor_page, methods=["GET"]),
    Route("/api/preview", preview, methods=["POST"]),
]
