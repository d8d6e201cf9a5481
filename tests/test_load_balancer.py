"""The nginx configuration shipped in deploy/nginx.conf, run for real in front of two `liveblog serve`.

Only the upstream servers and the listening address are replaced (Docker's DNS name `web` does not
exist here); every streaming setting is the file's own. Without nginx the test is skipped, except
under ``CI=true`` (where .ci/run installs it) where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, admin, free_port, wait_until
from tests.sse_client import SSEClient
from tests.support import post

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"


def render(upstreams: list[int], listen: int) -> str:
    """deploy/nginx.conf with local upstreams (``max_fails=0``: a stopped test process must not be
    taken out of rotation for 10 s, which would make the test depend on timing)."""
    text = CONFIG.read_text()
    servers = "".join(f"server 127.0.0.1:{port} max_fails=0;\n    " for port in upstreams)
    text, replaced = re.subn(r"server web:8000 resolve;\n\s*", servers, text)
    assert replaced == 1, "deploy/nginx.conf no longer has the `server web:8000 resolve;` line"
    text, replaced = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen};", text)
    assert replaced == 1
    return text


@pytest.fixture
def nginx(tmp_path: Path, service_factory) -> Iterator[tuple[str, Service, Service]]:  # type: ignore[no-untyped-def]
    if not Path(NGINX).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    first = service_factory("serve", "--no-dispatcher")
    second = service_factory("serve", "--no-dispatcher")
    port = free_port()
    (tmp_path / "liveblog.conf").write_text(render([first.port, second.port], port))
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log warn;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n  include {tmp_path}/liveblog.conf;\n}}\n")
    check = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                                "-g", "daemon off;"], stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, what="nginx to proxy /readyz")
        yield url, first, second
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_nginx_config_streams_events_and_a_reader_resumes_on_the_other_process(
        nginx: tuple[str, Service, Service], editor: dict[str, str]) -> None:
    url, first, second = nginx
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        slug = "lb-" + os.urandom(4).hex()
        created = await client.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "Dietro nginx"})
        assert created.status_code == 201, created.text
        second.stop()
        # With only the first process up, the stream is necessarily served by it. An event posted
        # after the stream opened must come through while the stream stays open (no buffering).
        async with SSEClient(f"{url}/blogs/{slug}/events") as reader:
            assert reader.status == 200
            seen = (await post(client, slug, editor, "prima"))["id"]
            event = await reader.next(timeout=15)
            assert (event.event, event.json["id"]) == ("entry.created", seen)
            assert not reader.ended.is_set()
            last_id = event.id
        second.start()
        first.stop()
        missed = [(await post(client, slug, editor, f"mentre {i}"))["id"] for i in range(3)]
        # The reader comes back through nginx, necessarily to the second process, with Last-Event-ID.
        async with SSEClient(f"{url}/blogs/{slug}/events", last_event_id=last_id) as back:
            resumed = await back.take(3)
            live = (await post(client, slug, editor, "dopo"))["id"]
            following = await back.next(timeout=15)
    assert [e.json["id"] for e in resumed] == missed
    assert following.json["id"] == live
