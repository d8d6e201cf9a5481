"""Redis clients.

Two kinds: a shared pool for ordinary commands (a ``BlockingConnectionPool`` that waits for a free
connection instead of failing with "Too many connections", redis-py #2517), and single dedicated
connections for blocking reads, with no socket timeout so that ``XREAD BLOCK`` is not cut off by
redis-py's default 5 s timeout (#2807) and never shares a connection with anyone (#2663).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

POOL_SIZE = 50


def pool_client(url: str, *, max_connections: int = POOL_SIZE) -> aioredis.Redis:
    """The shared client. A pooled connection that died with a Redis restart is replaced and the
    command retried (twice, quickly) instead of failing the first request after the restart; while
    Redis stays down, commands still fail fast and the API answers 503."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError],
    )
    return aioredis.Redis(connection_pool=pool)


def blocking_client(url: str, *, read_timeout: float | None = None) -> aioredis.Redis:
    """A client with one connection reserved for a single blocking reader loop.

    ``read_timeout`` must exceed the longest ``BLOCK`` the loop uses; it only catches a server
    that vanished without closing the connection.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=1,
        timeout=None,
        decode_responses=True,
        socket_timeout=read_timeout,
        socket_connect_timeout=5,
    )
    return aioredis.Redis(connection_pool=pool)
