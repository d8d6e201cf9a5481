"""Who a request comes from, and how many event streams each client holds in this process.

The client address is the socket's peer, or, when the peer is one of ``LIVEBLOG_TRUSTED_PROXIES``, the
rightmost ``X-Forwarded-For`` entry that is not a trusted proxy: uvicorn's proxy-headers middleware
(configured by ``liveblog serve``) has already put that in ``scope["client"]``.
"""

from __future__ import annotations

import ipaddress

from starlette.types import Scope

from liveblog import capacity
from liveblog.config import Settings
from liveblog.webapp.problems import Problem

RETRY_AFTER_SECONDS = 10


def client_key(scope: Scope) -> str:
    """The address streams are counted by. An IPv6 client counts as its /64: one subscriber usually
    holds a whole /64 and could otherwise open streams from as many addresses as it likes."""
    client = scope.get("client")
    host = client[0] if client else ""
    if ":" in host:
        try:
            return str(ipaddress.IPv6Network((host, 64), strict=False))
        except ValueError:  # not an address (a zone index, a unix socket name): count it as it is
            return host
    return host


class StreamSlots:
    """Open event streams of this process, in total and per client address.

    A new stream is refused with ``503`` when the process holds ``LIVEBLOG_SSE_MAX_STREAMS`` (which
    keeps connections free for other requests, see ``capacity``), and with ``429`` when its client
    already holds ``LIVEBLOG_SSE_MAX_PER_CLIENT``. Every :meth:`acquire` is paired with one
    :meth:`release` when the stream ends.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.per_client = settings.sse_max_per_client
        self._total: int | None = None
        self.held: dict[str, int] = {}
        self.open = 0

    @property
    def total(self) -> int:
        if self._total is None:  # derived from the open-file limit once start-up has raised it
            self._total = capacity.max_streams(self.settings)
        return self._total

    def acquire(self, client: str) -> None:
        if self.open >= self.total:
            raise Problem(503, "this server holds as many event streams as it can; try again shortly",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        held = self.held.get(client, 0)
        if held >= self.per_client:
            raise Problem(429, f"at most {self.per_client} event streams per client address; close one first",
                          headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.held[client] = held + 1
        self.open += 1

    def release(self, client: str) -> None:
        held = self.held.get(client, 0)
        if held <= 1:
            self.held.pop(client, None)
        else:
            self.held[client] = held - 1
        self.open -= 1
