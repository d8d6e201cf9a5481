"""When to try again: the retry schedule with ±20 % jitter, and ``Retry-After``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2
# A receiver may ask for a pause (429/503 + Retry-After); longer requests are cut to this.
MAX_RETRY_AFTER = 24 * 3600.0
RETRY_AFTER_STATUSES = (429, 503)


def retry_delay(attempts: int, schedule: Sequence[float], *, retry_after: float | None = None,
                rng: random.Random | None = None) -> float | None:
    """Seconds to wait after the ``attempts``-th failed attempt, or None when none is left.

    ``schedule[i]`` is the pause before attempt ``i + 2``: a schedule of n delays allows n + 1
    attempts. Jitter spreads retries of many deliveries that failed together.
    """
    if attempts < 1 or attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() alone accepts "²", which float() refuses
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def next_step(status: int | None, attempts: int, schedule: Sequence[float], *,
              retry_after: float | None = None) -> tuple[str, float | None]:
    """What follows an attempt (``attempts`` made so far, this one included), with the delay:
    ``delivered`` (2xx), ``gone`` (410: the receiver is gone, the subscription gets disabled),
    ``retrying`` after a delay, or ``failed`` when the schedule is used up."""
    if status is not None and 200 <= status < 300:
        return "delivered", None
    if status == 410:
        return "gone", None
    delay = retry_delay(attempts, schedule, retry_after=retry_after if status in RETRY_AFTER_STATUSES else None)
    return ("failed", None) if delay is None else ("retrying", delay)
