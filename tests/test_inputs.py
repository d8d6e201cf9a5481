"""Bad input never reaches a 5xx nor corrupts output (issue 9): the catch-all, hostile headers,
slugs, entry ids and idempotency keys on every route, time zones, feeds. All through the real server."""

from __future__ import annotations

import httpx

from tests.conftest import RedisServer, Service, wait_until
from tests.support import post
from tests.test_api import assert_problem

UNEXPECTED = "Exception in ASGI application"  # what uvicorn logs (with the traceback) for the catch-all


def _log_count(server: Service, text: str) -> int:
    return server.log_path.read_text(errors="replace").count(text)


async def test_if_modified_since_beyond_year_9999_is_ignored(client: httpx.AsyncClient, blog: str,
                                                            editor: dict[str, str]) -> None:
    await post(client, blog, editor, body="uno")
    for feed in ("feed.atom", "feed.json"):
        response = await client.get(f"/blogs/{blog}/{feed}",
                                    headers={"If-Modified-Since": "Mon, 01 Jan 99999999999 00:00:00 GMT"})
        assert response.status_code == 200, response.text
        assert b"uno" in response.content


async def test_an_unexpected_store_error_is_a_logged_problem_json_500(client: httpx.AsyncClient, server: Service,
                                                                     redis_server: RedisServer, blog: str) -> None:
    # A foreign value where the blog's entries hash belongs: Redis answers WRONGTYPE, which no handler
    # expects. The catch-all answers problem+json 500 and the server logs the traceback once.
    redis_server.client().set(f"lb:{{{blog}}}:entries", "not a hash")
    before = _log_count(server, UNEXPECTED)
    problem = assert_problem(await client.get(f"/api/blogs/{blog}/entries/1"), 500)
    assert "WRONGTYPE" not in problem["detail"]  # nothing about the internals
    wait_until(lambda: _log_count(server, UNEXPECTED) > before, what="the traceback in the server log")
    assert _log_count(server, UNEXPECTED) == before + 1
    assert "WRONGTYPE" in server.log_path.read_text(errors="replace")
