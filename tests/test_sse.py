"""Server-sent events: delivery, resume without gap or duplicate, reset, bad resume points."""

from __future__ import annotations

import httpx

from tests.conftest import Service
from tests.sse_client import SSEClient


async def test_post_reaches_a_connected_reader(client: httpx.AsyncClient, server: Service, blog: str,
                                               editor: dict[str, str]) -> None:
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        assert reader.status == 200
        response = await client.post(f"/api/blogs/{blog}/entries", headers=editor,
                                     json={"body": "aggiornamento ore 14.25", "title": "Kyiv"})
        assert response.status_code == 201
        event = await reader.next()
        assert event.event == "entry.created"
        assert event.json["id"] == response.json()["id"]
        assert event.json["body_html"] == "<p>aggiornamento ore 14.25</p>"
        assert event.id and event.id.count("-") == 1
    assert reader.retry is not None and reader.retry > 0
