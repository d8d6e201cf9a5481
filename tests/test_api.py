"""The editor API over real HTTP: auth, validation, idempotency, pagination, sanitizing."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import JSON, admin
from tests.support import HOSTILE, assert_clean, post


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


async def test_blog_lifecycle(client: httpx.AsyncClient, editor: dict[str, str]) -> None:
    slug = f"b-{uuid.uuid4().hex[:8]}"
    created = await client.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "La guerra di Putin"})
    assert created.status_code == 201
    blog = created.json()
    assert blog["status"] == "live" and blog["language"] == "it" and blog["timezone"] == "Europe/Rome"
    assert blog["urls"]["page"].endswith(f"/blogs/{slug}")
    assert slug in [b["slug"] for b in (await client.get("/api/blogs")).json()["blogs"]]
    ended = await client.patch(f"/api/blogs/{slug}", headers=editor, json={"status": "ended"})
    assert ended.status_code == 200
    assert ended.json()["status"] == "ended" and ended.json()["coverage_end"]
    assert_problem(await client.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "x"}), 409)


async def test_entry_create_edit_delete(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    created = await client.post(f"/api/blogs/{blog}/entries", headers=editor,
                                json={"body": "Kirby: *partnership*", "title": "Russia e Iran", "key_event": True})
    assert created.status_code == 201
    entry = created.json()
    for field in ("id", "blog", "title", "body_html", "author", "published_at", "time_label", "key_event",
                  "pinned", "version", "updated_at"):
        assert field in entry
    assert entry["body_html"] == "<p>Kirby: <em>partnership</em></p>"
    assert entry["author"] == "Redazione test"  # the token's name when none is given
    assert entry["published_at"].endswith("Z") and entry["version"] == 1
    assert len(entry["time_label"]) == 5 and entry["time_label"][2] == "."
    edited = await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor,
                                json={"body": "corretto", "pinned": True})
    assert edited.status_code == 200
    assert edited.json()["version"] == 2 and edited.json()["pinned"] is True
    assert edited.json()["published_at"] == entry["published_at"]
    assert (await client.get(f"/api/blogs/{blog}/entries/{entry['id']}")).json()["body_html"] == "<p>corretto</p>"
    deleted = await client.delete(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor)
    assert deleted.status_code == 204
    assert_problem(await client.get(f"/api/blogs/{blog}/entries/{entry['id']}"), 404)
    assert_problem(await client.delete(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor), 404)


async def test_pagination_newest_first(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    ids = [(await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": f"n{i}"})).json()["id"]
           for i in range(5)]
    first = (await client.get(f"/api/blogs/{blog}/entries", params={"limit": 2})).json()
    assert [e["id"] for e in first["entries"]] == ids[::-1][:2]
    second = (await client.get(first["next"])).json()
    assert [e["id"] for e in second["entries"]] == ids[::-1][2:4]
    third = (await client.get(second["next"])).json()
    assert [e["id"] for e in third["entries"]] == ids[:1] and third["next"] is None
    assert_problem(await client.get(f"/api/blogs/{blog}/entries", params={"limit": "many"}), 400)
    assert_problem(await client.get(f"/api/blogs/{blog}/entries", params={"limit": 1000}), 400)
    assert_problem(await client.get(f"/api/blogs/{blog}/entries", params={"before": "nope"}), 422)


async def test_idempotent_retry_creates_one_entry(client: httpx.AsyncClient, blog: str,
                                                  editor: dict[str, str]) -> None:
    headers = {**editor, "Idempotency-Key": "retry-" + uuid.uuid4().hex}
    first = await client.post(f"/api/blogs/{blog}/entries", headers=headers, json={"body": "una volta"})
    again = await client.post(f"/api/blogs/{blog}/entries", headers=headers, json={"body": "una volta"})
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    listed = (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"]
    assert [e["id"] for e in listed] == [first.json()["id"]]
    # The same key with another body is a client error, not a silent replay.
    assert_problem(await client.post(f"/api/blogs/{blog}/entries", headers=headers, json={"body": "altro"}), 422)


async def test_auth_401_and_403(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    body = {"body": "x"}
    missing = await client.post(f"/api/blogs/{blog}/entries", json=body)
    assert_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await client.post(f"/api/blogs/{blog}/entries", json=body,
                                     headers={"Authorization": "Bearer not-a-token", **JSON}), 401)
    assert_problem(await client.post(f"/api/blogs/{blog}/entries", json=body,
                                     headers={"Authorization": "Basic abc", **JSON}), 401)
    # An editor may write entries but not create blogs.
    assert_problem(await client.post("/api/blogs", headers=editor, json={"slug": "nope", "title": "x"}), 403)
    assert_problem(await client.patch(f"/api/blogs/{blog}", json={"status": "ended"}), 401)


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", JSON, 400),
        (b"", JSON, 400),
        (b"[1, 2]", JSON, 422),
        (b'{"body": "x"}', {"Content-Type": "text/plain"}, 415),
        (b'{"body": 42}', JSON, 422),
        (b'{"body": "   "}', JSON, 422),
        (b'{"body": "x", "colour": "red"}', JSON, 422),
        (b'{"body": "x", "pinned": "yes"}', JSON, 422),
        (b'{"body": "' + b"a" * 50_001 + b'"}', JSON, 422),
        (b'{"body": "' + b"a" * 300_000 + b'"}', JSON, 413),
    ],
    ids=["malformed", "empty", "array", "wrong-type", "body-number", "body-blank", "unknown-field",
         "flag-string", "body-too-long", "oversized"],
)
async def test_bad_input_gets_precise_4xx(client: httpx.AsyncClient, blog: str, editor: dict[str, str],
                                          content: bytes, headers: dict[str, str], status: int) -> None:
    response = await client.post(f"/api/blogs/{blog}/entries", content=content,
                                 headers={**headers, "Authorization": editor["Authorization"]})
    assert_problem(response, status)
    assert (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"] == []


@pytest.mark.parametrize("flag", ["pinned", "key_event"])
async def test_a_null_flag_in_a_patch_is_refused_and_changes_nothing(client: httpx.AsyncClient, blog: str,
                                                                     editor: dict[str, str], flag: str) -> None:
    entry = await post(client, blog, editor, "testo", pinned=True, key_event=True)
    response = await client.patch(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor, json={flag: None})
    assert_problem(response, 422)
    now = (await client.get(f"/api/blogs/{blog}/entries/{entry['id']}")).json()
    assert (now[flag], now["version"]) == (True, 1)


async def test_unknown_blog_and_bad_slugs(client: httpx.AsyncClient, editor: dict[str, str]) -> None:
    assert_problem(await client.get("/api/blogs/no-such-blog"), 404)
    assert_problem(await client.get("/api/blogs/no-such-blog/entries"), 404)
    assert_problem(await client.post("/api/blogs/no-such-blog/entries", headers=editor, json={"body": "x"}), 404)
    assert_problem(await client.get("/blogs/no-such-blog/events"), 404)
    for slug in ("Upper", "-dash", "a" * 65, "spa ce", "x/y"):
        assert_problem(await client.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "t"}), 422)
    assert_problem(await client.post("/api/blogs", headers=admin(), json={"slug": "tz-bad", "title": "t",
                                                                        "timezone": "Mars/Olympus"}), 422)


async def test_hostile_html_is_sanitized_in_the_api(client: httpx.AsyncClient, blog: str,
                                                    editor: dict[str, str]) -> None:
    created = await client.post(f"/api/blogs/{blog}/entries", headers=editor,
                                json={"body": HOSTILE, "title": "<b>T</b><script>x</script>", "author": "<i>A</i>"})
    entry = created.json()
    assert_clean(entry["body_html"])
    assert "testo" in entry["body_html"]
    assert entry["title"] == "T" and entry["author"] == "A"
    listed = (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"][0]
    assert_clean(listed["body_html"])


async def test_health_and_metrics(client: httpx.AsyncClient, blog: str, editor: dict[str, str]) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    assert (await client.get("/readyz")).json()["status"] == "ready"
    await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": "m"})
    metrics = (await client.get("/metrics")).text
    for name in ("liveblog_sse_clients", "liveblog_changes_published_total", "liveblog_sse_events_sent_total"):
        assert name in metrics
    assert 'liveblog_changes_published_total{type="entry.created"}' in metrics
