"""One embedded Redis server per data dir, whatever the number and order of `liveblog` processes on it.

Real processes throughout: `liveblog serve`/`demo`/`worker`/`token create` on one LIVEBLOG_DATA_DIR,
the supervisor and the redis-server they start; the server is found through /proc.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liveblog.embedded import EmbeddedRedis
from tests.conftest import ADMIN_TOKEN, JSON, Service, free_port, wait_until


def _processes(match) -> list[int]:  # type: ignore[no-untyped-def]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                continue
            if match(entry):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def servers(data_dir: Path) -> list[int]:
    """redis-server processes working in ``data_dir`` (redis chdirs to its --dir)."""
    return _processes(lambda p: (p / "comm").read_text().strip() == "redis-server"
                      and os.readlink(p / "cwd") == str(data_dir.resolve()))


def supervisors(data_dir: Path) -> list[int]:
    return _processes(lambda p: b"liveblog.embedded\0" + str(data_dir.resolve()).encode() + b"\0"
                      in (p / "cmdline").read_bytes())


class Fleet:
    """`liveblog` processes on one data dir; all stopped at the end, and the server must then go."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "data"
        self.tmp_path = tmp_path
        self.env = {**os.environ, "LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(self.data_dir),
                    "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN}
        self.services: list[Service] = []
        self.commands: list[subprocess.Popen[str]] = []

    def service(self, kind: str, *extra: str, wait: bool = False) -> Service:
        port = None if kind == "worker" else free_port()
        args = [kind, *extra] + (["--port", str(port), "--no-dispatcher"] if port else [])
        service = Service(args, self.env, self.tmp_path / f"{kind}-{len(self.services)}.log", port)
        self.services.append(service)
        return service.start(wait=wait)

    def token_create(self) -> subprocess.Popen[str]:
        """`liveblog token create --role admin`, started now; ``finish`` collects the token."""
        process = subprocess.Popen([sys.executable, "-m", "liveblog", "token", "create", "--name", "t",
                                    "--role", "admin"], env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        self.commands.append(process)
        return process

    @staticmethod
    def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        return out.strip(), err

    def close(self) -> None:
        for process in self.commands:
            if process.poll() is None:
                process.kill()
                process.communicate()
        for service in self.services:
            service.stop()
        # The last user gone, the supervisor stops the server: nothing is left running.
        wait_until(lambda: not servers(self.data_dir) and not supervisors(self.data_dir),
                   what="the embedded server to stop after its last user")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


def assert_token_works(url: str, token: str) -> None:
    slug = f"b-{uuid.uuid4().hex[:10]}"
    created = httpx.post(f"{url}/api/blogs", headers={"Authorization": f"Bearer {token}", **JSON},
                         json={"slug": slug, "title": slug})
    assert created.status_code == 201, created.text


def test_token_create_at_once_after_serve_joins_the_one_server(fleet: Fleet) -> None:
    serve = fleet.service("serve")
    token, _ = fleet.finish(fleet.token_create())
    serve.wait_ready()
    assert_token_works(serve.url, token)
    assert len(servers(fleet.data_dir)) == 1


def test_serve_at_once_after_token_create_keeps_working_when_token_create_exits(fleet: Fleet) -> None:
    command = fleet.token_create()
    serve = fleet.service("serve")
    token, _ = fleet.finish(command)
    serve.wait_ready()
    assert_token_works(serve.url, token)
    assert len(servers(fleet.data_dir)) == 1


def test_the_server_outlives_the_short_lived_process_that_started_it(fleet: Fleet) -> None:
    owner = EmbeddedRedis(fleet.data_dir)
    owner.start()
    assert owner.started_supervisor
    (server,) = servers(fleet.data_dir)
    serve = fleet.service("serve", wait=True)
    assert "using the embedded Redis server already running" in serve.log()
    owner.close()  # the starter leaves; serve still uses the server
    token, err = fleet.finish(fleet.token_create())
    assert "already running" in err
    assert_token_works(serve.url, token)
    assert servers(fleet.data_dir) == [server]  # the same server all along: never stopped nor replaced


def test_six_processes_started_at_once_share_one_server(fleet: Fleet) -> None:
    webs = [fleet.service("serve"), fleet.service("demo"), fleet.service("serve")]
    worker = fleet.service("worker")
    commands = [fleet.token_create(), fleet.token_create()]
    tokens = [fleet.finish(c)[0] for c in commands]
    for web in webs:
        web.wait_ready()
    for web in webs:
        for token in tokens:
            assert_token_works(web.url, token)
    assert worker.process is not None and worker.process.poll() is None, worker.log()
    assert len(servers(fleet.data_dir)) == 1 and len(supervisors(fleet.data_dir)) == 1


def test_serve_restarts_a_killed_embedded_server_and_keeps_its_data(fleet: Fleet) -> None:
    serve = fleet.service("serve", wait=True)
    token, _ = fleet.finish(fleet.token_create())
    (killed,) = servers(fleet.data_dir)
    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: servers(fleet.data_dir) not in ([], [killed]), what="a new server")
    serve.wait_ready()
    assert_token_works(serve.url, token)  # the token written before the kill is still there


def test_a_killed_supervisor_is_replaced_by_a_process_still_using_the_server(fleet: Fleet) -> None:
    serve = fleet.service("serve", wait=True)
    (supervisor,) = supervisors(fleet.data_dir)
    os.kill(supervisor, signal.SIGKILL)  # its server gets SIGTERM from the kernel and stops
    wait_until(lambda: supervisors(fleet.data_dir) not in ([], [supervisor]), what="a new supervisor")
    serve.wait_ready()
    assert_token_works(serve.url, fleet.finish(fleet.token_create())[0])
    assert len(servers(fleet.data_dir)) == 1


def test_the_server_stops_when_its_last_user_is_killed(fleet: Fleet) -> None:
    worker = fleet.service("worker")
    wait_until(lambda: "dispatcher running" in worker.log(), what="the worker to run")
    assert len(servers(fleet.data_dir)) == 1
    worker.stop(signal.SIGKILL)
    wait_until(lambda: not servers(fleet.data_dir) and not supervisors(fleet.data_dir),
               what="the server to stop once nobody uses it")


def test_the_data_dir_and_its_files_are_private(fleet: Fleet) -> None:
    fleet.data_dir.mkdir(mode=0o755)
    os.chmod(fleet.data_dir, 0o755)  # as an older version (or a person) may have left it
    (fleet.data_dir / "notes.txt").write_text("x")
    os.chmod(fleet.data_dir / "notes.txt", 0o644)
    command = subprocess.run([sys.executable, "-m", "liveblog", "token", "create", "--name", "t"], env=fleet.env,
                             capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0o022))
    assert command.returncode == 0, command.stderr
    assert stat.S_IMODE(fleet.data_dir.stat().st_mode) == 0o700
    files = [p for p in fleet.data_dir.rglob("*") if not p.is_symlink()]
    assert any(p.name.startswith("appendonly") for p in files)
    leaky = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files if p.stat().st_mode & 0o077}
    assert leaky == {}


def test_a_new_data_dir_is_created_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    owner = EmbeddedRedis(data_dir)
    old = os.umask(0o022)
    try:
        owner.start()
    finally:
        os.umask(old)
        owner.close()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    wait_until(lambda: not servers(data_dir), what="the server to stop")
