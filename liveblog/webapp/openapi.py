"""``GET /api/openapi.json``: an OpenAPI 3.1 description of the whole HTTP API.

Written by hand, next to the code, and kept honest by two tests: every route of the app appears in
it (``tests/test_openapi.py``), and schemathesis sends generated requests for every operation to a
live server and checks that no answer is a 5xx and that every answer conforms to this document.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from liveblog import __version__

SLUG = "^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
JSON = "application/json"
PROBLEM = "application/problem+json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


SCHEMAS: dict[str, Any] = {
    "Problem": obj({
        "type": STRING, "status": {"type": "integer"}, "title": STRING, "detail": STRING,
        "current": {"description": "412 only: the entry as it is now", **ref("Entry")},
    }, ("status", "title", "detail")),
    "BlogUrls": obj({name: {"type": "string", "format": "uri"}
                     for name in ("page", "events", "atom", "json_feed", "embed", "api")}),
    "Blog": obj({
        "slug": {"type": "string", "pattern": SLUG},
        "title": STRING,
        "description": nullable(STRING),
        "status": {"enum": ["live", "ended"]},
        "language": {"enum": ["it", "en"]},
        "timezone": STRING,
        "created_at": TIME,
        "updated_at": TIME,
        "coverage_start": TIME,
        "coverage_end": nullable(TIME),
        "related": {"type": "array", "items": {"type": "object"}},
        "urls": ref("BlogUrls"),
        "readers": {"type": "integer", "minimum": 0,
                    "description": "GET /api/blogs/{slug} only: open event streams across all processes"},
    }, ("slug", "title", "status", "language", "timezone", "urls")),
    "BlogList": obj({"blogs": {"type": "array", "items": ref("Blog")}}, ("blogs",)),
    "BlogCreate": obj({
        "slug": {"type": "string", "pattern": SLUG},
        "title": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": nullable({"type": "string", "maxLength": 2000}),
        "language": {"enum": ["it", "en"]},
        "timezone": {"type": "string", "description": "an IANA time zone", "examples": ["Europe/Rome"]},
    }, ("slug", "title"), closed=True),
    "BlogPatch": obj({
        "title": {"type": "string", "minLength": 1, "maxLength": 300},
        "description": nullable({"type": "string", "maxLength": 2000}),
        "status": {"enum": ["live", "ended"]},
    }, closed=True),
    "Entry": obj({
        "id": STRING,
        "blog": STRING,
        "title": nullable(STRING),
        "body_html": {"type": "string", "description": "sanitized HTML"},
        "body": {"type": "string", "description": "the source as written (editor tokens only)"},
        "author": nullable(STRING),
        "author_profile": nullable(ref("Author")),
        "published_at": TIME,
        "updated_at": TIME,
        "time_label": {"type": "string", "description": "wall-clock time in the blog's timezone, e.g. 14.25"},
        "updated_label": nullable(STRING),
        "key_event": {"type": "boolean"},
        "pinned": {"type": "boolean"},
        "version": {"type": "integer", "minimum": 1},
        "url": {"type": "string", "format": "uri"},
        "image": nullable({"type": "string", "format": "uri", "description": "the first image, absolute"}),
        "status": {"enum": ["published", "draft", "scheduled"],
                   "description": "draft and scheduled entries are shown to editors only"},
        "publish_at": nullable({**TIME, "description": "scheduled entries: when they are published"}),
    }, ("id", "blog", "title", "body_html", "author", "published_at", "time_label", "key_event", "pinned",
        "version", "updated_at", "status")),
    "EntryPage": obj({"entries": {"type": "array", "items": ref("Entry")}, "next": nullable(STRING)},
                     ("entries", "next")),
    "EntryCreate": obj({
        "body": {"type": "string", "minLength": 1, "maxLength": 50_000, "description": "Markdown or HTML"},
        "title": nullable({"type": "string", "maxLength": 300}),
        "author": nullable({"type": "string", "maxLength": 120}),
        "author_id": {"type": "string", "description": "an author profile's id (instead of author)"},
        "key_event": {"type": "boolean"},
        "pinned": {"type": "boolean"},
        "status": {"enum": ["published", "draft", "scheduled"],
                   "description": "draft: kept for editors only (id `d…`); scheduled needs publish_at"},
        "publish_at": {**TIME, "description": "a future time: the entry is published by itself then"},
    }, ("body",), closed=True),
    "EntryPatch": obj({
        "body": {"type": "string", "minLength": 1, "maxLength": 50_000},
        "title": nullable({"type": "string", "maxLength": 300}),
        "author": nullable({"type": "string", "maxLength": 120}),
        "key_event": {"type": "boolean"},
        "pinned": {"type": "boolean"},
        "status": {"enum": ["published", "draft", "scheduled"],
                   "description": "published: publish a draft or scheduled entry now (one entry.created); "
                                  "draft: unschedule"},
        "publish_at": {**TIME, "description": "(re)schedule a draft"},
    }, closed=True),
    "RevisionList": obj({"revisions": {"type": "array", "items": obj({
        "version": {"type": "integer", "minimum": 1}, "body": STRING, "title": nullable(STRING),
        "key_event": {"type": "boolean"}, "pinned": {"type": "boolean"}, "updated_at": TIME,
        "by": nullable(STRING),
    }, ("version", "body", "title", "updated_at", "by"))}}, ("revisions",)),
    "Author": obj({
        "id": STRING, "name": STRING, "title": nullable(STRING),
        "url": nullable({"type": "string", "format": "uri"}),
        "avatar": nullable({"type": "string", "format": "uri"}), "created_at": TIME,
    }, ("id", "name")),
    "AuthorList": obj({"authors": {"type": "array", "items": ref("Author")}}, ("authors",)),
    "AuthorCreate": obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "title": nullable({"type": "string", "maxLength": 120}),
        "url": nullable({"type": "string", "format": "uri", "maxLength": 500}),
        "avatar": nullable({"type": "string", "maxLength": 500,
                            "description": "an https image URL, or the url of an uploaded photo (/media/…)"}),
    }, ("name",), closed=True),
    "Preview": obj({"body_html": STRING, "author": nullable(STRING)}, ("body_html",)),
    "Webhook": obj({
        "id": STRING,
        "url": {"type": "string", "format": "uri"},
        "blogs": {"type": "array", "items": STRING},
        "events": {"type": "array", "items": STRING},
        "description": nullable(STRING),
        "created_at": nullable(TIME),
        "state": {"enum": ["active", "disabled"]},
        "disabled_at": nullable(TIME),
        "disabled_reason": nullable(STRING),
        "consecutive_failures": {"type": "integer"},
        "failing_since": nullable(TIME),
        "last_success_at": nullable(TIME),
        "last_failure_at": nullable(TIME),
        "last_error": nullable(STRING),
        "delivered_total": {"type": "integer"},
        "failed_total": {"type": "integer"},
        "pending": {"type": "integer"},
        "secret": {"type": "string", "description": "whsec_…, in the creation answer only"},
    }, ("id", "url", "blogs", "events", "state")),
    "WebhookList": obj({"webhooks": {"type": "array", "items": ref("Webhook")}}, ("webhooks",)),
    "WebhookCreate": obj({
        "url": {"type": "string", "format": "uri"},
        "blogs": {"type": "array", "minItems": 1, "items": STRING, "description": "slugs, or [\"*\"]"},
        "events": {"type": "array", "minItems": 1,
                   "items": {"enum": ["entry.created", "entry.updated", "entry.deleted", "blog.updated"]}},
        "description": nullable({"type": "string", "maxLength": 500}),
    }, ("url", "blogs"), closed=True),
    "WebhookPatch": obj({"state": {"enum": ["active", "disabled"]}}, closed=False),
    "Deliveries": obj({"deliveries": {"type": "array", "items": {"type": "object"}}}, ("deliveries",)),
    "Replay": obj({"since_event_id": {"type": "string", "examples": ["1732540000000-0", "0"]}},
                  ("since_event_id",), closed=True),
    "Health": obj({"status": STRING}, ("status",)),
    "Media": obj({
        "id": {"type": "string", "description": "the SHA-256 prefix of the uploaded bytes"},
        "url": {"type": "string", "format": "uri", "description": "the largest variant"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "content_type": {"enum": ["image/jpeg", "image/webp", "image/gif"]},
        "variants": {"type": "array", "items": obj({"url": {"type": "string", "format": "uri"},
                                                    "width": {"type": "integer", "maximum": 2000},
                                                    "height": {"type": "integer"}},
                                                   ("url", "width", "height"))},
    }, ("id", "url", "width", "height", "content_type", "variants")),
    "Token": obj({
        "id": {"type": "string", "pattern": "^tok_[0-9a-f]{16}$"},
        "name": STRING,
        "role": {"enum": ["editor", "admin"]},
        "blogs": {"type": "array", "items": STRING, "description": "the blogs it may act on; [] = every blog"},
        "created_at": nullable(TIME),
        "last_used_at": nullable(TIME),
        "token": {"type": "string", "description": "the secret, in the creation answer only"},
    }, ("id", "name", "role", "blogs", "created_at", "last_used_at")),
    "TokenList": obj({"tokens": {"type": "array", "items": ref("Token")}}, ("tokens",)),
    "TokenCreate": obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "role": {"enum": ["editor", "admin"]},
        "blogs": {"type": "array", "items": {"type": "string", "pattern": SLUG},
                  "description": "limit an editor token to these blogs (403 elsewhere)"},
        "author_id": {"type": "string", "description": "an author profile: posts without author/author_id "
                                                       "are signed with it"},
    }, ("name",), closed=True),
}


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": ref("Problem")}}}


def ok(description: str, schema: str | None = None, media: str = JSON, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, **extra}
    if schema is not None:
        answer["content"] = {media: {"schema": ref(schema)}}
    elif media != JSON:
        answer["content"] = {media: {"schema": STRING}}
    return answer


def body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": ref(schema)}}}


# Answers any operation may give (RFC 9457 problem documents).
COMMON = {
    "400": problem("malformed request (bad JSON, bad parameter)"),
    "413": problem("request body too large"),
    "415": problem("not JSON"),
    "422": problem("invalid fields"),
    "429": problem("too many event streams from this client"),
    "503": problem("the data store is unavailable, or the server is at its connection limit"),
}
AUTH = {"401": problem("no valid bearer token"), "403": problem("the token's role or blogs do not allow this")}
NOT_FOUND = {"404": problem("no such blog, entry or subscription")}
SECURED: list[dict[str, list[str]]] = [{"bearer": []}]

SLUG_PARAM = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string", "pattern": SLUG}}
ENTRY_PARAM = {"name": "entry_id", "in": "path", "required": True, "schema": {"type": "string"}}
SUB_PARAM = {"name": "sub_id", "in": "path", "required": True, "schema": {"type": "string"}}
TOKEN_PARAM = {"name": "token_id", "in": "path", "required": True, "schema": {"type": "string"}}
ETAG = {"ETag": {"schema": STRING, "description": 'the entry\'s version, e.g. "3"'}}


def op(summary: str, responses: dict[str, Any], *, tag: str, secured: bool = False,
       request: dict[str, Any] | None = None, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": [tag],
                                 "responses": {**responses, **COMMON, **(AUTH if secured else {})}}
    if secured:
        operation["security"] = SECURED
    if request is not None:
        operation["requestBody"] = request
    if parameters:
        operation["parameters"] = parameters
    return operation


PATHS: dict[str, Any] = {
    "/api/blogs": {
        "get": op("List blogs", {"200": ok("every blog", "BlogList")}, tag="blogs"),
        "post": op("Create a blog (admin)", {"201": ok("the new blog", "Blog"), "409": problem("slug taken")},
                   tag="blogs", secured=True, request=body("BlogCreate")),
    },
    "/api/blogs/{slug}": {
        "parameters": [SLUG_PARAM],
        "get": op("A blog", {"200": ok("the blog", "Blog"), **NOT_FOUND}, tag="blogs"),
        "patch": op("Change a blog's title, description or status (editor)",
                    {"200": ok("the blog", "Blog"), **NOT_FOUND, "409": problem("concurrent change")},
                    tag="blogs", secured=True, request=body("BlogPatch")),
    },
    "/api/blogs/{slug}/entries": {
        "parameters": [SLUG_PARAM],
        "get": op("Entries, newest first", {"200": ok("one page", "EntryPage"), **NOT_FOUND}, tag="entries",
                  parameters=[
                      {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                      {"name": "before", "in": "query", "schema": STRING,
                       "description": "the id of the last entry of the previous page"},
                      {"name": "status", "in": "query", "schema": {"enum": ["published", "draft", "scheduled"]},
                       "description": "draft or scheduled: the unpublished entries (editor token; scheduled "
                                      "soonest first)"}]),
        "post": op("Post an update (editor)",
                   {"201": ok("the entry (or, for a replayed Idempotency-Key, the original)", "Entry"),
                    **NOT_FOUND},
                   tag="entries", secured=True, request=body("EntryCreate"),
                   parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "maxLength": 200}}]),
    },
    "/api/blogs/{slug}/entries/{entry_id}": {
        "parameters": [SLUG_PARAM, ENTRY_PARAM],
        "get": op("An entry (with its source `body` for an editor token of the blog)",
                  {"200": ok("the entry", "Entry", headers=ETAG), **NOT_FOUND}, tag="entries"),
        "patch": op("Correct, pin or mark an entry (editor)",
                    {"200": ok("the entry, version + 1", "Entry", headers=ETAG), **NOT_FOUND,
                     "409": problem("concurrent change"), "412": problem("If-Match does not match: `current`")},
                    tag="entries", secured=True, request=body("EntryPatch"),
                    parameters=[{"name": "If-Match", "in": "header", "schema": STRING}]),
        "delete": op("Delete an entry (editor)",
                     {"204": ok("deleted; readers and partners are told"), **NOT_FOUND,
                      "409": problem("concurrent change"), "412": problem("If-Match does not match: `current`")},
                     tag="entries", secured=True, parameters=[{"name": "If-Match", "in": "header", "schema": STRING}]),
    },
    "/api/blogs/{slug}/entries/{entry_id}/revisions": {
        "parameters": [SLUG_PARAM, ENTRY_PARAM],
        "get": op("Every version of an entry, oldest first (editor); restore one by PATCHing its body and title",
                  {"200": ok("the versions", "RevisionList"), **NOT_FOUND}, tag="entries", secured=True),
    },
    "/api/preview": {
        "post": op("Render a body as a post would be rendered now (editor)", {"200": ok("the HTML", "Preview")},
                   tag="entries", secured=True,
                   request={"required": True, "content": {JSON: {"schema": obj({
                       "body": STRING, "blog": {"type": "string", "description": "403 if the token may not act on it"},
                   })}}},
                   parameters=[{"name": "language", "in": "query", "schema": {"enum": ["it", "en"]},
                                "description": "the blog's language (words of video placeholders)"}]),
    },
    "/api/media": {
        "post": op("Upload a photo (editor): metadata stripped, orientation applied, variants up to 2000 px",
                   {"201": ok("the stored photo", "Media"),
                    "413": problem("larger than LIVEBLOG_MAX_MEDIA_BYTES"),
                    "415": problem("not a JPEG, PNG, WebP or GIF image"),
                    "422": problem("more than 50 megapixels, a decompression bomb, or undecodable")},
                   tag="media", secured=True,
                   request={"required": True, "content": {
                       **{kind: {"schema": {"type": "string", "contentMediaType": kind}}
                          for kind in ("image/jpeg", "image/png", "image/webp", "image/gif")},
                       "multipart/form-data": {"schema": obj({"file": {"type": "string", "contentMediaType":
                                                                      "application/octet-stream"}},
                                                              ("file",))}}}),
    },
    "/api/webhooks": {
        "get": op("Webhook subscriptions (admin)", {"200": ok("every subscription", "WebhookList")},
                  tag="webhooks", secured=True),
        "post": op("Subscribe (admin); the secret is shown once", {"201": ok("the subscription", "Webhook")},
                   tag="webhooks", secured=True, request=body("WebhookCreate")),
    },
    "/api/webhooks/{sub_id}": {
        "parameters": [SUB_PARAM],
        "get": op("A subscription (admin)", {"200": ok("the subscription", "Webhook"), **NOT_FOUND},
                  tag="webhooks", secured=True),
        "patch": op("Re-enable or disable a subscription (admin)",
                    {"200": ok("the subscription", "Webhook"), **NOT_FOUND},
                    tag="webhooks", secured=True, request=body("WebhookPatch")),
        "delete": op("Unsubscribe (admin)", {"204": ok("deleted"), **NOT_FOUND}, tag="webhooks", secured=True),
    },
    "/api/webhooks/{sub_id}/deliveries": {
        "parameters": [SUB_PARAM],
        "get": op("Recent attempts (admin)", {"200": ok("newest first", "Deliveries"), **NOT_FOUND},
                  tag="webhooks", secured=True,
                  parameters=[{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}}]),
    },
    "/api/webhooks/{sub_id}/replay": {
        "parameters": [SUB_PARAM],
        "post": op("Deliver again every change after an event ID (admin)",
                   {"202": ok("queued", None, content={JSON: {"schema": {"type": "object"}}}), **NOT_FOUND},
                   tag="webhooks", secured=True, request=body("Replay")),
    },
    "/api/authors": {
        "get": op("Author profiles (editor)", {"200": ok("every author", "AuthorList")}, tag="authors",
                  secured=True),
        "post": op("Create an author profile (admin)", {"201": ok("the profile", "Author")}, tag="authors",
                   secured=True, request=body("AuthorCreate")),
    },
    "/api/tokens": {
        "get": op("Bearer tokens (admin); never their secrets", {"200": ok("every stored token", "TokenList")},
                  tag="tokens", secured=True),
        "post": op("Create a token (admin); the secret is shown once, as `token`",
                   {"201": ok("the token with its secret", "Token")},
                   tag="tokens", secured=True, request=body("TokenCreate")),
    },
    "/api/tokens/{token_id}": {
        "parameters": [TOKEN_PARAM],
        "delete": op("Revoke a token (admin): refused from now on, by every process",
                     {"204": ok("revoked"), "404": problem("no such token")}, tag="tokens", secured=True),
    },
    "/api/openapi.json": {
        "get": op("This document", {"200": ok("OpenAPI 3.1", None, content={JSON: {"schema": {"type": "object"}}})},
                  tag="service"),
    },
    "/blogs/{slug}": {
        "parameters": [SLUG_PARAM],
        "get": op("The live page", {"200": ok("HTML", media="text/html"), "304": ok("not modified"),
                                    "404": ok("no such blog", media="text/html")}, tag="pages"),
    },
    "/blogs/{slug}/updates/{entry_id}": {
        "parameters": [SLUG_PARAM, ENTRY_PARAM],
        "get": op("One update's own page (canonical, OpenGraph, Twitter card, JSON-LD BlogPosting)",
                  {"200": ok("HTML", media="text/html"), "404": ok("no such update", media="text/html"),
                   "410": ok("the update was deleted", media="text/html")}, tag="pages"),
    },
    "/blogs/{slug}/embed": {
        "parameters": [SLUG_PARAM],
        "get": op("The embeddable live page", {"200": ok("HTML", media="text/html"), "304": ok("not modified"),
                                               "404": ok("no such blog", media="text/html")}, tag="pages"),
    },
    "/editor/{slug}": {
        "parameters": [SLUG_PARAM],
        "get": op("The editor page", {"200": ok("HTML", media="text/html"),
                                      "404": ok("no such blog", media="text/html")}, tag="pages"),
    },
    "/blogs/{slug}/events": {
        "parameters": [SLUG_PARAM,
                       {"name": "Last-Event-ID", "in": "header", "schema": STRING},
                       {"name": "last_event_id", "in": "query", "schema": STRING}],
        "get": op("Server-sent events: entry.created, entry.updated, entry.deleted, blog.updated, reset",
                  {"200": ok("an endless event stream", media="text/event-stream"), **NOT_FOUND}, tag="stream"),
    },
    "/blogs/{slug}/feed.atom": {
        "parameters": [SLUG_PARAM],
        "get": op("Atom feed", {"200": ok("Atom", media="application/atom+xml"), "304": ok("not modified"),
                                **NOT_FOUND}, tag="feeds"),
    },
    "/blogs/{slug}/feed.json": {
        "parameters": [SLUG_PARAM],
        "get": op("JSON Feed 1.1", {"200": ok("JSON Feed", None, content={"application/feed+json": {"schema": {
                      "type": "object", "required": ["version", "title", "items"]}}}),
                                    "304": ok("not modified"), **NOT_FOUND}, tag="feeds"),
    },
    "/healthz": {"get": op("Liveness", {"200": ok("alive", "Health")}, tag="service")},
    "/readyz": {"get": op("Readiness: Redis reachable", {"200": ok("ready", "Health"),
                                                          "503": ok("not ready", "Health")}, tag="service")},
    "/metrics": {"get": op("Prometheus metrics", {"200": ok("text exposition format", media="text/plain")},
                           tag="service")},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "liveblog", "version": __version__,
                 "description": "Live-blog feed publisher: editors' API, live page, server-sent events, feeds "
                                "and webhook subscriptions. Errors are RFC 9457 problem documents."},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "`liveblog token create`; editor < admin"}},
        },
    }


async def openapi_json(_request: Request) -> Response:
    from liveblog.webapp.api import json_response

    return json_response(document(), headers={"Cache-Control": "public, max-age=300"})


routes = [Route("/api/openapi.json", openapi_json, methods=["GET"])]
