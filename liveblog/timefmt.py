"""Times: stored in UTC (RFC 3339), shown in the blog's timezone in Italian style (``14.25``)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC with a ``Z`` and millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp needs an offset or Z")
    return moment.astimezone(UTC)


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def valid_timezone(name: str) -> bool:
    """An IANA name this machine knows. Looked up in the list, never opened as a file: a name like
    ``Europe`` (a directory) or one of 5,000 characters (ENAMETOOLONG) is simply not a zone."""
    return name in _known_zones()


def time_label(moment: datetime, tz: str) -> str:
    """Wall-clock time in the blog's timezone, Italian style: ``14.25``."""
    return moment.astimezone(zone(tz)).strftime("%H.%M")


_MONTHS = {
    "it": (
        "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre"
    ).split(),
    "en": "January February March April May June July August September October November December".split(),
}


def date_label(moment: datetime, tz: str, language: str = "it") -> str:
    """``25 novembre 2026`` (or ``25 November 2026``) in the blog's timezone."""
    local = moment.astimezone(zone(tz))
    months = _MONTHS.get(language, _MONTHS["it"])
    return f"{local.day} {months[local.month - 1]} {local.year}"
