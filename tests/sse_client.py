"""A small real SSE client for tests: connects over HTTP, parses the wire format (LF or CRLF)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    id: str | None
    event: str
    data: str
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SSEClient:
    """Reads one event stream in a background task; events land in ``queue``, comments in ``comments``,
    ``heartbeat`` events in ``heartbeats`` and ``blog.readers`` events in ``presence`` (both come at any
    time, so they are kept out of ``queue``)."""

    def __init__(self, url: str, *, last_event_id: str | None = None, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = {"Accept": "text/event-stream", **(headers or {})}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        self.params = params or {}
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.comments: list[str] = []
        self.heartbeats: list[Event] = []  # kept apart from ``queue``: they come at any time
        self.presence: asyncio.Queue[Event] = asyncio.Queue()
        self.retry: int | None = None
        self.status: int | None = None
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SSEClient:
        self._task = asyncio.create_task(self._run())
        done, _ = await asyncio.wait({self._task, asyncio.ensure_future(self.connected.wait())}, timeout=10,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._task in done and self._task.exception():
            raise self._task.exception()  # type: ignore[misc]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
                async with http.stream("GET", self.url, headers=self.headers, params=self.params) as response:
                    self.status = response.status_code
                    self.connected.set()
                    if response.status_code != 200:
                        return
                    buffer = ""
                    async for chunk in response.aiter_text():
                        buffer += chunk.replace("\r\n", "\n").replace("\r", "\n")
                        while "\n\n" in buffer:
                            block, buffer = buffer.split("\n\n", 1)
                            self._handle(block)
        except httpx.HTTPError:
            pass
        finally:
            self.connected.set()
            self.ended.set()

    def _handle(self, block: str) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value
        if fields.get("event") == "heartbeat":
            self.heartbeats.append(Event(fields.get("id"), "heartbeat", "\n".join(data), fields))
        elif fields.get("event") == "blog.readers":
            self.presence.put_nowait(Event(fields.get("id"), "blog.readers", "\n".join(data), fields))
        elif data or "event" in fields:
            self.queue.put_nowait(Event(fields.get("id"), fields.get("event", "message"), "\n".join(data), fields))

    async def next(self, timeout: float = 10.0) -> Event:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def take(self, count: int, timeout: float = 10.0) -> list[Event]:
        return [await self.next(timeout) for _ in range(count)]

    async def until(self, predicate, timeout: float = 10.0) -> list[Event]:  # type: ignore[no-untyped-def]
        """Events up to and including the first one matching ``predicate``."""
        seen: list[Event] = []
        while True:
            event = await self.next(timeout)
            seen.append(event)
            if predicate(event):
                return seen
