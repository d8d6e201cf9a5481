"""A loopback webhook receiver cheap enough not to be the bottleneck: raw HTTP/1.1 on uvloop.

It answers every ``POST`` with ``204`` at once, keeping the connection alive, except paths that
start with ``/hang``, which it never answers (a receiver that times out). For each request it
records the path, the ``bench-<seq>x`` marker of the update in the body and the wall-clock arrival
time. Run as ``python -m bench.receiver``: it prints its port, then answers ``report`` lines on
stdin with one JSON line.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import sys
import time

SEQ = re.compile(rb"bench-(\d+)x")
REPLY = b"HTTP/1.1 204 No Content\r\nconnection: keep-alive\r\n\r\n"


RECORDS: list[tuple[str, int, float]] = []  # (path, update seq or -1, arrival time)


class Hooks(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            path = head.split(b" ", 2)[1].decode()
            match = SEQ.search(body)
            RECORDS.append((path, int(match.group(1)) if match else -1, now))
            if not path.startswith("/hang"):
                self.transport.write(REPLY)  # type: ignore[union-attr]


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Hooks, "127.0.0.1", 0, backlog=1024)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while line := await stdin.readline():
        if json.loads(line)["op"] == "report":
            print(json.dumps(RECORDS), flush=True)
            RECORDS.clear()
    server.close()


def main() -> None:
    import uvloop

    gc.disable()  # short-lived; see bench.loadgen
    uvloop.run(serve())


if __name__ == "__main__":
    main()
