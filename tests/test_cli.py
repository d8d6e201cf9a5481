"""The console script: embedded Redis persistence, sharing a data dir, the demo, tokens."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from liveblog.cli import build_parser
from liveblog.config import Settings
from tests.conftest import JSON, free_port, wait_until


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "liveblog", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_embedded_server_keeps_data_across_a_service_restart(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(tmp_path / "data")}
    service = service_factory("demo", "--no-dispatcher", env=env)
    assert "starting the embedded Redis server" in service.log()
    assert (tmp_path / "data" / "redis.sock").exists()

    # A second process on the same data dir joins the running server instead of starting another.
    joined = run_cli("token", "create", "--name", "seconda redazione", env=env)
    assert joined.returncode == 0, joined.stderr
    assert "already running" in joined.stderr
    token = joined.stdout.strip()
    headers = {"Authorization": f"Bearer {token}", **JSON}
    posted = httpx.post(f"{service.url}/api/blogs/la-guerra-di-putin/entries", headers=headers,
                        json={"body": "aggiornamento ore 15.00"})
    assert posted.status_code == 201, posted.text

    service.restart()
    assert "demo blog already loaded" in service.log()
    entries = httpx.get(f"{service.url}/api/blogs/la-guerra-di-putin/entries").json()["entries"]
    bodies = [e["body_html"] for e in entries]
    assert "<p>aggiornamento ore 15.00</p>" in bodies
    assert len(entries) == 2  # the seed update was not loaded twice
    # The token made before the restart still works: tokens live in the persistent store too.
    assert httpx.delete(f"{service.url}/api/blogs/la-guerra-di-putin/entries/{posted.json()['id']}",
                        headers=headers).status_code == 204
    assert any(p.suffix == ".aof" or p.name.startswith("appendonly") for p in (tmp_path / "data").iterdir())


def test_demo_loads_the_seed_blog(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(tmp_path / "d")}
    service = service_factory("demo", "--no-dispatcher", env=env)
    log = service.log()
    assert f"{service.url}/blogs/la-guerra-di-putin" in log
    assert "Editor token:  lb_" in log
    blog = httpx.get(f"{service.url}/api/blogs/la-guerra-di-putin").json()
    assert blog["title"] == "La guerra di Putin" and blog["timezone"] == "Europe/Rome"
    assert [r["author"] for r in blog["related"]] == ["Redazione Ore 12"] * 3
    (entry,) = httpx.get(f"{service.url}/api/blogs/la-guerra-di-putin/entries").json()["entries"]
    assert entry["time_label"] == "14.25"
    assert entry["title"].startswith("Crisi Ucraina")
    assert "Kirby" in entry["body_html"]


def test_token_create_validates_and_reports(redis_server) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": redis_server.url}
    made = run_cli("token", "create", "--name", "ops", "--role", "admin", env=env)
    assert made.returncode == 0 and made.stdout.strip().startswith("lb_")
    assert "shown only once" in made.stderr
    bad = run_cli("token", "create", "--name", "ops", "--role", "root", env=env)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("token", "create", "--name", "x", env={"LIVEBLOG_REDIS_URL": "redis://:sekret@127.0.0.1:1/0"})
    assert result.returncode == 3
    assert "error: cannot use Redis at redis://***@127.0.0.1:1/0" in result.stderr
    assert "Traceback" not in result.stderr and "sekret" not in result.stderr


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                                argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _subcommands(sub, (*path, name))


def test_every_subcommand_help_describes_it_and_names_its_environment_variables() -> None:
    variables = Settings.variables()
    seen = set()
    for path, parser in _subcommands(build_parser()):
        result = run_cli(*path, "--help", env={})
        assert result.returncode == 0, result.stderr
        assert parser.description and len(parser.description.split()) >= 12, path  # a paragraph, not a label
        assert " ".join(parser.description.split()) in " ".join(result.stdout.split())
        own = {v.name for v in variables if path[0] in v.used_by}
        assert own and all(name in result.stdout for name in own), path
        assert not any(v.name in result.stdout for v in variables if v.name not in own and v.name not in
                       parser.description), path
        seen.add(path[0])
    assert seen >= {"serve", "demo", "worker", "token"}
    assert "LIVEBLOG_SSE_HEARTBEAT" in run_cli("serve", "--help", env={}).stdout
    assert "LIVEBLOG_SSE_HEARTBEAT" not in run_cli("token", "create", "--help", env={}).stdout


def test_serve_raises_its_open_file_limit_to_the_hard_limit(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = int(Path("/proc/sys/fs/nr_open").read_text()) if hard == resource.RLIM_INFINITY else hard
    if expected <= 256:
        pytest.skip(f"the hard open-file limit ({hard}) leaves nothing to raise")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [sys.executable, "-m", "liveblog", "serve", "--no-dispatcher", "--port", str(port)],
            env={**os.environ, "LIVEBLOG_REDIS_URL": redis_server.url}, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    try:
        def ready() -> bool:
            assert serve.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=30, what="serve to be ready")
        limits = Path(f"/proc/{serve.pid}/limits").read_text()
        (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
        assert line.split()[3:5] == [str(expected), "unlimited" if hard == resource.RLIM_INFINITY else str(hard)]
        assert f"open-file limit raised from 256 to {expected}" in log.read_text()
    finally:
        serve.terminate()
        serve.wait(timeout=15)
