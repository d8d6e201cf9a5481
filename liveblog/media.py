"""Uploaded photos: decoded, cleaned and resized with Pillow, stored content-addressed on disk.

``ingest`` is the whole job for one upload. It is CPU-bound (a 20 MB JPEG takes a good part of a
second to decode), so the web process runs it in a separate, lowest-priority process (``MediaWorkers``): the event
loop that feeds the event streams never waits for it, and the GIL it would hold is another one. The upload
reaches it as a file (``liveblog.incoming``), never as bytes through the pool's pipe.

What comes out:

- every file is re-encoded from pixels only: no EXIF, GPS, XMP, comments or text chunks survive
  (the image's ``info`` is emptied before each save, and nothing is passed to the encoders); an ICC
  profile is converted to sRGB and then dropped (profiles carry free-text descriptions);
- the EXIF orientation is applied to the pixels first;
- variants at most ``MAX_WIDTH`` px wide, from ``WIDTHS`` up to the picture's own width: JPEG for opaque
  pictures, WebP (which keeps transparency) for pictures with an alpha channel;
- an animated GIF stays animated: one GIF variant, re-encoded frame by frame (scaled down past
  ``MAX_WIDTH``); its frames count against the pixel limit together;
- files live in ``<media dir>/<id[:2]>/<id>/<width>.<ext>``, where ``id`` is (a prefix of) the SHA-256
  of the uploaded bytes, computed while they stream in: the same photo uploaded twice (or at once by two
  editors) is stored once. Each file is written to a temporary name and renamed into place, and
  ``manifest.json`` is written last, so a crash or a concurrent upload never leaves a half file behind a
  final name.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import uuid
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from PIL import Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from liveblog.incoming import Incoming, remove_stale
from liveblog.pausing import Pauser

WIDTHS = (480, 960, 1600, 2000)
MAX_WIDTH = WIDTHS[-1]
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")
CONTENT_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}
EXTENSIONS = {"jpg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
JPEG_QUALITY = 82
WEBP_QUALITY = 82
MANIFEST = "manifest.json"
# The only names ever written (besides manifests and temporary files): <id[:2]>/<id>/<width>.<ext>.
FILE_PATH = re.compile(r"[0-9a-f]{2}/([0-9a-f]{32})/[0-9]{1,5}\.(jpg|webp|gif)")
MANIFESTS_CACHED = 4096
# Below the web process: an upload may be slow, the streams of every reader must not be.
WORKER_NICENESS = 19


class MediaError(Exception):
    """An upload that cannot be stored; ``status`` is the HTTP answer (415 or 422)."""

    status = 422

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:  # travels back from the worker process
        return (type(self), (self.detail,))


class NotAnImage(MediaError):
    status = 415


class Unprocessable(MediaError):
    status = 422


def looks_like_image(data: bytes) -> bool:
    """The signature of one of the accepted formats: junk is refused without bothering the pool."""
    return data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def relative_dir(ident: str) -> str:
    return f"{ident[:2]}/{ident}"


# ---- the job (runs in a worker process) ------------------------------------------------------------

def _guard(max_pixels: int) -> None:
    """Pillow's decompression-bomb guard at our limit, its warning (above the limit) made an error."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    _guard(max_pixels)
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        frames = getattr(image, "n_frames", 1)  # reads through a GIF's frames: may fail on broken data
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Unprocessable(f"the image has more than {max_pixels} pixels") from exc
    except UnidentifiedImageError as exc:
        raise NotAnImage("not a JPEG, PNG, WebP or GIF image") from exc
    except Exception as exc:  # hostile input makes decoders raise anything: it is the input's fault
        raise Unprocessable(f"the image could not be decoded: {exc}") from exc
    if image.width * image.height * frames > max_pixels:
        raise Unprocessable(f"the image has more than {max_pixels} pixels"
                            + (f" over its {frames} frames" if frames > 1 else ""))
    return image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Pixels in sRGB without a profile: the profile converted away, not just dropped (colours stay)."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                              outputMode=image.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a broken profile: keep the pixels as they are
    return converted if converted is not None else image


def _clean(image: Image.Image) -> Image.Image:
    """Nothing but pixels: every saver reads metadata from ``info`` (or the arguments, which we never pass)."""
    image.info = {}
    return image


def _widths(width: int) -> list[int]:
    top = min(width, MAX_WIDTH)
    return sorted({w for w in WIDTHS if w < top} | {top})


def _write(directory: Path, name: str, data: bytes) -> None:
    """Atomically: a reader sees the old file, no file or the whole new one, never half of one."""
    final = directory / name
    temporary = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    _clean(image).save(out, fmt, **options)
    return out.getvalue()


def _stills(image: Image.Image) -> tuple[str, list[tuple[int, int, bytes]]]:
    """(extension, [(width, height, bytes)]) for a still picture."""
    if image.format == "JPEG":
        image.draft("RGB", (MAX_WIDTH, MAX_WIDTH))  # decode at 1/2, 1/4… when that still covers MAX_WIDTH
    image = ImageOps.exif_transpose(image)
    alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = _to_srgb(image.convert("RGBA" if alpha else "RGB"))
    ext = "webp" if alpha else "jpg"
    out = []
    source = image
    # Largest first, each variant resized from the one above it: about 40 % less resizing work than from
    # the full picture every time, and the pixels differ by less than one level in 255 on average.
    for width in reversed(_widths(image.width)):
        height = max(1, round(image.height * width / image.width))
        sized = source if width == source.width else source.resize((width, height), Image.Resampling.LANCZOS)
        if alpha:
            data = _encode(sized, "WEBP", quality=WEBP_QUALITY, method=4)
        else:
            data = _encode(sized, "JPEG", quality=JPEG_QUALITY, progressive=True, optimize=True)
        out.append((width, height, data))
        source = sized
    return ext, out[::-1]


def _animation(image: Image.Image) -> tuple[str, list[tuple[int, int, bytes]]]:
    """One animated GIF, frames re-encoded from pixels, scaled to at most MAX_WIDTH."""
    width = min(image.width, MAX_WIDTH)
    height = max(1, round(image.height * width / image.width))
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
        durations.append(frame.info.get("duration", 100))
        pixels = frame.convert("RGBA")
        if width != image.width:
            pixels = pixels.resize((width, height), Image.Resampling.LANCZOS)
        frames.append(_clean(pixels))
    loop = image.info.get("loop", 0)
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=loop,
                   disposal=2, optimize=False)
    return "gif", [(width, height, out.getvalue())]


def ingest(path: str, ident: str, media_dir: str, max_pixels: int) -> dict[str, Any]:
    """Decode, clean, resize and store the upload in the file ``path`` (whose id is ``ident``); returns
    its manifest (paths relative to the media dir). The file is the caller's to remove.

    Raises ``NotAnImage`` (415) or ``Unprocessable`` (422)."""
    directory = Path(media_dir) / relative_dir(ident)
    manifest_path = directory / MANIFEST
    if manifest_path.is_file():  # stored before: same bytes, same result
        return orjson.loads(manifest_path.read_bytes())
    image = _open(Path(path).read_bytes(), max_pixels)
    try:
        if getattr(image, "is_animated", False) and image.format == "GIF":
            ext, variants = _animation(image)
        else:
            ext, variants = _stills(image)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Unprocessable(f"the image has more than {max_pixels} pixels") from exc
    except Exception as exc:  # truncated or corrupt data: decoders raise OSError, ValueError, EOFError…
        raise Unprocessable(f"the image could not be decoded: {exc}") from exc
    directory.mkdir(parents=True, exist_ok=True)
    listed = []
    for width, height, encoded in variants:
        _write(directory, f"{width}.{ext}", encoded)
        listed.append({"path": f"{relative_dir(ident)}/{width}.{ext}", "width": width, "height": height})
    manifest = {"id": ident, "content_type": EXTENSIONS[ext], "variants": listed}
    _write(directory, MANIFEST, orjson.dumps(manifest))
    return manifest


# ---- lookups (used when rendering bodies) -----------------------------------------------------------

class MediaLibrary:
    """Stored photos by URL: ``/media/…`` or the same path under any host (the public URL may have
    changed since the editor copied it). Manifests never change, so found ones are cached."""

    def __init__(self, media_dir: Path) -> None:
        self.media_dir = media_dir
        self._cache: dict[str, dict[str, Any]] = {}

    def manifest(self, url: str) -> dict[str, Any] | None:
        try:
            path = urlsplit(url).path
        except ValueError:
            return None
        match = FILE_PATH.fullmatch(path.removeprefix("/media/")) if path.startswith("/media/") else None
        if match is None:
            return None
        ident = match.group(1)
        if ident not in self._cache:
            try:
                found = orjson.loads((self.media_dir / relative_dir(ident) / MANIFEST).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                return None
            if len(self._cache) >= MANIFESTS_CACHED:
                self._cache.clear()
            self._cache[ident] = found
        return self._cache[ident]


# ---- the pool (used by the web process) ------------------------------------------------------------

def _die_with_parent() -> None:
    """Linux: the kernel kills this process when the web process that started it goes away, so a
    decode that an idle-priority worker has not finished never outlives its server."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the worker exits after its current job instead


def _worker_start(max_pixels: int) -> None:
    """Lowest CPU priority: SCHED_IDLE (Linux) runs the decoding when the web process and the readers'
    streams leave the CPU idle (a saturated machine slows uploads, never the streams); else nice 19."""
    _die_with_parent()
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(WORKER_NICENESS)
        except OSError:
            pass  # not allowed here: still correct, only less polite
    _guard(max_pixels)


def _broke(job: Future[Any]) -> bool:
    return not job.cancelled() and isinstance(job.exception(), BrokenProcessPool)


class MediaWorkers:
    """A small process pool for ``ingest``; one in-flight job per media id (same photo, same job).

    Created at start-up, it removes the incoming files that killed processes of this host left behind.
    ``pauser`` stops its processes while the hub publishes changes (``yield_seconds`` after the last
    publication, see ``liveblog.pausing``)."""

    def __init__(self, media_dir: Path, *, workers: int, max_pixels: int, yield_seconds: float = 0.0) -> None:
        self.media_dir = media_dir
        self.max_pixels = max_pixels
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self.pauser = Pauser(self.pids, yield_seconds)
        self._running: dict[str, asyncio.Future[dict[str, Any]]] = {}
        remove_stale(media_dir)

    async def store(self, upload: Incoming) -> dict[str, Any]:
        """``ingest`` of a complete upload in the pool; concurrent uploads of the same bytes share one job.

        The upload's file belongs to this call from its start (no ``await`` before the hand-over): it is
        removed when the job that reads it ends, however it ends, or at once if another upload's job
        is already doing the work. The job outlives a waiter that goes away (it is shielded): another
        upload of the same photo may be waiting for it.

        A worker that died (killed, out of memory) breaks its pool, which is then replaced: a job the
        broken pool refused goes to the new one; a job it had taken raises ``BrokenProcessPool`` (the
        photo itself may be what killed the worker, so it is not tried again)."""
        ident = upload.ident
        running = self._running.get(ident)
        if running is not None:
            upload.discard()
        else:
            try:
                pool, job = self._submit(str(upload.path), ident)
            except BaseException:
                upload.discard()
                raise
            running = asyncio.wrap_future(job)
            self._running[ident] = running

            def done(_: object) -> None:
                self._running.pop(ident, None)
                upload.discard()
                if _broke(job):
                    self._drop(pool)

            running.add_done_callback(done)
        return await asyncio.shield(running)

    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:  # lazily: a process that never gets an upload never starts one
            self._pool = ProcessPoolExecutor(self._workers, mp_context=get_context("spawn"),
                                             initializer=_worker_start, initargs=(self.max_pixels,))
        return self._pool

    def pids(self) -> list[int]:
        """The PIDs of this pool's processes that are alive (none before the first upload). A process
        seen alive here had not been reaped, so its PID was not another process's (the pool's thread may
        reap one that dies just after: Linux hands out PIDs in turn, so the PID is not reused meanwhile)."""
        pool = self._pool
        processes = pool._processes if pool is not None else None  # (None after a shutdown)
        return [p.pid for p in list((processes or {}).values()) if p.pid is not None and p.is_alive()]

    def _submit(self, path: str, ident: str) -> tuple[ProcessPoolExecutor, Future[dict[str, Any]]]:
        pool = self.pool()
        try:
            return pool, pool.submit(ingest, path, ident, str(self.media_dir), self.max_pixels)
        except BrokenProcessPool:  # a worker died between two jobs: nothing was lost, start afresh
            self._drop(pool)
            pool = self.pool()
            return pool, pool.submit(ingest, path, ident, str(self.media_dir), self.max_pixels)

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        """A broken pool takes no more jobs: forget it, the next upload starts a fresh one."""
        self.pauser.resume()  # a process stopped here is one the pool must be able to end
        pool.shutdown(wait=False, cancel_futures=True)
        if self._pool is pool:
            self._pool = None

    def close(self) -> None:
        self.pauser.resume()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        remove_stale(self.media_dir)  # the files of jobs cut short (the workers die with this process)
