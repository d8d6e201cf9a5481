"""Redis clients.

Two kinds: a shared pool for ordinary commands (a ``BlockingConnectionPool`` that waits for a free
connection instead of failing with "Too many connections", redis-py #2517), and single dedicated
connections for blocking reads, with no socket timeout so that ``XREAD BLOCK`` is not cut off by
redis-py's default 5 s timeout (#2807) and never shares a connection with anyone (#2663).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool

POOL_SIZE = 50


def pool_client(url: str, *, max_connections: int = POOL_SIZE) -> aioredis.Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
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
