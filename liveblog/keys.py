"""Redis key names.

Every key of one blog carries the hash tag ``{slug}`` so that, on Redis Cluster, a blog's keys live
on one shard and the Lua scripts that touch several of them at once stay legal.
"""

from __future__ import annotations

BLOGS = "lb:blogs"  # sorted set: slug -> creation time (ms)
TOKENS = "lb:tokens"  # hash: sha256(token) -> JSON {id, name, role, blogs, created_at}
# The hash tag {lb:tokens} puts these in the slot of TOKENS itself, so one script may touch all three.
TOKEN_IDS = "{lb:tokens}:ids"  # hash: token id -> sha256(token)
TOKEN_USED = "{lb:tokens}:used"  # hash: token id -> last use (RFC 3339), written at most once a minute
SCHEDULED = "lb:scheduled"  # set: slugs of blogs that have scheduled entries (scheduler.py)
AUTHORS = "lb:authors"  # hash: author id -> JSON profile {id, name, title, url, avatar, created_at}


def blog(slug: str) -> str:
    """Hash: the blog's current state as one JSON field ``doc``."""
    return f"lb:{{{slug}}}:blog"


def entries(slug: str) -> str:
    """Hash: entry id -> the entry's current state (JSON)."""
    return f"lb:{{{slug}}}:entries"


def order(slug: str) -> str:
    """Sorted set: entry id scored by publication time (ms), for newest-first pages."""
    return f"lb:{{{slug}}}:order"


def pinned(slug: str) -> str:
    """Sorted set: ids of pinned entries scored by publication time (ms)."""
    return f"lb:{{{slug}}}:pinned"


def stream(slug: str) -> str:
    """Stream: the blog's change log, one item per change (fields ``type``, ``data``, ``n``)."""
    return f"lb:{{{slug}}}:stream"


def changes(slug: str) -> str:
    """Counter: the number of the blog's latest change (stream field ``n``). A store that lost or
    rolled back changes breaks the 1, 2, 3, ... sequence, which readers are told about."""
    return f"lb:{{{slug}}}:changes"


def trimmed(slug: str) -> str:
    """String: the highest stream ID trimmed away; resuming from before it needs a reset."""
    return f"lb:{{{slug}}}:trimmed"


def seq(slug: str) -> str:
    """Counter for entry ids."""
    return f"lb:{{{slug}}}:seq"


def idempotency(slug: str, key: str) -> str:
    return f"lb:{{{slug}}}:idem:{key}"


def deleted(slug: str) -> str:
    """Set: ids of deleted entries (their pages answer 410 Gone)."""
    return f"lb:{{{slug}}}:deleted"


def drafts(slug: str) -> str:
    """Hash: draft id (``d`` + hex) -> unpublished entry JSON (status ``draft`` or ``scheduled``).
    Outside every public path: written without any change event, ids apart from the public ones."""
    return f"lb:{{{slug}}}:drafts"


def scheduled(slug: str) -> str:
    """Sorted set: ids of scheduled drafts -> publish_at (ms)."""
    return f"lb:{{{slug}}}:scheduled"


def revisions(slug: str) -> str:
    """Hash: entry id (public or draft) -> JSON array of its versions, oldest first."""
    return f"lb:{{{slug}}}:revisions"


def readers(slug: str) -> str:
    """Hash: web process -> ``count:expiry ms`` of its open event streams of the blog (presence.py)."""
    return f"lb:{{{slug}}}:readers"


def changed(slug: str) -> str:
    """Sharded pub/sub channel (Redis Cluster only): the write script publishes the change number
    here with each change, in the blog's own slot, to wake the readers (clusterlog.py)."""
    return f"lb:{{{slug}}}:changed"


def slug_of_channel(channel: str) -> str:
    """Inverse of :func:`changed`."""
    return channel[len("lb:{") : -len("}:changed")]


def slug_of_stream(stream_key: str) -> str:
    """Inverse of :func:`stream`."""
    return stream_key[len("lb:{") : -len("}:stream")]
