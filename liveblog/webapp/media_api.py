"""Photos over HTTP: ``POST /api/media`` (editor) stores an upload, ``GET /media/{path}`` serves the files.

The body is counted while it streams in and refused (413) as soon as it passes
``LIVEBLOG_MAX_MEDIA_BYTES``: at most that much (plus the multipart framing) is ever held. The decoding
and resizing run in ``liveblog.media.MediaWorkers``' process, never on the event loop.

Served files are immutable (content-addressed), so they are cached for a year. Only names that
``liveblog.media`` writes are looked up at all (``liveblog.media.FILE_PATH``): ``..``, encoded or not, absolute paths,
NUL bytes, temporary files and the manifests are 404 before the file system is touched, and
Starlette's ``StaticFiles`` (no symlink escapes, no directory listing, ETag/304) does the rest.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from liveblog.config import Settings
from liveblog.media import CONTENT_TYPES, EXTENSIONS, FILE_PATH, MediaError, MediaWorkers, looks_like_image
from liveblog.webapp.api import json_response
from liveblog.webapp.auth import require
from liveblog.webapp.problems import Problem

MEDIA_PREFIX = "/media"
IMMUTABLE = "public, max-age=31536000, immutable"
# Room for the multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD = 16 * 1024


def media_url(base: str, path: str) -> str:
    """The public URL of a stored file (``path`` relative to the media directory)."""
    return f"{base.rstrip('/')}{MEDIA_PREFIX}/{path}"


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the file is larger than {limit} bytes (LIVEBLOG_MAX_MEDIA_BYTES)")


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused with 413 the moment their total passes ``limit``."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        yield chunk


async def _upload(request: Request, limit: int) -> bytes:
    """The uploaded file's bytes, from a raw image body or the multipart field ``file``."""
    declared = request.headers.get("content-length")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = ctype == "multipart/form-data"
    if not multipart and ctype not in CONTENT_TYPES:
        raise Problem(415, "send the image as image/jpeg, image/png, image/webp or image/gif, "
                           "or as the multipart/form-data field 'file'")
    if declared is not None and declared.isdigit() and int(declared) > limit + (MULTIPART_OVERHEAD if multipart else 0):
        raise _too_large(limit)
    if not multipart:
        body = bytearray()
        async for chunk in _capped(request, limit):
            body += chunk
        return bytes(body)
    parser = MultiPartParser(request.headers, _capped(request, limit + MULTIPART_OVERHEAD), max_files=1,
                             max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Problem(400, f"the multipart body is malformed: {exc.message}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Problem(422, "the multipart body has no file field 'file'")
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        return data
    finally:
        await form.close()


def _present(manifest: dict[str, Any], base: str) -> dict[str, Any]:
    variants = [{"url": media_url(base, v["path"]), "width": v["width"], "height": v["height"]}
                for v in manifest["variants"]]
    largest = variants[-1]
    return {"id": manifest["id"], "url": largest["url"], "width": largest["width"], "height": largest["height"],
            "content_type": manifest["content_type"], "variants": variants}


async def upload_media(request: Request) -> Response:
    await require(request, "editor")
    settings: Settings = request.app.state.settings
    data = await _upload(request, settings.max_media_bytes)
    if not looks_like_image(data):
        raise Problem(415, "not a JPEG, PNG, WebP or GIF image" if data else "the body is empty: send an image")
    try:
        manifest = await request.app.state.media.store(data)
    except MediaError as exc:
        raise Problem(exc.status, exc.detail) from exc
    answer = _present(manifest, request.app.state.presenter.public_url)
    return json_response(answer, 201, headers={"Location": answer["url"]})


class MediaFiles(StaticFiles):
    """The stored files: only names the store writes, immutable, typed, never sniffed."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        match = FILE_PATH.fullmatch(path)
        if match is None:
            raise HTTPException(404)  # never reaches the file system
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = IMMUTABLE
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        if response.status_code == 200:
            response.headers["Content-Type"] = EXTENSIONS[match.group(2)]
        return response


def routes(settings: Settings) -> list[BaseRoute]:
    return [
        Route("/api/media", upload_media, methods=["POST"]),
        Mount(MEDIA_PREFIX, app=MediaFiles(directory=str(settings.media_dir), check_dir=False), name="media"),
    ]


def workers(settings: Settings) -> MediaWorkers:
    return MediaWorkers(settings.media_dir, workers=settings.media_workers,
                        max_pixels=settings.media_max_pixels)
