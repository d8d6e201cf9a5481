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


def fmt(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"
