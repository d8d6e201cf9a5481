"""A write script followed by ``WAIT`` on one connection, on a Redis Cluster.

``WAIT N T`` counts the replicas that have the writes of *its own connection*. On a single Redis the
store sends the script and ``WAIT`` in one pipeline, which redis-py keeps on one connection. redis-py's
cluster pipeline also sends each node's commands on one connection, so the ``WAIT`` is pinned to the
node of the script's slot (``target_nodes``) -- but it must not follow a redirection: a script that met
``MOVED``/``ASK`` would be re-sent alone on another connection, and the ``WAIT`` already answered for a
connection that wrote nothing (at once, counting every replica: a false acknowledgement). So
redirections come back as errors here; the script did not run, so the slot map is reloaded and both
are sent again, up to :data:`ATTEMPTS` times (then a ``ClusterError``: a 503). A timeout or a lost
connection is never re-sent.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, ClusterError, NoScriptError, TryAgainError

ATTEMPTS = 3


async def script_then_wait(cluster: RedisCluster, script: AsyncScript, keys: list[str], args: list[Any],
                           replicas: int, timeout_ms: int) -> tuple[Any, int]:
    """Run ``script`` and then ``WAIT replicas timeout_ms`` on the same connection; returns the
    script's result and how many replicas confirmed its writes."""
    await cluster.initialize()
    error: Exception | None = None
    for _ in range(ATTEMPTS):
        node = cluster.get_node_from_key(keys[0])
        async with cluster.pipeline() as pipe:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)  # pipe.evalsha is blocked
            pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
            result, confirmed = await pipe.execute(raise_on_error=False, allow_redirections=False)
        if isinstance(result, NoScriptError):  # first use on this node: load it, nothing ran
            await cluster.script_load(script.script)
        elif isinstance(result, (AskError, TryAgainError)):  # MOVED is an AskError too; nothing ran
            await cluster.nodes_manager.initialize()
        elif isinstance(result, Exception):
            raise result
        elif isinstance(confirmed, Exception):
            raise confirmed
        else:
            return result, int(confirmed)
        error = result
    raise ClusterError(f"the write's slot kept moving or missing its script: {error}") from error
