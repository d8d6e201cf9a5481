"""Photos over HTTP: ``POST /api/media`` (editor) stores an upload, ``GET /media/{path}`` serves the files.

The body streams into a file under the media directory (``liveblog.incoming``), counted and hashed
chunk by chunk, and is refused (413) as soon as it passes ``LIVEBLOG_MAX_MEDIA_BYTES``; no more than a
chunk of it is ever held in memory. The decoding and resizing run in ``liveblog.media.MediaWorkers``'
process, which reads that file: neither the event loop nor the pool's pipe ever carries the whole body.

Served files are immutable (content-addressed), so they are cached for a year. Only names that
``liveblog.media`` writes are looked up at all (``liveblog.media.FILE_PATH``): ``..``, encoded or not, absolute paths,
NUL bytes, temporary files and the manifests are 404 before the file system is touched, and
Starlette's ``StaticFiles`` (no symlink escapes, no directory listing, ETag/304) does the rest.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
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
from liveblog.incoming import Incoming
from liveblog.media import CONTENT_TYPES, EXTENSIONS, FILE_PATH, MediaError, MediaWorkers, looks_like_image
from liveblog.webapp.api import json_response
from liveblog.webapp.auth import require
from liveblog.webapp.problems import Problem

MEDIA_PREFIX = "/media"
IMMUTABLE = "public, max-age=31536000, immutable"
# Room for the multipart boundaries and part headers on top of the file itself.
MULTIPART_OVERHEAD = 16 * 1024
# Bytes copied at a time from a multipart part (spooled by Starlette) into the upload's file.
PART_CHUNK = 256 * 1024


def media_url(base: str, path: str) -> str:
    """The public URL of a stored file (``path`` relative to the media directory)."""
    return f"{base.rstrip('/')}{MEDIA_PREFIX}/{path}"


def _too_large(limit: int) -> Problem:
    return Problem(413, f"the file is larger than {limit} bytes (LIVEBLOG_MAX_MEDIA_BYTES)")


async def _capped(chunks: AsyncIterable[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """The chunks, refused with 413 the moment their total passes ``limit``."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        yield chunk


async def _part_chunks(upload: UploadFile) -> AsyncGenerator[bytes, None]:
    while chunk := await upload.read(PART_CHUNK):
        yield chunk


async def _to_file(chunks: AsyncIterable[bytes], media_dir: Path) -> Incoming:
    """The chunks written to a new incoming file, which is removed if anything goes wrong on the way
    (413, a client gone mid-body, a full disk)."""
    incoming = Incoming(media_dir)
    try:
        async for chunk in chunks:
            incoming.write(chunk)
        incoming.close()
    except BaseException:
        incoming.discard()
        raise
    return incoming


async def _upload(request: Request, limit: int, media_dir: Path) -> Incoming:
    """The uploaded file, from a raw image body or the multipart field ``file``, on disk."""
    declared = request.headers.get("content-length")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = ctype == "multipart/form-data"
    if not multipart and ctype not in CONTENT_TYPES:
        raise Problem(415, "send the image as image/jpeg, image/png, image/webp or image/gif, "
                           "or as the multipart/form-data field 'file'")
    if declared is not None and declared.isdigit() and int(declared) > limit + (MULTIPART_OVERHEAD if multipart else 0):
        raise _too_large(limit)
    if not multipart:
        return await _to_file(_capped(request.stream(), limit), media_dir)
    parser = MultiPartParser(request.headers, _capped(request.stream(), limit + MULTIPART_OVERHEAD), max_files=1,
                             max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Problem(400, f"the multipart body is malformed: {exc.message}") from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Problem(422, "the multipart body has no file field 'file'")
        return await _to_file(_capped(_part_chunks(upload), limit), media_dir)
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
    upload = await _upload(request, settings.max_media_bytes, settings.media_dir)
    if not looks_like_image(upload.head):
        upload.discard()
        raise Problem(415, "not a JPEG, PNG, WebP or GIF image" if upload.size else "the body is empty: send an image")
    workers: MediaWorkers = request.app.state.media
    try:
        manifest = await workers.store(upload)  # removes the file, whatever happens
    except MediaError as exc:
        raise Problem(exc.status, exc.detail) from exc
    except BrokenProcessPool as exc:
        raise Problem(503, "the process decoding photos stopped while working on this one: send it again",
                      headers={"Retry-After": "1"}) from exc
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
                        max_pixels=settings.media_max_pixels, yield_seconds=settings.media_yield_ms / 1000)
