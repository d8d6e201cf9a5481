"""The HTTP protocol ``liveblog serve`` runs: uvicorn's httptools protocol plus the limits it lacks.

uvicorn caps the request head only for its pure-Python h11 parser, and has no read timeouts besides
the keep-alive one (which any byte resets). This subclass keeps httptools' parser and adds, per
connection:

- a cap on the request head (``LIVEBLOG_MAX_HEADER_BYTES``): bytes are counted *before* they reach
  the parser, which never sees more than the cap of one head (its cost grows with the square of a
  head fed in pieces); past it the client gets ``431`` and the connection is closed;
- a head timeout (``LIVEBLOG_HEADER_TIMEOUT``): from the connection's start, and again from the end of
  each response, the whole next request head must arrive within it (idle and slowloris connections);
- a stalled-body timeout (``LIVEBLOG_BODY_TIMEOUT``): a request body that sends nothing for that long
  is disconnected (not counting time in which the server itself has paused reading);
- a connection cap (``LIVEBLOG_MAX_CONNECTIONS``, see ``capacity``): a request arriving while more
  connections are open answers ``503`` problem+json instead of reaching the application; a connection
  arriving more than ``OVERFLOW`` past the cap is closed at once, so that however many connections
  are opened, the descriptors kept for Redis and files stay free.

Every check is a counter or one timer per connection state change: nothing per byte or per event.

It also carries event streams past their response task. An event stream's ASGI app finds the
connection in the scope's extensions (:func:`stream_connection`), tells it its subscriber (which then
hears of the disconnect, and of the write buffer filling and draining, from ``connection_lost``,
``pause_writing`` and ``resume_writing`` directly) and, once caught up, hands the response over
(:meth:`~LimitedHttpToolsProtocol.take_over`): uvicorn counts it as complete, the ASGI task returns,
and the fan-out hub writes the rest of the chunked body straight to the transport. Such a connection
serves no further request: what the client sends meanwhile is discarded, and the stream's end closes it.
"""

from __future__ import annotations

import asyncio
import functools
import signal
from asyncio import TimerHandle
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from liveblog import capacity
from liveblog.config import Settings

if TYPE_CHECKING:
    from liveblog.fanout import Subscriber

RETRY_AFTER_SECONDS = 5
STREAM_EXTENSION = "liveblog.stream"  # scope["extensions"] key: the connection, for event streams
# Connections past the cap that are still read (to answer 503); beyond them, new ones are closed.
OVERFLOW = 64


@dataclass(frozen=True)
class Limits:
    max_head: int
    head_timeout: float
    body_timeout: float
    max_connections: int


@functools.cache
def limits() -> Limits:
    """Read once per process, at its first connection (after start-up raised the open-file limit)."""
    settings = Settings.from_env()
    return Limits(settings.max_header_bytes, settings.header_timeout_seconds, settings.body_timeout_seconds,
                  capacity.max_connections(settings))


def problem_body(status: int, detail: str) -> bytes:
    return orjson.dumps({"type": "about:blank", "status": status, "title": HTTPStatus(status).phrase,
                         "detail": detail})


async def over_capacity(_scope: Any, _receive: Any, send: Any) -> None:
    """The answer to a request that arrives past the connection cap."""
    body = problem_body(503, "the server has too many open connections; try again shortly")
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def server_exiting() -> bool:
    """True once uvicorn has been asked to exit (its SIGTERM handler is a method of its Server).

    uvicorn notices the request only between its own steps: code that waits for long inside the
    application (the hub's streams, which never end by themselves; the start-up's wait for Redis)
    must look for itself."""
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))


def stream_connection(scope: Any) -> LimitedHttpToolsProtocol:
    """The connection an event stream's request came on (it outlives the response task)."""
    connection = scope.get("extensions", {}).get(STREAM_EXTENSION)
    if connection is None:
        raise RuntimeError("event streams need the HTTP protocol of `liveblog serve` (liveblog.httpserver)")
    return connection


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head cap, read timeouts and a connection cap.

    ``_head_seen`` counts the bytes of the request head being received, or is None between the end of a
    head and the end of its message (the body). Bytes that arrive after a message and before the next
    head are counted as that head's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits()
        self._head_seen: int | None = 0
        self._head_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None
        self._body_active = 0.0
        self._stream: Subscriber | None = None  # the event stream's subscriber, while it lasts
        self._taken_over = False  # the stream's response is the hub's: this connection serves nothing more

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections + OVERFLOW:
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.lost()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stream is not None:
            self._stream.paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stream is not None:
            self._stream.resumed()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: a handed-over stream ends with its last chunk (the hub ends
        the others, still in their response task, at its next housekeeping pass)."""
        if self._taken_over and self._stream is not None:
            self._stream.hub.cut(self._stream, "shutdown")
        else:
            super().shutdown()

    # Event streams (see the module's docstring; the hub's side is ``fanout.Sink``).
    def listen(self, stream: Subscriber) -> None:
        """Report this connection's loss and write-buffer changes to ``stream`` from now on."""
        self._stream = stream

    def take_over(self) -> None:
        """The response goes on past its ASGI task, written by the hub: uvicorn counts it as complete
        (so the task may return), and no other request is started on this connection."""
        self.cycle.response_complete = True
        self._taken_over = True
        self._cancel_timers()
        self.pipeline.clear()
        self.flow.resume_reading()  # keep reading: a closed connection is noticed at once
        if self.flow.write_paused and self._stream is not None:
            self._stream.paused()  # (the catch-up's last write filled the buffer: no pause_writing will come)
        # The request (scope, headers, cycle) is done with: a long-lived stream should not hold it.
        self.cycle = self.scope = self.headers = None  # type: ignore[assignment]

    def end_stream(self, clean: bool) -> None:
        """End a handed-over stream: with the chunked body's last chunk, else (a client that stopped
        reading would never take it) by dropping the connection."""
        self._stream = None
        if clean:
            self.transport.write(b"0\r\n\r\n")
            self.transport.close()
        else:
            self.transport.abort()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {STREAM_EXTENSION: self}  # type: ignore[dict-item]

    def data_received(self, data: bytes) -> None:
        if self._taken_over:
            return  # a client sends nothing on an event stream; this connection serves no more requests
        seen = self._head_seen
        if seen is None:  # a request body
            self._body_active = self.loop.time()
            super().data_received(data)
        else:
            room = self.limits.max_head - seen
            if len(data) <= room:
                self._head_seen = seen + len(data)
                super().data_received(data)
            else:
                # Feed what the head may still take; if that does not end it, the head is too large.
                self._head_seen = self.limits.max_head
                if room > 0:
                    super().data_received(data[:room])
                if self._head_seen == self.limits.max_head and not self.transport.is_closing():
                    self._refuse(431, f"the request head is larger than {self.limits.max_head} bytes")
                    return
                if not self.transport.is_closing():
                    self.data_received(data[room:])
                return
        if self._head_seen is None and self._body_timer is None and not self.transport.is_closing():
            self._body_active = self.loop.time()
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timeout)

    # Parser callbacks.
    def on_headers_complete(self) -> None:
        self._head_seen = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_seen = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # no request already queued: the client's next head starts now
        super().on_response_complete()
        if waiting and not self.transport.is_closing():
            self._arm_head_timer()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if len(self.connections) > self.limits.max_connections:
            app = over_capacity
        super()._start_asgi_task(cycle, app)

    # Limits.
    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self._head_seen is not None or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the application has not read what came: not the client's stall
            self._body_active = now
        idle = now - self._body_active
        if idle >= self.limits.body_timeout:
            self.transport.close()
        else:
            self._body_timer = self.loop.call_later(self.limits.body_timeout - idle, self._body_timeout)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(self, status: int, detail: str) -> None:
        """Answer before the request reached the application, and close."""
        body = problem_body(status, detail)
        self.transport.write(b"".join([
            STATUS_LINE[status], *(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers),
            b"content-type: application/problem+json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body]))
        self.transport.close()
