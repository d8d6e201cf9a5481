"""Settings are validated at start-up: a bad LIVEBLOG_* value stops every command with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from liveblog.config import SettingError, Settings

COMMANDS = {
    "serve": ["serve", "--port", "1"],
    "demo": ["demo", "--port", "1"],
    "worker": ["worker"],
    "token create": ["token", "create", "--name", "x"],
}

BAD = [
    ("LIVEBLOG_SSE_HEARTBEAT", "0"),
    ("LIVEBLOG_SSE_HEARTBEAT", "nan"),
    ("LIVEBLOG_SSE_SEND_TIMEOUT", "0"),
    ("LIVEBLOG_SSE_SEND_TIMEOUT", "3601"),
    ("LIVEBLOG_PAGE_MAX_ENTRIES", "0"),
    ("LIVEBLOG_PAGE_ENDED_POLL", "0"),
    ("LIVEBLOG_STREAM_MAXLEN", "-5"),
    ("LIVEBLOG_MAX_BODY_BYTES", "1.5"),
    ("LIVEBLOG_WEBHOOK_CONCURRENCY", "0"),
    ("LIVEBLOG_WEBHOOK_TIMEOUT", "-1"),
    ("LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,10.0.0.0/33"),
    ("LIVEBLOG_WEBHOOK_RETRY_SCHEDULE", " , "),
    ("LIVEBLOG_WEBHOOK_RETRY_SCHEDULE", "5,-1"),
    ("LIVEBLOG_REDIS_URL", "http://127.0.0.1:6379"),
    ("LIVEBLOG_REDIS_URL", "redis://127.0.0.1:99999/0"),
    ("LIVEBLOG_PUBLIC_URL", "ftp://live.example.org"),
    ("LIVEBLOG_PUBLIC_URL", "live.example.org"),
    ("LIVEBLOG_ADMIN_TOKEN", "short"),
    ("LIVEBLOG_MEDIA_YIELD_MS", "-1"),
    ("LIVEBLOG_MEDIA_YIELD_MS", "10001"),
    ("LIVEBLOG_MEDIA_YIELD_MS", "0.5"),
]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "liveblog", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_setting_stops_the_service_with_exit_code_2_naming_the_variable(
        name: str, value: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli(*COMMANDS["serve"], env={"LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(data), name: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"liveblog: error: {name} "), result.stderr
    assert not data.exists()  # refused before anything started: no embedded server, no data dir


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_bad_setting_before_it_starts(command: str, tmp_path: Path) -> None:
    env = {"LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(tmp_path / "data"),
           "LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS": "not-a-network"}
    result = run_cli(*COMMANDS[command], env=env)
    assert result.returncode == 2
    assert "LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS" in result.stderr and "'not-a-network'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = run_cli("token", "create", "--name", "x",
                     env={"LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(tmp_path / "file")})
    assert result.returncode == 2 and "LIVEBLOG_DATA_DIR must be a directory" in result.stderr


def test_good_values_are_parsed_and_normalised() -> None:
    settings = Settings.from_env({
        "LIVEBLOG_SSE_HEARTBEAT": " 0.5 ",
        "LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS": "10.1.2.3/8, ::1/128,",
        "LIVEBLOG_WEBHOOK_RETRY_SCHEDULE": "0,1.5,",
        "LIVEBLOG_REDIS_URL": "unix:///tmp/x/redis.sock",
        "LIVEBLOG_PUBLIC_URL": "https://live.example.org/blog/",
        "LIVEBLOG_STREAM_MAXLEN": "",
    })
    assert settings.heartbeat_seconds == 0.5
    assert settings.send_timeout_seconds == 10.0
    assert Settings.from_env({"LIVEBLOG_SSE_SEND_TIMEOUT": "2.5"}).send_timeout_seconds == 2.5
    assert settings.allowed_networks == ("10.0.0.0/8", "::1/128")
    assert settings.retry_schedule == (0.0, 1.5)
    assert settings.redis_url == "unix:///tmp/x/redis.sock"
    assert settings.public_url == "https://live.example.org/blog"
    assert settings.stream_maxlen == 10_000
    assert settings.media_yield_ms == 200
    assert Settings.from_env({"LIVEBLOG_MEDIA_YIELD_MS": "0"}).media_yield_ms == 0
    for url in ("redis://:pw@h:6379/0", "rediss://h", "redis+sentinel://a:26379,b:26379/mymaster"):
        assert Settings.from_env({"LIVEBLOG_REDIS_URL": url}).redis_url == url


def test_setting_error_names_the_variable() -> None:
    with pytest.raises(SettingError) as caught:
        Settings.from_env({"LIVEBLOG_SSE_HEARTBEAT": "4000"})
    assert caught.value.name == "LIVEBLOG_SSE_HEARTBEAT"
    assert str(caught.value) == ("LIVEBLOG_SSE_HEARTBEAT must be a number greater than 0 and at most 3600, "
                                 "got '4000'")


def test_every_variable_is_declared_with_documentation() -> None:
    variables = Settings.variables()
    assert len({v.name for v in variables}) == len(variables)
    assert all(v.name.startswith("LIVEBLOG_") and v.doc and v.used_by for v in variables)
