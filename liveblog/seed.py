"""The demo live blog, loaded from the seed documents in ``seeds/``.

A seed document is plain text: the blog's title, the update's headline, its paragraphs, a line
``aggiornamento … ore HH.MM`` giving the update's time in Europe/Rome, then ``Related posts``
followed by pairs of lines (headline, author).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from liveblog import timefmt
from liveblog.store import NotFound, Store

DEMO_SLUG = "la-guerra-di-putin"
TIMEZONE = "Europe/Rome"
_TIME_LINE = re.compile(r"^aggiornamento\b.*\bore\s+(\d{1,2})[.:](\d{2})\s*$", re.IGNORECASE)


@dataclass
class SeedDocument:
    blog_title: str
    headline: str
    paragraphs: list[str]
    hour: int
    minute: int
    related: list[dict[str, str]] = field(default_factory=list)


def parse(text: str) -> SeedDocument:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    stamp = next((i for i, line in enumerate(lines) if _TIME_LINE.match(line)), None)
    if len(lines) < 3 or stamp is None:
        raise ValueError("a seed needs a title, a headline, a body and an 'aggiornamento … ore HH.MM' line")
    match = _TIME_LINE.match(lines[stamp])
    assert match is not None
    related: list[dict[str, str]] = []
    rest = lines[stamp + 1 :]
    if rest and rest[0].lower() == "related posts":
        pairs = rest[1:]
        related = [{"title": pairs[i], "author": pairs[i + 1]} for i in range(0, len(pairs) - 1, 2)]
    return SeedDocument(lines[0], lines[1], lines[2:stamp], int(match.group(1)), int(match.group(2)), related)


def seed_dir() -> Path:
    """``seeds/`` of a source checkout, or the copy packed into the wheel."""
    checkout = Path(__file__).resolve().parent.parent / "seeds"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("liveblog") / "_seeds"))


def latest_wall_time(hour: int, minute: int, tz: str) -> datetime:
    """The most recent moment (not in the future) at HH:MM in ``tz``."""
    local_now = timefmt.now().astimezone(timefmt.zone(tz))
    moment = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if moment > local_now:
        moment -= timedelta(days=1)
    return moment


async def load_demo(store: Store, directory: Path | None = None) -> tuple[str, bool]:
    """Load the first seed document as the demo blog; returns (slug, created). Idempotent."""
    files = sorted((directory or seed_dir()).glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no seed documents in {directory or seed_dir()}")
    doc = parse(files[0].read_text(encoding="utf-8"))
    try:
        await store.get_blog(DEMO_SLUG)
    except NotFound:
        await store.create_blog({"slug": DEMO_SLUG, "title": doc.blog_title, "timezone": TIMEZONE},
                                related=doc.related)
    if await store.list_entries(DEMO_SLUG, limit=1):
        return DEMO_SLUG, False
    author = doc.related[0]["author"] if doc.related else None
    await store.create_entry(
        DEMO_SLUG,
        {"title": doc.headline, "body": "\n\n".join(doc.paragraphs), "author": author, "key_event": True},
        published_at=latest_wall_time(doc.hour, doc.minute, TIMEZONE),
    )
    return DEMO_SLUG, True
