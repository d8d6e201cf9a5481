"""Redis stream IDs (``<ms>-<seq>``): parsing and ordering."""

from __future__ import annotations

import re

_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")

StreamId = tuple[int, int]


def parse(raw: str) -> StreamId | None:
    """Parse a stream ID as a client might send it; None if it is not one."""
    match = _ID.match(raw.strip())
    if not match:
        return None
    ms, seq = int(match.group(1)), int(match.group(2) or 0)
    if ms >= 2**64 or seq >= 2**64:
        return None
    return ms, seq


def lost_to_trimming(after: StreamId, trimmed: str | None) -> bool:
    """Whether some change after ``after`` was trimmed away. ``trimmed`` is the stream's marker, the
    highest ID trimmed (``None``: nothing was): every change after it is kept, so resuming (or
    replaying) from the marker itself misses nothing, and from anything before it does. The event
    stream's reset and the webhook replay both decide with this."""
    marker = parse(trimmed) if trimmed else None
    return marker is not None and after < marker


def fmt(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"
