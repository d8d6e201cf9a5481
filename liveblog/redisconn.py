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

A ``redis+sentinel://[:password@]host:port[,host:port...]/SERVICE[/DB]`` URL gives the same two kinds
of client, but each connection asks the Sentinels for the current primary of SERVICE when it
connects. The password, if any, is the data nodes' one; the Sentinels are asked without one.
redis-py alone serves stale data around a failover: a connection still open to the old primary keeps
reading from it (only a write answered ``READONLY`` makes it reconnect), and after a ``SENTINEL
FAILOVER`` the old primary keeps saying "master" and taking writes for ~10 s, until the Sentinels
demote it and it resyncs from the new one, dropping them (a blog created there was a 404 right
after). The Sentinels also disagree for a moment: those that have not heard of the failover yet
still name the old primary, and redis-py took the first answer. Hence, as ioredis and Lettuce do:

* the primary is the one named by the Sentinel with the newest configuration: all Sentinels are
  asked at once (``SENTINEL MASTER`` and ``GET-MASTER-ADDR-BY-NAME``) and the highest
  ``config-epoch`` wins (a failover's leader bumps it when it promotes the replica);
* on connect, the node must answer ``ROLE`` with ``master`` (a demoted node still named somewhere),
  else the connection is closed and fails with ``ConnectionError``: a 503 like any failover moment,
  and the next connection asks the Sentinels again;
* on taking a connection from the pool, if the pool last asked the Sentinels more than
  ``primary_check_interval`` seconds ago (default 1 s), it asks them again -- one round of Sentinel
  queries per pool per interval, not per command or connection, cheaper than a ``ROLE`` per
  command and, unlike ``ROLE``, right while the old primary still calls itself "master". A connection
  (in use or idle) to an address that is no longer the primary is closed before it is used and when
  it is returned, so none keeps serving after the Sentinels switched. If no Sentinel answers that
  check, it is logged and the connections in place keep serving, as before.

What remains is Sentinel's own window: until the Sentinels switch, plus at most one interval, a
client may still use the old primary.

A plain ``redis://`` URL may name any node of a Redis Cluster: :func:`is_cluster` asks it once at
start-up (``INFO cluster``), and :func:`connect_pool` then builds a ``RedisCluster`` client, which
finds the other nodes and sends each command to the primary of its key's slot. It follows ``MOVED``
and ``ASK`` redirections (the node refused the command without running it, so sending it on is no
retry), but re-sends nothing after a timeout or a lost connection either: ``retry=no_retry()`` sets
the cluster client's own retry count to zero (its deprecated ``cluster_error_retry_attempts`` is
ignored once ``retry`` is given), and its per-node connections never retry. A failed command fails
the request (503) and makes the client reload the slot map before the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

# What a Redis that is down, restarting, failing over or resharding raises. A cluster client's
# RedisClusterException (its slot map cannot be loaded or does not cover a slot, no node answers) is
# no RedisError: a loop that catches only RedisError dies on it, silently.
UNAVAILABLE: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
# A command that met one of these may have lost its node (a primary died): a cluster reloads its slot
# map. Not MaxConnectionsError (a ConnectionError too): that is this client's own limit.
_LOST: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError,
                                      RedisClusterException)

POOL_SIZE = 50
DEFAULT_TIMEOUT = 5.0
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
PRIMARY_CHECK_INTERVAL = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url: str) -> SentinelURL:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/DB]``; ``ValueError``
    naming the bad part otherwise. A host without a port uses Sentinel's 26379."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = []
    for item in hostlist.split(","):
        host, port = _host_port(item.strip())
        sentinels.append((host, port))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("must end with /SERVICE or /SERVICE/DB (the name the Sentinels monitor)")
    service = unquote(path[0])
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"database must be a number, got {db!r}")
    if parts.query or parts.fragment:
        raise ValueError("takes no query or fragment")
    return SentinelURL(tuple(sentinels), service, int(db), unquote(username) or None, unquote(password) or None)


def _host_port(item: str) -> tuple[str, int]:
    if not item:
        raise ValueError("empty entry in the Sentinel host list")
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"Sentinel entry {item!r} has no host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"Sentinel entry {item!r} has no valid port")
    return host, int(port) if port else SENTINEL_PORT


class _EpochSentinel(Sentinel):
    """Takes the primary from the Sentinel with the newest configuration (see the module docstring)."""

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        answers = await asyncio.gather(*(self._named_by(sentinel, service_name) for sentinel in self.sentinels),
                                       return_exceptions=True)
        named = [answer for answer in answers if isinstance(answer, tuple)]
        if not named:
            errors = "; ".join(str(answer) for answer in answers if isinstance(answer, BaseException))
            raise MasterNotFoundError(f"No master found for {service_name!r}: {errors or 'none healthy'}")
        return max(named, key=lambda epoch_address: epoch_address[0])[1]

    async def _named_by(self, sentinel: aioredis.Redis, service_name: str) -> tuple[int, tuple[str, int]] | None:
        """``(config-epoch, address)`` from one Sentinel, ``None`` if it sees the primary down."""
        state = await sentinel.sentinel_master(service_name)
        if not self.check_master_state(state, service_name):
            return None
        host, port = await sentinel.sentinel_get_master_addr_by_name(service_name)
        return int(state["config-epoch"]), (host, int(port))


class _PrimaryConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that refuses a node which does not say it is the primary."""

    async def connect_to(self, address: tuple[str, int]) -> None:
        await super().connect_to(address)
        await self.send_command("ROLE")
        role = await self.read_response()
        if not role or role[0] != "master":
            await self.disconnect()
            raise RedisConnectionError(f"{self.host}:{self.port} is not the primary of "
                                       f"{self.connection_pool.service_name!r} (ROLE: {role[0] if role else role!r})")


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (asks for the primary on each connect) that waits for a free connection like
    the plain pool instead of failing with "Too many connections", connects only to a node that says
    it is the primary, and re-asks the Sentinels every ``primary_check_interval`` seconds (see the
    module docstring)."""

    def __init__(self, *args: Any, primary_check_interval: float = PRIMARY_CHECK_INTERVAL, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.primary_check_interval = primary_check_interval
        self._primary_asked_at = -math.inf

    async def get_master_address(self) -> Any:
        self._primary_asked_at = time.monotonic()
        return await super().get_master_address()  # also closes the idle connections if it moved

    def _elsewhere(self, connection: Any) -> bool:
        """Connected, but not to the address the Sentinels last named."""
        return (connection.is_connected and self.master_address is not None
                and (connection.host, connection.port) != tuple(self.master_address))

    async def ensure_connection(self, connection: Any) -> None:
        if time.monotonic() - self._primary_asked_at >= self.primary_check_interval:
            try:
                await self.get_master_address()
            except (RedisConnectionError, RedisTimeoutError) as error:  # keep serving through what is there
                log.warning("could not ask the Sentinels for the primary of %r: %s", self.service_name, error)
        if self._elsewhere(connection):
            await connection.disconnect()
        await super().ensure_connection(connection)

    async def release(self, connection: Any) -> None:
        if self._elsewhere(connection):
            await connection.disconnect()
        await super().release(connection)


class _SentinelClient(aioredis.Redis):
    """Closes the Sentinel connections along with the data connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def _common() -> dict[str, Any]:
    return dict(decode_responses=True, retry=no_retry(),
                maint_notifications_config=MaintNotificationsConfig(enabled=False))


def _client(url: str, *, primary_check_interval: float = PRIMARY_CHECK_INTERVAL, **pool_kwargs: Any
            ) -> aioredis.Redis:
    """A client on one connection pool with ``pool_kwargs``, through Sentinel if the URL says so
    (then re-asking the Sentinels for the primary every ``primary_check_interval`` seconds)."""
    common = _common()
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return aioredis.Redis(connection_pool=BlockingConnectionPool.from_url(url, **common, **pool_kwargs))
    target = parse_sentinel_url(url)
    connect_timeout = pool_kwargs.get("socket_connect_timeout") or DEFAULT_TIMEOUT
    sentinel = _EpochSentinel(list(target.sentinels), sentinel_kwargs=dict(
        socket_timeout=connect_timeout, socket_connect_timeout=connect_timeout, retry=no_retry(),
        decode_responses=True))
    return sentinel.master_for(target.service, redis_class=_SentinelClient,
                               connection_pool_class=_BlockingSentinelPool, connection_class=_PrimaryConnection,
                               primary_check_interval=primary_check_interval, db=target.db,
                               username=target.username, password=target.password, **common, **pool_kwargs)


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def pool_client(url: str, *, max_connections: int = POOL_SIZE, timeout: float = DEFAULT_TIMEOUT,
                primary_check_interval: float = PRIMARY_CHECK_INTERVAL) -> aioredis.Redis:
    """The shared client of a single Redis (or Sentinel-managed primary). ``timeout`` bounds each step
    of a command: waiting for a free connection, connecting, and each read of the answer; a Redis that
    stalls longer fails the command (``TimeoutError``, a 503 for the API) instead of holding the request.
    ``primary_check_interval``: see the module docstring (Sentinel only)."""
    return _client(url, max_connections=max_connections, timeout=timeout, socket_timeout=timeout,
                   socket_connect_timeout=timeout, health_check_interval=30,
                   primary_check_interval=primary_check_interval)


class _WaitingCluster(RedisCluster):
    """A cluster client whose commands wait up to ``pool_timeout`` seconds for one of
    ``max_connections`` slots, as ``BlockingConnectionPool`` waits for a free connection: redis-py's
    cluster pools fail at once past their size (``MaxConnectionsError``), which a burst of requests
    would meet as 503s. The slots are shared by every node, so no node has more commands in flight."""

    def __init__(self, *args: Any, max_connections: int = POOL_SIZE, pool_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, max_connections=max_connections, **kwargs)
        self._slots = asyncio.Semaphore(max_connections)
        self._pool_timeout = pool_timeout

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise MaxConnectionsError(f"no free connection to the cluster within {self._pool_timeout}s") from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._slots.release()


def cluster_client(url: str, *, max_connections: int = POOL_SIZE, timeout: float = DEFAULT_TIMEOUT) -> RedisCluster:
    """The shared client of a Redis Cluster whose nodes include ``url``'s: at most ``max_connections``
    commands in flight, a command waits up to ``timeout`` for its turn (then ``MaxConnectionsError``,
    a 503), as with :func:`pool_client`.

    ``reinitialize_steps=0``: a ``MOVED`` only corrects that slot's owner in the client's map. By
    default every fifth one reloads the whole map by closing every connection, including those other
    commands are using at that moment, which then fail with errors that are not even Redis errors
    (seen here during a slot migration: "unable to perform operation on <TCPTransport closed=True>")."""
    return _WaitingCluster.from_url(url, **_common(), max_connections=max_connections, pool_timeout=timeout,
                                    socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30,
                                    reinitialize_steps=0)


async def is_cluster(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether ``url`` names a node of a Redis Cluster (``cluster_enabled:1``). Raises the Redis error
    when it cannot tell (unreachable). A Sentinel URL names no cluster."""
    if url.startswith(SENTINEL_SCHEME + "://"):
        return False
    probe = _client(url, max_connections=1, timeout=timeout, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return str(info.get("cluster_enabled", "0")) == "1"


def connect(url: str, cluster: bool, *, max_connections: int = POOL_SIZE, timeout: float = DEFAULT_TIMEOUT
            ) -> aioredis.Redis:
    """:func:`cluster_client` if ``cluster`` (see :func:`is_cluster`), else :func:`pool_client`.

    Typed as ``Redis``: ``RedisCluster`` offers the same commands, scripts and non-transactional
    pipelines, routed by key; code that needs the cluster itself checks ``isinstance(client, RedisCluster)``."""
    if cluster:
        return cast(aioredis.Redis, cluster_client(url, max_connections=max_connections, timeout=timeout))
    return pool_client(url, max_connections=max_connections, timeout=timeout)


async def connect_pool(url: str, *, max_connections: int = POOL_SIZE, timeout: float = DEFAULT_TIMEOUT
                       ) -> aioredis.Redis:
    """:func:`connect` after asking ``url`` whether it is a cluster node (raises if it does not answer)."""
    return connect(url, await is_cluster(url, timeout=timeout), max_connections=max_connections, timeout=timeout)


def blocking_client(url: str, *, read_timeout: float | None = None, connect_timeout: float = DEFAULT_TIMEOUT
                    ) -> aioredis.Redis:
    """A client with one connection reserved for a single blocking reader loop (which reconnects by
    itself, remembering where it was).

    ``read_timeout`` must exceed the longest ``BLOCK`` the loop uses; it only catches a server
    that vanished without closing the connection.
    """
    return _client(url, max_connections=1, timeout=None, socket_timeout=read_timeout,
                   socket_connect_timeout=connect_timeout)


async def execute(client: aioredis.Redis, pipe: Any, *, raise_on_error: bool = True) -> list[Any]:
    """``pipe.execute()`` for a pipeline of ``client``. On a cluster, a lost connection or a timeout
    (a primary died) also reloads the slot map: redis-py's cluster pipeline does not, unlike its single
    commands, so pipelines to a primary that failed over kept going to the dead node until some single
    command happened to fail on it too. That holds whether the pipeline raised the error or, with
    ``raise_on_error=False``, returned it as some commands' results (a connection that the dead node
    closed fails only when its answers are read, and the pipeline then returns those failures).
    Nothing is sent again here."""
    try:
        results = list(await pipe.execute(raise_on_error=raise_on_error))
    except Exception as exc:
        if _lost(exc):
            await _reload_slot_map(client)
        raise
    if any(_lost(result) for result in results):
        await _reload_slot_map(client)
    return results


def _lost(error: object) -> bool:
    return isinstance(error, _LOST) and not isinstance(error, MaxConnectionsError)


async def _reload_slot_map(client: aioredis.Redis) -> None:
    if isinstance(client, RedisCluster):
        with contextlib.suppress(Exception):  # the next pipeline fails the same way and tries again
            await client.nodes_manager.initialize()


def log_failed_round(logger: logging.Logger, what: str, exc: Exception, retry_in: float) -> None:
    """Log a failed round of a background loop that then carries on after ``retry_in`` seconds: a
    warning when Redis was unavailable (:data:`UNAVAILABLE`), an error with the traceback for anything
    else (a bug: the loop must not die of it, and must not hide it)."""
    if isinstance(exc, UNAVAILABLE):
        logger.warning("%s: Redis unavailable (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, retry_in)
    else:
        logger.error("%s: unexpected error; retrying in %.1fs", what, retry_in, exc_info=exc)
