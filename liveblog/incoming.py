"""Upload bodies on their way in: written to a file under ``<media dir>/.incoming`` chunk by chunk as they
arrive, hashed as they come, and handed to the decoding process by name.

Why a file and not the bytes: an 18 MB body kept in memory was accumulated and copied on the event loop,
then pickled into the process pool's pipe by a thread of the web process that holds the GIL while it
copies; py-spy showed those stalls in the middle of every reader's stream (bench ``uploads``). A chunk
here costs one ``write`` and one SHA-256 update (a fraction of a millisecond for the 64–256 KB the
server reads at a time), and the worker reads the file itself: no large buffer crosses the event loop or
a pipe.

A file is named ``<host>-<pid>-<random>.tmp``. The web process that wrote it removes it in every case:
when the job that reads it ends (stored, refused or the worker crashed), when the upload is refused
before that (too large, not an image), when the client goes away mid-body, and at shutdown. Only a
process killed outright leaves files behind: the next web process started on the same host removes the
files of this host whose process no longer runs, or carries its own pid (a previous incarnation, as in a
restarted container). Files of other hosts sharing the directory are left to them, unless untouched for
``ABANDONED_AFTER`` (a host that never comes back, a container recreated under a new name): no upload
waits that long.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from pathlib import Path
from typing import BinaryIO

INCOMING = ".incoming"
IDENT_CHARS = 32  # a stored photo's id: this many hex digits of the SHA-256 of the uploaded bytes
HEAD = 12  # bytes kept for the signature check (``liveblog.media.looks_like_image``)
ABANDONED_AFTER = 24 * 3600  # seconds without a write after which anyone's incoming file is removed


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Incoming:
    """One upload's body on disk, its size, its first bytes and its SHA-256 so far."""

    def __init__(self, media_dir: Path) -> None:
        directory = media_dir / INCOMING
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{_owner()}-{uuid.uuid4().hex}.tmp"
        self._file: BinaryIO | None = open(self.path, "xb")  # closed by close() or discard()
        self._sha = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "written after close"
        if len(self.head) < HEAD:
            self.head += chunk[: HEAD - len(self.head)]
        self._sha.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def close(self) -> None:
        """The body is complete: the file is flushed for the process that reads it."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def ident(self) -> str:
        return self._sha.hexdigest()[:IDENT_CHARS]

    def discard(self) -> None:
        """Close and remove the file (again is harmless)."""
        self.close()
        self.path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _stale(path: Path, host: str) -> bool:
    parts = path.name.removesuffix(".tmp").rsplit("-", 2)
    if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
        pid = int(parts[1])
        if pid == os.getpid() or not _running(pid):
            return True
    try:
        return path.stat().st_mtime < time.time() - ABANDONED_AFTER
    except FileNotFoundError:
        return False


def remove_stale(media_dir: Path) -> int:
    """Remove the files of this host's processes that no longer run and of this very process (at start-up
    a previous incarnation's, at shutdown its own), and anyone's abandoned ones; returns how many went."""
    host = socket.gethostname()
    removed = 0
    try:
        paths = list((media_dir / INCOMING).iterdir())
    except FileNotFoundError:
        return 0
    for path in paths:
        if _stale(path, host):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
