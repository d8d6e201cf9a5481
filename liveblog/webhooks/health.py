"""A liveness file for `liveblog worker`, which serves no HTTP that a health check could ask.

The running worker touches the file while its dispatcher makes progress (a claim round trip to
Redis within ``STALE_SECONDS``); `liveblog worker --check` (a container health check) exits 0 only
while the file is that fresh. A worker that hangs, or that cannot reach Redis, stops touching it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

STALE_SECONDS = 30.0
BEAT_SECONDS = 5.0


async def beat(path: Path, last_progress: Callable[[], float]) -> None:
    """Touch ``path`` every few seconds while ``last_progress()`` (a monotonic time) is recent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        if time.monotonic() - last_progress() < STALE_SECONDS:
            await asyncio.to_thread(path.touch)
        await asyncio.sleep(BEAT_SECONDS)


def check(path: Path) -> tuple[bool, str]:
    """Whether the worker that writes ``path`` made progress lately, and why not if it did not."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False, f"{path} does not exist: no worker has made progress yet"
    if age > STALE_SECONDS:
        return False, f"the worker made no progress for {age:.0f} s (Redis unreachable, or the worker is stuck)"
    return True, f"the worker made progress {age:.0f} s ago"
