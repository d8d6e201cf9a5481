"""How many connections and event streams one web process may hold.

Every connection is a file descriptor, and so is every Redis connection, webhook delivery and file the
process opens. When connections take the last descriptors, Redis connections fail with ``EMFILE`` and
every request fails with them (editors' writes, ``/readyz``). So the connection cap leaves a reserve
of descriptors for the rest of the process, and event streams (which stay open) may take all of the
connections but a headroom kept for short requests: a crowd of readers near the cap still leaves room
for editors' writes, page loads and ``/readyz``.
"""

from __future__ import annotations

import resource
from pathlib import Path

from liveblog.config import Settings

# File descriptors kept for Redis pools, webhook deliveries, logs and files (at most a quarter of a
# small limit).
FD_RESERVE = 1024
# Connections kept for requests other than event streams (at most a tenth of a small cap).
STREAM_HEADROOM = 256


def open_file_limit() -> int:
    """The process's current (soft) open-file limit; read when needed, as it is raised at start-up."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def max_connections(settings: Settings) -> int:
    """``LIVEBLOG_MAX_CONNECTIONS``, or the open-file limit minus a reserve for everything else."""
    if settings.max_connections:
        return settings.max_connections
    limit = open_file_limit()
    return max(16, limit - min(FD_RESERVE, limit // 4))


def max_streams(settings: Settings) -> int:
    """``LIVEBLOG_SSE_MAX_STREAMS``, or the connection cap minus a headroom for other requests."""
    if settings.sse_max_streams:
        return settings.sse_max_streams
    connections = max_connections(settings)
    return max(1, connections - min(STREAM_HEADROOM, connections // 10))


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (done at start-up by every process: each
    connection is a descriptor, and a default soft limit of 1024 is far below what a web process
    holds). Returns the soft limit before and after; an unlimited hard limit means the kernel's
    ``nr_open``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            return soft, soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft, soft
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]
