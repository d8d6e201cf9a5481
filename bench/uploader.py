"""The photo uploader of the ``uploads`` scenario, in a process of its own.

It used to run in the orchestrator, on the event loop that also times the editor's POSTs: building
each 18 MB body and writing it to the socket stalled that loop, and a POST stamped just before such a
stall counted the stall as the readers' latency. Here it only competes for the CPU, like any client on
the same machine (its CPU time is reported). It runs at the orchestrator's priority: the server gets the
uploads as fast as a client on this machine sends them.

Run as ``python -m bench.uploader``; one JSON line per command on stdin, one answer each:
``{"op": "start", "base": …, "token": …, "photo": <file>}`` starts uploading that photo again and again
(a different COM segment each time, so that the content-addressed store decodes every one);
``{"op": "stop"}`` stops and answers how many uploads completed, how many failed, the CPU seconds
this process used, and the error that stopped the uploads early, if one did.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

UPLOAD_TIMEOUT = 120.0


def unique(photo: bytes, n: int) -> bytes:
    """The same JPEG with a COM segment of its own: new bytes, new media id, same pixels."""
    tag = f"bench upload {n} {time.monotonic()}".encode()
    return photo[:2] + b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag + photo[2:]


async def upload_forever(base: str, token: str, photo: bytes, counts: dict[str, int]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"}
    async with httpx.AsyncClient(base_url=base, timeout=UPLOAD_TIMEOUT) as http:
        while True:
            response = await http.post("/api/media", content=unique(photo, counts["done"] + counts["failed"]),
                                       headers=headers)
            counts["done" if response.status_code == 201 else "failed"] += 1


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    counts = {"done": 0, "failed": 0}
    task: asyncio.Task[None] | None = None
    cpu0 = cpu_seconds()
    while line := await stdin.readline():
        command: dict[str, Any] = json.loads(line)
        if command["op"] == "start":
            photo = await asyncio.to_thread(Path(command["photo"]).read_bytes)
            cpu0 = cpu_seconds()
            task = asyncio.create_task(upload_forever(command["base"], command["token"], photo, counts))
            print(json.dumps({"started": True}), flush=True)
        elif command["op"] == "stop":
            error = None
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as exc:  # it stopped before it was asked to: say why
                    error = repr(exc)
            print(json.dumps({**counts, "cpu": cpu_seconds() - cpu0, "error": error}), flush=True)
            return


def main() -> None:
    import uvloop

    uvloop.run(serve())


if __name__ == "__main__":
    main()
