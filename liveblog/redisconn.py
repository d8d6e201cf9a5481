"""Redis clients.

Two kinds: a shared pool for ordinary commands (a ``BlockingConnectionPool`` that waits for a free
connection instead of failing with "Too many connections", redis-py #2517), and single dedicated
connections for blocking reads, with no socket timeout so that ``XREAD BLOCK`` is not cut off by
redis-py's default 5 s timeout (#2807) and never shares a connection with anyone (#2663).

Neither retries a command by itself. redis-py's default ``Retry`` re-sends a command after a
``TimeoutError`` too (adding ``retry_on_error`` does not remove that): after a Redis stall longer than
the socket timeout, the write script or ``INCR`` that timed out runs once when Redis wakes up and once
more as the retry (one PATCH gave two ``entry.updated``). A command that fails here fails the request
(503); where a retry is safe, the caller decides it. A connection that died with a Redis restart is
still replaced before use: the pool checks each connection it hands out (``ensure_connection``) --
but redis-py 8 skips that check when "maintenance notifications" are on (its default with RESP3), so
they are turned off here; without that, the first command on each pooled connection after a restart
failed with "Connection closed by server".
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

POOL_SIZE = 50
DEFAULT_TIMEOUT = 5.0


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def pool_client(url: str, *, max_connections: int = POOL_SIZE, timeout: float = DEFAULT_TIMEOUT) -> aioredis.Redis:
    """The shared client. ``timeout`` bounds each step of a command: waiting for a free connection,
    connecting, and each read of the answer; a Redis that stalls longer fails the command
    (``TimeoutError``, a 503 for the API) instead of holding the request."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        retry=no_retry(),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return aioredis.Redis(connection_pool=pool)


def blocking_client(url: str, *, read_timeout: float | None = None, connect_timeout: float = DEFAULT_TIMEOUT
                    ) -> aioredis.Redis:
    """A client with one connection reserved for a single blocking reader loop (which reconnects by
    itself, remembering where it was).

    ``read_timeout`` must exceed the longest ``BLOCK`` the loop uses; it only catches a server
    that vanished without closing the connection.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=1,
        timeout=None,
        decode_responses=True,
        socket_timeout=read_timeout,
        socket_connect_timeout=connect_timeout,
        retry=no_retry(),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )
    return aioredis.Redis(connection_pool=pool)
