"""Redis key names of the webhook system (all under ``lb:wh:``).

A subscription's own keys carry its id as hash tag (``lb:wh:{id}:…``), like a blog's keys carry
its slug, so on a Redis Cluster they share one slot. Every queue script is called for one
subscription and declares the keys it touches (:func:`all_of`); the global keys below are
read and written with single-key commands only.
"""

from __future__ import annotations

SUBS = "lb:wh:subs"  # zset: subscription id -> creation time (ms, Redis clock)
VERSION = "lb:wh:version"  # random token, new on every subscription change (workers reload on change)
ACTIVE = "lb:wh:active"  # set: ids of subscriptions with queued or leased deliveries
GROUP = "webhooks"  # consumer group on every blog stream (``lb:{slug}:stream``)


def prefix(sub_id: str) -> str:
    """Common prefix of one subscription's keys: ``{id}`` is their hash tag."""
    return f"lb:wh:{{{sub_id}}}:"


def sub(sub_id: str) -> str:
    """Hash: ``doc`` (config JSON with the secret), ``state`` and health counters."""
    return prefix(sub_id) + "sub"


def queue(sub_id: str) -> str:
    """Zset: delivery id -> due time (ms): deliveries waiting for their (next) attempt."""
    return prefix(sub_id) + "q"


def leases(sub_id: str) -> str:
    """Zset: delivery id -> lease expiry (ms): deliveries a worker is attempting right now."""
    return prefix(sub_id) + "lease"


def jobs(sub_id: str) -> str:
    """Hash: delivery id -> job JSON (event id, blog, type, body, attempts so far)."""
    return prefix(sub_id) + "jobs"


def log(sub_id: str) -> str:
    """List: recent attempts, newest first, capped."""
    return prefix(sub_id) + "log"


def done(sub_id: str) -> str:
    """Zset: delivery id -> when it was finished (ms): recently delivered, failed or gone deliveries,
    so that a change queued again (its worker died before acknowledging it) is not sent twice."""
    return prefix(sub_id) + "done"


def all_of(sub_id: str) -> list[str]:
    """Every key of one subscription, in the order the queue scripts take them (``KEYS[1]``..``KEYS[6]``)."""
    return [sub(sub_id), queue(sub_id), leases(sub_id), jobs(sub_id), log(sub_id), done(sub_id)]
