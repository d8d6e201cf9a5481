"""One row per measured run, and the table they make."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.redisload import RedisLoad


def percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Row:
    scenario: str
    target: str
    readers: int
    delivered: int
    expected: int
    latencies: list[float] = field(default_factory=list, repr=False)
    exact: int = 0  # readers that got every update exactly once, in order
    rss_per_reader: float | None = None  # bytes
    cpu: float | None = None  # server CPU seconds over the run
    note: str = ""
    # For the capacity model (bench/model.py), where a scenario measures them; summed over its processes.
    processes: int = 1
    cpu_connect: float | None = None  # server CPU seconds from before the first connect to the settle's end
    rss_base: float | None = None  # bytes of RSS before any reader connected
    rss_total: float | None = None  # bytes of RSS with every reader connected, after the settle
    redis: RedisLoad | None = None

    def __post_init__(self) -> None:
        self.latencies.sort()

    def p(self, fraction: float) -> float | None:
        return percentile(self.latencies, fraction)


HEADER = ("scenario", "server", "readers", "delivered/expected", "exactly once", "p50 ms", "p90 ms", "p99 ms",
          "max ms", "RSS/reader", "server CPU s", "notes")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def cells(row: Row) -> list[str]:
    return [
        row.scenario,
        row.target,
        f"{row.readers:,}",
        f"{row.delivered:,}/{row.expected:,}",
        f"{row.exact:,}/{row.readers:,}",
        _ms(row.p(0.50)),
        _ms(row.p(0.90)),
        _ms(row.p(0.99)),
        _ms(row.latencies[-1] if row.latencies else None),
        "–" if row.rss_per_reader is None else f"{row.rss_per_reader / 1024:.1f} KB",
        "–" if row.cpu is None else f"{row.cpu:.1f}",
        row.note,
    ]


def table(rows: list[Row]) -> str:
    """A Markdown table (it reads well in a terminal too)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(" --- " for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)
