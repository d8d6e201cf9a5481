"""The fan-out's pieces in-process: frames (sse-starlette's encoder)."""

from __future__ import annotations

from liveblog.fanout import encode_event
from tests.sse_client import SSEClient


def parse(frame: bytes) -> tuple[str | None, str, str]:
    """What a client makes of one frame: (id, event, data)."""
    client = SSEClient("unused")
    client._handle(frame.decode().removesuffix("\n\n"))
    event = client.queue.get_nowait()
    return event.id, event.event, event.data


def test_multi_line_data_is_framed_as_one_data_line_per_line() -> None:
    frame = encode_event("1718000000000-0", "note", "prima\nseconda\r\nterza\rquarta")
    assert frame == (b"id: 1718000000000-0\nevent: note\n"
                     b"data: prima\ndata: seconda\ndata: terza\ndata: quarta\n\n")
    # No line of the data can end the frame early or pose as a field of its own.
    assert parse(frame) == ("1718000000000-0", "note", "prima\nseconda\nterza\nquarta")
    assert parse(encode_event("2-0", "x", "a\n\nid: 9-9\nevent: evil")) == ("2-0", "x", "a\n\nid: 9-9\nevent: evil")


def test_single_line_json_frames_are_unchanged_on_the_wire() -> None:
    data = '{"id":"1","body_html":"<p>a</p>"}'
    assert encode_event("5-1", "entry.created", data) == f"id: 5-1\nevent: entry.created\ndata: {data}\n\n".encode()
