"""Standard Webhooks signing (standardwebhooks.com, spec 1.0) with the reference library."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64 (the form every official library accepts)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def message_id(slug: str, event_id: str, sub_id: str) -> str:
    """The ``webhook-id``: one per (change, subscription), identical on every retry and on replay.

    Stream IDs are unique per blog only, so the slug is part of it. No dots (the spec joins
    ``id.timestamp.body`` with dots); slugs and stream IDs never contain ``_``, ids never ``.``.
    """
    return f"msg_{slug}_{event_id}_{sub_id}"


def signed_headers(secret: str, msg_id: str, body: str, moment: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (the timestamp is the attempt's)."""
    moment = moment or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
    }
