"""Replay: queue again every change after an event ID that a subscription follows."""

from __future__ import annotations

from typing import Any

from liveblog import streamids
from liveblog.present import Presenter
from liveblog.store import Store, ValidationError
from liveblog.webhooks.queue import DeliveryQueue, Job
from liveblog.webhooks.subscriptions import Subscription

MAX_REPLAY = 10_000
PAGE = 500


async def replay(store: Store, presenter: Presenter, queue: DeliveryQueue, sub: Subscription, since_event_id: Any
                 ) -> dict[str, Any]:
    """Re-enqueue the followed blogs' changes strictly after ``since_event_id`` (``"0"``: all kept).

    Deliveries keep their ``webhook-id`` (a receiver that already has one may skip it) and start
    again at attempt 1; one being attempted right now is left to finish. Changes the stream no
    longer holds (trimmed) cannot be replayed; the answer lists the blogs where that happened.
    """
    since = streamids.parse(since_event_id) if isinstance(since_event_id, str) else None
    if since is None:
        raise ValidationError("'since_event_id' must be a change ID such as \"1718000000000-0\" (or \"0\")")
    slugs = await store.blog_slugs() if "*" in sub.blogs else list(sub.blogs)
    queued, incomplete, truncated = 0, [], False
    for slug in slugs:
        if streamids.lost_to_trimming(since, await store.changes.trimmed(slug)):
            incomplete.append(slug)
        cursor = streamids.fmt(since)
        while queued < MAX_REPLAY:
            changes = await store.changes.after(slug, cursor, min(PAGE, MAX_REPLAY - queued))
            if not changes:
                break
            tz = await store.timezone(slug)
            jobs = [Job.for_change(sub.id, slug, c.id, c.type, presenter.change(c.type, c.data, tz))
                    for c in changes if c.type in sub.events]
            if jobs:
                queued += await queue.enqueue(jobs, replay=True)
            cursor = changes[-1].id
        else:
            truncated = True
            break
    return {"since_event_id": streamids.fmt(since), "queued": queued, "truncated_at_limit": truncated,
            "trimmed_blogs": incomplete}
