"""A real Sentinel-managed Redis for tests: one primary, one replica, three Sentinels, all on free
loopback ports with their config files in a temporary directory. Failovers are fast
(``down-after-milliseconds`` 1000, ``failover-timeout`` 3000)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from liveblog.embedded import find_server_binary
from tests.conftest import free_port, stop_processes, wait_until

SERVICE = "mymaster"


class SentinelSetup:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port(), free_port(), free_port()]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def _run(self, port: int, config: str, *extra: str) -> None:
        path = self.directory / f"{port}.conf"
        path.write_text(config)
        self.processes[port] = subprocess.Popen([find_server_binary(), str(path), *extra],
                                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        primary, replica = self.data_ports
        for port in self.data_ports:
            data = self.directory / str(port)
            data.mkdir()
            config = (f"port {port}\nbind 127.0.0.1\ndir {data}\nsave \"\"\nappendonly no\n"
                      f"logfile {data}/redis.log\n")
            if port == replica:
                config += f"replicaof 127.0.0.1 {primary}\n"
            self._run(port, config)
        for port in self.data_ports:
            wait_until(lambda port=port: self._answers(port), what=f"redis-server :{port}")
        for port in self.sentinel_ports:
            self._run(port, (f"port {port}\nbind 127.0.0.1\nsentinel resolve-hostnames no\n"
                             f"logfile {self.directory}/sentinel-{port}.log\n"
                             f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                             f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                             f"sentinel failover-timeout {SERVICE} 3000\n"
                             f"sentinel parallel-syncs {SERVICE} 1\n"), "--sentinel")
        wait_until(self._sentinels_agree, timeout=30, what="the Sentinels to see the replica and each other")

    def _answers(self, port: int) -> bool:
        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], decode_responses=True, socket_timeout=2)

    def _sentinels_agree(self) -> bool:
        try:
            for index in range(len(self.sentinel_ports)):
                info = self.sentinel(index).sentinel_master(SERVICE)
                if int(info["num-slaves"]) < 1 or int(info["num-other-sentinels"]) < 2:
                    return False
            return True
        except redis.RedisError:
            return False

    def primary_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(SERVICE)[1])

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.primary_port(), decode_responses=True)

    def replica_synced(self, port: int) -> bool:
        """The replica on ``port`` is connected to the current primary and caught up."""
        try:
            info = redis.Redis(port=port, socket_timeout=1).info("replication")
            return info.get("master_link_status") == "up"
        except redis.RedisError:
            return False

    def failover(self) -> int:
        """``SENTINEL FAILOVER``: the replica becomes the primary (both keep running). Returns the new
        primary's port once a Sentinel names it and it accepts writes."""
        old = self.primary_port()
        self.sentinel().sentinel_failover(SERVICE)
        return self._await_new_primary(old)

    def kill_primary(self) -> int:
        """SIGKILL the primary; a Sentinel-elected replica takes over. Returns the new primary's port."""
        old = self.primary_port()
        self.processes[old].kill()
        self.processes[old].wait()
        return self._await_new_primary(old)

    def _await_new_primary(self, old: int) -> int:
        def moved() -> bool:
            try:
                port = self.primary_port()
                return port != old and redis.Redis(port=port, socket_timeout=1).info("replication")["role"] == "master"
            except redis.RedisError:
                return False
        wait_until(moved, timeout=30, what="the Sentinels to promote a new primary")
        return self.primary_port()

    def stop(self) -> None:
        stop_processes(self.processes.values())
