"""Photo uploads and the media files, through real `liveblog serve` processes (images made with Pillow)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import ExifTags, Image

from tests.conftest import Service, admin, wait_until
from tests.sse_client import SSEClient
from tests.support import post

SECRET = b"secret-location-of-a-source"
# An upload may wait for the worker process to start and for a busy machine's CPU: no timed assertion.
UPLOAD_TIMEOUT = 120
CHECKOUT = Path(__file__).resolve().parents[1]


def picture(width: int, height: int, fmt: str = "JPEG", **save: Any) -> bytes:
    """Left half red, right half blue: orientation shows in the pixels."""
    image = Image.new("RGB", (width, height), (220, 0, 0))
    image.paste((0, 0, 220), (width // 2, 0, width, height))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def jpeg_with_gps(width: int = 3000, height: int = 2000, orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = SECRET.decode()
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({1: "N", 2: (45.0, 30.0, 12.5), 3: "E", 4: (9.0, 11.0, 1.0)})
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>' + SECRET + b"</rdf:RDF></x:xmpmeta>"
    return picture(width, height, exif=exif, xmp=xmp, comment=SECRET)


def media_dir(server: Service) -> Path:
    return Path(server.env["LIVEBLOG_MEDIA_DIR"])


async def upload(client: httpx.AsyncClient, token: str, data: bytes, ctype: str = "image/jpeg") -> httpx.Response:
    return await client.post("/api/media", content=data, timeout=UPLOAD_TIMEOUT,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})


async def stored(client: httpx.AsyncClient, token: str, data: bytes, ctype: str = "image/jpeg") -> dict[str, Any]:
    response = await upload(client, token, data, ctype)
    assert response.status_code == 201, response.text
    return response.json()


async def fetch(client: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await client.get(url)
    assert response.status_code == 200, (url, response.text)
    return response


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


# ---- upload and storage ------------------------------------------------------------------------------

async def test_upload_answers_the_contract_shape_and_variants_up_to_2000_px(client: httpx.AsyncClient,
                                                                            editor_token: str) -> None:
    answer = await stored(client, editor_token, picture(3000, 1500))
    assert set(answer) == {"id", "url", "width", "height", "content_type", "variants"}
    assert answer["content_type"] == "image/jpeg"
    assert [(v["width"], v["height"]) for v in answer["variants"]] == [(480, 240), (960, 480), (1600, 800),
                                                                      (2000, 1000)]
    assert (answer["url"], answer["width"], answer["height"]) == (answer["variants"][-1]["url"], 2000, 1000)
    assert answer["url"].startswith(f"{client.base_url}/media/")
    for variant in answer["variants"]:
        served = Image.open(io.BytesIO((await fetch(client, variant["url"])).content))
        assert (served.format, served.size) == ("JPEG", (variant["width"], variant["height"]))


async def test_a_small_picture_is_not_enlarged(client: httpx.AsyncClient, editor_token: str) -> None:
    answer = await stored(client, editor_token, picture(1200, 900, "PNG"), "image/png")
    assert [v["width"] for v in answer["variants"]] == [480, 960, 1200]
    tiny = await stored(client, editor_token, picture(300, 200, "WEBP"), "image/webp")
    assert [(v["width"], v["height"]) for v in tiny["variants"]] == [(300, 200)]


async def test_gps_exif_xmp_and_comments_never_reach_a_served_file(client: httpx.AsyncClient,
                                                                  editor_token: str, server: Service) -> None:
    answer = await stored(client, editor_token, jpeg_with_gps())
    for variant in answer["variants"]:
        body = (await fetch(client, variant["url"])).content
        assert SECRET not in body and b"Exif" not in body and b"ns.adobe.com" not in body
        served = Image.open(io.BytesIO(body))
        assert not served.getexif() and not {"exif", "xmp", "comment", "icc_profile"} & set(served.info)
    # Not even the originals' bytes are kept on disk.
    for path in media_dir(server).rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_bytes(), path


async def test_exif_orientation_is_applied_to_the_pixels(client: httpx.AsyncClient, editor_token: str) -> None:
    # Stored 3000x2000 left red / right blue with orientation 6 (shown rotated 90° clockwise):
    # upright it is 2000x3000, red on top.
    answer = await stored(client, editor_token, jpeg_with_gps(orientation=6))
    assert (answer["width"], answer["height"]) == (2000, 3000)
    served = Image.open(io.BytesIO((await fetch(client, answer["variants"][0]["url"])).content)).convert("RGB")
    top, bottom = served.getpixel((served.width // 2, 10)), served.getpixel((served.width // 2, served.height - 10))
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0], (top, bottom)


async def test_transparent_pictures_become_webp_and_keep_their_alpha(client: httpx.AsyncClient,
                                                                     editor_token: str) -> None:
    image = Image.new("RGBA", (800, 400), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 400, 400))
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=_png_text(SECRET))
    answer = await stored(client, editor_token, out.getvalue(), "image/png")
    assert answer["content_type"] == "image/webp"
    body = (await fetch(client, answer["url"])).content
    assert SECRET not in body
    served = Image.open(io.BytesIO(body))
    assert served.format == "WEBP" and served.mode == "RGBA" and served.getpixel((700, 200))[3] == 0


def _png_text(value: bytes) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", value.decode())
    return info


async def test_an_animated_gif_stays_animated(client: httpx.AsyncClient, editor_token: str) -> None:
    frames = [Image.new("RGB", (200, 100), colour) for colour in ("red", "lime", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0, comment=SECRET)
    answer = await stored(client, editor_token, out.getvalue(), "image/gif")
    assert answer["content_type"] == "image/gif" and len(answer["variants"]) == 1
    body = (await fetch(client, answer["url"])).content
    assert SECRET not in body
    assert Image.open(io.BytesIO(body)).n_frames == 3


async def test_multipart_field_file_is_accepted(client: httpx.AsyncClient, editor_token: str) -> None:
    response = await client.post("/api/media", headers={"Authorization": f"Bearer {editor_token}"},
                                 files={"file": ("foto.jpg", picture(640, 480), "image/jpeg")}, timeout=UPLOAD_TIMEOUT)
    assert response.status_code == 201, response.text
    assert response.json()["width"] == 640


async def test_multipart_without_a_file_field_is_refused(client: httpx.AsyncClient, editor_token: str) -> None:
    response = await client.post("/api/media", headers={"Authorization": f"Bearer {editor_token}"},
                                 files={"other": ("foto.jpg", picture(64, 48), "image/jpeg")})
    problem(response, 422)


async def test_uploading_needs_an_editor_token(client: httpx.AsyncClient) -> None:
    problem(await client.post("/api/media", content=picture(64, 48), headers={"Content-Type": "image/jpeg"}), 401)


# ---- refusals ----------------------------------------------------------------------------------------

async def test_not_an_image_is_415(client: httpx.AsyncClient, editor_token: str) -> None:
    problem(await upload(client, editor_token, b"%PDF-1.7 not a photo at all"), 415)
    problem(await upload(client, editor_token, picture(64, 48), "text/plain"), 415)
    problem(await upload(client, editor_token, b""), 415)
    bmp = picture(64, 48, "BMP")  # an image, but not one of the accepted formats
    problem(await upload(client, editor_token, bmp, "image/png"), 415)


async def test_a_corrupt_image_is_422(client: httpx.AsyncClient, editor_token: str) -> None:
    problem(await upload(client, editor_token, picture(800, 600)[:600]), 422)


async def test_more_than_50_megapixels_is_422(client: httpx.AsyncClient, editor_token: str) -> None:
    """Both sides of Pillow's guard: above the limit (its warning, made an error) and above twice the limit
    (its DecompressionBombError); the files are a few KB, the pixels would be hundreds of MB."""
    for size in ((8000, 7000), (12000, 10000)):
        out = io.BytesIO()
        Image.new("1", size).save(out, "PNG")
        assert len(out.getvalue()) < 100_000
        assert "50000000 pixels" in problem(await upload(client, editor_token, out.getvalue(), "image/png"),
                                            422)["detail"]


async def test_animation_frames_count_against_the_pixel_limit(client: httpx.AsyncClient,
                                                              editor_token: str) -> None:
    frames = [Image.new("P", (4000, 2000), colour) for colour in range(8)]  # 8 x 8 MP
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    problem(await upload(client, editor_token, out.getvalue(), "image/gif"), 422)


@pytest.fixture(scope="module")
def small_cap_server(service_factory: Any) -> Service:
    return service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_MAX_MEDIA_BYTES": "50000"})


async def test_larger_than_the_cap_is_413_declared_or_streamed(small_cap_server: Service,
                                                               editor_token: str) -> None:
    big = os.urandom(60_000)
    async with httpx.AsyncClient(base_url=small_cap_server.url, timeout=UPLOAD_TIMEOUT) as http:
        problem(await upload(http, editor_token, big), 413)  # Content-Length says so

        async def chunks() -> Any:  # no Content-Length: counted while streaming
            for start in range(0, len(big), 8192):
                yield big[start:start + 8192]

        response = await http.post("/api/media", content=chunks(),
                                    headers={"Authorization": f"Bearer {editor_token}", "Content-Type": "image/jpeg"})
        problem(response, 413)
        multipart = await http.post("/api/media", headers={"Authorization": f"Bearer {editor_token}"},
                                    files={"file": ("big.jpg", big, "image/jpeg")})
        problem(multipart, 413)
        # Under the cap is fine on the same server.
        assert (await upload(http, editor_token, picture(200, 100))).status_code == 201


# ---- concurrency -------------------------------------------------------------------------------------

async def test_concurrent_uploads_of_the_same_and_different_files(client: httpx.AsyncClient, editor_token: str,
                                                                  server: Service) -> None:
    same = picture(1700, 1000, quality=91)
    others = [picture(900 + i, 700, quality=90) for i in range(3)]
    answers = await asyncio.gather(*(stored(client, editor_token, data) for data in [same] * 4 + others))
    assert len({a["id"] for a in answers[:4]}) == 1
    assert len({a["id"] for a in answers}) == 4
    assert answers[0]["variants"] == answers[3]["variants"]
    for answer in answers:
        for variant in answer["variants"]:
            served = Image.open(io.BytesIO((await fetch(client, variant["url"])).content))
            served.load()  # the whole file decodes: never a half-written one
            assert served.width == variant["width"]
    leftovers = [p for p in media_dir(server).rglob("*.tmp")]
    assert not leftovers


# ---- the body on its way in: a file under <media dir>/.incoming, removed in every case -----------------

def incoming(directory: Path) -> list[Path]:
    return sorted((directory / ".incoming").glob("*"))


async def until(predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def upload_seen_on_disk(http: httpx.AsyncClient, token: str, data: bytes, directory: Path) -> httpx.Response:
    """Upload ``data`` (chunked) in two halves, the second only once the body's file exists on disk."""

    async def body() -> AsyncIterator[bytes]:
        yield data[: len(data) // 2]
        await until(lambda: incoming(directory), "the body's file under .incoming")
        yield data[len(data) // 2 :]

    return await http.post("/api/media", content=body(), timeout=UPLOAD_TIMEOUT,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})


async def test_the_body_goes_to_a_file_removed_after_success_and_every_refusal(
        client: httpx.AsyncClient, server: Service, small_cap_server: Service, editor_token: str) -> None:
    directory = media_dir(server)
    assert directory == media_dir(small_cap_server)
    cases = [(client, picture(640, 480), 201),
             (client, b"%PDF-1.7 not a photo at all" * 100, 415),  # refused once the body is in
             (client, picture(800, 600)[:600], 422),  # refused by the decoding process
             ]
    async with httpx.AsyncClient(base_url=small_cap_server.url) as capped:
        cases.append((capped, os.urandom(60_000), 413))  # refused mid-body (cap 50,000, no Content-Length)
        for http, data, status in cases:
            response = await upload_seen_on_disk(http, editor_token, data, directory)
            assert response.status_code == status, response.text
            assert incoming(directory) == [], status


def raw_upload(server: Service, token: str, declared: int, first: bytes) -> socket.socket:
    """A raw-body upload that declares ``declared`` bytes and has sent ``first`` so far."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"POST /api/media HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                 b"Authorization: Bearer " + token.encode() + b"\r\n"
                 b"Content-Length: " + str(declared).encode() + b"\r\n\r\n" + first)
    return sock


def test_a_client_gone_mid_body_leaves_no_file(server: Service, editor_token: str) -> None:
    data = picture(1200, 800)
    sock = raw_upload(server, editor_token, len(data), data[: len(data) // 2])
    wait_until(lambda: incoming(media_dir(server)), what="the body's file")
    sock.close()
    wait_until(lambda: not incoming(media_dir(server)), what="the file of the abandoned body to go")


def worker_pids(service: Service) -> list[int]:
    assert service.process is not None
    children = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True,
                              text=True).stdout.split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_client_gone_during_the_job_still_gets_its_photo_stored_and_the_file_removed(
        server: Service, editor_token: str) -> None:
    data = picture(1300, 800, quality=93)
    ident = hashlib.sha256(data).hexdigest()[:32]
    manifest = media_dir(server) / ident[:2] / ident / "manifest.json"
    assert not manifest.exists()
    assert httpx.post(f"{server.url}/api/media", content=picture(64, 32), timeout=UPLOAD_TIMEOUT, headers={
        "Authorization": f"Bearer {editor_token}", "Content-Type": "image/jpeg"}).status_code == 201
    [worker] = worker_pids(server)
    os.kill(worker, signal.SIGSTOP)  # the job waits for it
    try:
        sock = raw_upload(server, editor_token, len(data), data)
        wait_until(lambda: [f for f in incoming(media_dir(server)) if f.stat().st_size == len(data)],
                   what="the whole body")
        time.sleep(0.5)  # the body is in: the job is handed over in the same step of the event loop
        sock.close()  # gone before the answer
        time.sleep(0.5)
        assert incoming(media_dir(server)), "the job's file went before the job"
    finally:
        os.kill(worker, signal.SIGCONT)
    wait_until(manifest.exists, timeout=UPLOAD_TIMEOUT, what="the photo to be stored")
    wait_until(lambda: not incoming(media_dir(server)), what="the body's file to go")


async def test_a_decoding_process_killed_mid_job_answers_503_removes_the_file_and_is_replaced(
        service_factory: Any, editor_token: str, tmp_path: Path) -> None:
    directory = tmp_path / "media"
    service = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_MEDIA_DIR": str(directory)})
    async with httpx.AsyncClient(base_url=service.url, timeout=UPLOAD_TIMEOUT) as http:
        await stored(http, editor_token, picture(64, 48))  # the pool's worker is running now
        [worker] = worker_pids(service)
        os.kill(worker, signal.SIGSTOP)  # it takes the next job and sits on it
        data = picture(3000, 2000)
        answer = asyncio.ensure_future(upload(http, editor_token, data))
        await until(lambda: [f for f in incoming(directory) if f.stat().st_size == len(data)], "the whole body")
        await asyncio.sleep(1)  # the body is in: the job is handed over in the same step of the event loop
        os.kill(worker, signal.SIGKILL)
        assert "send it again" in problem(await answer, 503)["detail"]
        assert incoming(directory) == []
        again = await stored(http, editor_token, data)  # a new pool, a new worker
        assert again["width"] == 2000
        assert worker_pids(service) and worker not in worker_pids(service)


def test_files_of_a_killed_server_are_removed_by_the_next_one_on_its_host_abandoned_ones_by_any(
        service_factory: Any, editor_token: str, tmp_path: Path) -> None:
    directory = tmp_path / "media"
    env = {"LIVEBLOG_MEDIA_DIR": str(directory)}
    first = service_factory("serve", "--no-dispatcher", env=env)
    data = picture(1200, 800)
    sock = raw_upload(first, editor_token, len(data), data[: len(data) // 2])
    wait_until(lambda: incoming(directory), what="the body's file")
    [left] = incoming(directory)
    first.stop(signal.SIGKILL)
    sock.close()
    assert left.exists()  # no code of the killed server ran
    # Files this host's next server must not touch: another machine's (shared storage) and a live process's.
    others = [directory / ".incoming" / f"elsewhere.example-{first.process.pid}-{'0' * 32}.tmp",
              directory / ".incoming" / f"{socket.gethostname()}-{os.getpid()}-{'1' * 32}.tmp"]
    for other in others:
        other.write_bytes(b"in flight")
    # ... unless nobody wrote to it for a day: a machine that never came back, a recreated container.
    abandoned = directory / ".incoming" / f"gone.example-{first.process.pid}-{'2' * 32}.tmp"
    abandoned.write_bytes(b"abandoned")
    day_ago = time.time() - 24 * 3600 - 60
    os.utime(abandoned, (day_ago, day_ago))
    service_factory("serve", "--no-dispatcher", env=env)
    assert not left.exists() and not abandoned.exists()
    assert all(other.exists() for other in others)


# ---- the decoders step aside while changes reach readers (LIVEBLOG_MEDIA_YIELD_MS) -------------------

YIELD_MS = 1000


def run_state(pid: int) -> str:
    """The process's state in /proc (``T``: stopped); ``gone`` once it no longer exists."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


async def new_blog(http: httpx.AsyncClient) -> str:
    slug = f"photos-{os.urandom(5).hex()}"
    response = await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": slug})
    assert response.status_code == 201, response.text
    return slug


@pytest.fixture(scope="module")
def yielding_server(service_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Service:
    return service_factory("serve", "--no-dispatcher", env={
        "LIVEBLOG_MEDIA_YIELD_MS": str(YIELD_MS), "LIVEBLOG_MEDIA_DIR": str(tmp_path_factory.mktemp("yield"))})


async def started_decoder(http: httpx.AsyncClient, token: str, service: Service) -> int:
    await stored(http, token, picture(64, 48))  # the pool starts with the first upload
    [worker] = worker_pids(service)
    assert run_state(worker) != "T"
    return worker


async def test_the_decoder_is_stopped_while_changes_reach_readers_until_the_yield_time_after_the_last(
        yielding_server: Service, editor_token: str, editor: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=yielding_server.url, timeout=UPLOAD_TIMEOUT) as http:
        worker = await started_decoder(http, editor_token, yielding_server)
        slug = await new_blog(http)
        async with SSEClient(f"{yielding_server.url}/blogs/{slug}/events") as reader:
            for i in range(3):  # closer together than the yield time: one pause, pushed later by each
                posted = time.monotonic()
                await post(http, slug, editor, f"update {i}")
                assert (await reader.next()).event == "entry.created"
                # (the signal takes effect when the idle-priority process next gets a CPU)
                await until(lambda: run_state(worker) == "T", f"the decoder stopped at update {i}",
                            timeout=YIELD_MS / 1000)
                await asyncio.sleep(YIELD_MS / 1000 / 3)
            await until(lambda: run_state(worker) != "T", "the decoder to run again")
            # Stopped before the last change was written to the reader, so at least the yield time before.
            assert time.monotonic() - posted >= YIELD_MS / 1000


async def test_an_upload_completes_while_changes_keep_coming_faster_than_the_yield_time(
        yielding_server: Service, editor_token: str, editor: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=yielding_server.url, timeout=UPLOAD_TIMEOUT) as http:
        worker = await started_decoder(http, editor_token, yielding_server)
        slug = await new_blog(http)
        states: set[str] = set()

        async def keep_posting() -> None:
            for i in itertools.count():
                await post(http, slug, editor, f"update {i}")
                states.add(run_state(worker))
                await asyncio.sleep(YIELD_MS / 1000 / 10)

        async with SSEClient(f"{yielding_server.url}/blogs/{slug}/events"):
            posting = asyncio.ensure_future(keep_posting())
            try:
                await until(lambda: "T" in states, "the decoder to be stopped")
                states.clear()
                answer = await stored(http, editor_token, picture(3000, 2000, quality=95))
                assert not posting.done(), "the updates stopped during the upload"
            finally:
                posting.cancel()
        assert answer["width"] == 2000 and "T" in states
        await until(lambda: run_state(worker) != "T", "the decoder to run again")


async def test_with_yield_0_the_decoder_is_never_stopped(service_factory: Any, editor_token: str,
                                                         editor: dict[str, str], tmp_path: Path) -> None:
    service = service_factory("serve", "--no-dispatcher", env={
        "LIVEBLOG_MEDIA_YIELD_MS": "0", "LIVEBLOG_MEDIA_DIR": str(tmp_path / "media")})
    async with httpx.AsyncClient(base_url=service.url, timeout=UPLOAD_TIMEOUT) as http:
        worker = await started_decoder(http, editor_token, service)
        slug = await new_blog(http)
        states: set[str] = set()
        async with SSEClient(f"{service.url}/blogs/{slug}/events") as reader:
            for i in range(5):
                await post(http, slug, editor, f"update {i}")
                assert (await reader.next()).event == "entry.created"
                for _ in range(10):  # (with the default of 200 ms this sees it stopped)
                    states.add(run_state(worker))
                    await asyncio.sleep(0.01)
        assert states and "T" not in states


async def test_a_stopped_decoder_dies_with_its_web_process(service_factory: Any, editor_token: str,
                                                           editor: dict[str, str], tmp_path: Path) -> None:
    service = service_factory("serve", "--no-dispatcher", env={
        "LIVEBLOG_MEDIA_YIELD_MS": "10000", "LIVEBLOG_MEDIA_DIR": str(tmp_path / "media")})
    async with httpx.AsyncClient(base_url=service.url, timeout=UPLOAD_TIMEOUT) as http:
        worker = await started_decoder(http, editor_token, service)
        slug = await new_blog(http)
        async with SSEClient(f"{service.url}/blogs/{slug}/events") as reader:
            await post(http, slug, editor, "update")
            await reader.next()
            await until(lambda: run_state(worker) == "T", "the decoder to be stopped")
            service.stop(signal.SIGKILL)  # no code of the web process runs: PR_SET_PDEATHSIG's SIGKILL
    await until(lambda: run_state(worker) in ("gone", "Z"), "the stopped decoder to die")


# ---- serving -----------------------------------------------------------------------------------------

async def test_served_files_are_immutable_typed_and_revalidate(client: httpx.AsyncClient, editor_token: str) -> None:
    answer = await stored(client, editor_token, picture(500, 300))
    response = await fetch(client, answer["url"])
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    again = await client.get(answer["url"], headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    assert again.headers["cache-control"] == "public, max-age=31536000, immutable"
    head = await client.head(answer["url"])
    assert head.status_code == 200 and head.headers["content-length"] == str(len(response.content))


def raw_get(server: Service, target: bytes) -> int:
    """The status of ``GET <target>`` sent byte for byte (no client normalises the path)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0


async def test_no_path_traversal_listing_or_symlink_escape(client: httpx.AsyncClient, editor_token: str,
                                                           server: Service, tmp_path: Path) -> None:
    answer = await stored(client, editor_token, picture(320, 200))
    path = answer["url"].removeprefix(str(client.base_url))  # /media/ab/<id>/320.jpg
    prefix, ident = path.split("/")[2], path.split("/")[3]
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not for readers")
    link_dir = media_dir(server) / "ee" / ("e" * 32)
    link_dir.mkdir(parents=True, exist_ok=True)
    (link_dir / "480.jpg").symlink_to(secret)
    (media_dir(server) / "pyproject.jpg").symlink_to(CHECKOUT / "pyproject.toml")
    attempts = [
        b"/media/../pyproject.toml",
        b"/media/%2e%2e/%2e%2e/pyproject.toml",
        b"/media/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        b"/media/..%2f..%2fetc%2fpasswd",
        b"/media//etc/passwd",
        b"/media/%2fetc%2fpasswd",
        f"/media/{prefix}/{ident}/320.jpg%00.png".encode(),
        f"/media/{prefix}/{ident}/320.jpg%00".encode(),
        f"/media/{prefix}/{ident}/".encode(),
        f"/media/{prefix}/".encode(),
        b"/media/",
        f"/media/{prefix}/{ident}/manifest.json".encode(),
        f"/media/{prefix}/{ident}/../{ident}/320.jpg%2f..%2f..%2f..%2f".encode(),
        b"/media/ee/" + b"e" * 32 + b"/480.jpg",  # a symlink out of the media directory
        b"/media/pyproject.jpg",
    ]
    for target in attempts:
        assert raw_get(server, target) in (400, 404), target
    assert raw_get(server, path.encode()) == 200
    listing = await client.get(f"/media/{prefix}/{ident}/")
    assert problem(listing, 404)


def test_media_settings_have_defaults_and_refuse_nonsense(tmp_path: Path) -> None:
    from liveblog.config import Settings

    defaults = Settings.from_env({"LIVEBLOG_DATA_DIR": str(tmp_path)})
    assert (defaults.media_dir, defaults.max_media_bytes, defaults.media_max_pixels) == (
        tmp_path / "media", 20 * 1024 * 1024, 50_000_000)
    assert Settings.from_env({"LIVEBLOG_MEDIA_DIR": "/srv/photos"}).media_dir == Path("/srv/photos")
    for name in ("LIVEBLOG_MAX_MEDIA_BYTES", "LIVEBLOG_MEDIA_MAX_PIXELS", "LIVEBLOG_MEDIA_WORKERS"):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: "0"})


def test_the_decoding_process_dies_with_its_server(service_factory: Any, editor_token: str) -> None:
    import signal
    import subprocess

    from tests.conftest import wait_until

    service = service_factory("serve", "--no-dispatcher")
    response = httpx.post(f"{service.url}/api/media", content=picture(320, 200), timeout=UPLOAD_TIMEOUT,
                          headers={"Authorization": f"Bearer {editor_token}", "Content-Type": "image/jpeg"})
    assert response.status_code == 201, response.text
    children = subprocess.run(["pgrep", "-P", str(service.process.pid)], capture_output=True, text=True).stdout.split()
    workers = [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert workers
    service.stop(signal.SIGKILL)  # no shutdown code runs: only the kernel can end the worker now
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), what="the worker to go")
