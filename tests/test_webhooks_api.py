"""The subscriptions API: auth, validation, secrets shown once, state changes, SSRF refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import JSON, RedisServer
from tests.receivers import Api, private_db, serving

DB = 11


@pytest.fixture(scope="module")
def strict(service_factory, redis_server: RedisServer) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    """A serve with no allow-list: the production default, every internal address refused."""
    with serving(service_factory, private_db(redis_server, DB), env={"LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS": ""}) as api:
        yield api


def assert_problem(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["title"]
    for fragment in fragments:
        assert fragment in problem["detail"], problem["detail"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://localhost:8080/hook",
    "http://2130706433/hook",  # 127.0.0.1 written as one number
    "http://192.168.1.10/hook",
    "http://[fd00:ec2::254]/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
])
def test_internal_targets_are_refused(strict: Api, url: str) -> None:
    response = strict.http.post("/api/webhooks", json={"url": url, "blogs": ["*"]})
    assert_problem(response, 422, "not an allowed webhook target")


@pytest.mark.parametrize(("body", "fragment"), [
    ({"url": "ftp://example.org/x", "blogs": ["*"]}, "http"),
    ({"url": "https://user:pw@example.org/x", "blogs": ["*"]}, "credentials"),
    ({"url": "https://no-such-host.invalid/x", "blogs": ["*"]}, "does not resolve"),
    ({"url": "https://example.org/x"}, "required"),
    ({"url": "https://example.org/x", "blogs": []}, "blogs"),
    ({"url": "https://example.org/x", "blogs": ["*", "a"]}, "cannot be combined"),
    ({"url": "https://example.org/x", "blogs": ["Not A Slug"]}, "slug"),
    ({"url": "https://example.org/x", "blogs": ["*"], "events": ["entry.exploded"]}, "events"),
    ({"url": "https://example.org/x", "blogs": ["*"], "secret": "mine"}, "unknown"),
])
def test_invalid_subscriptions(strict: Api, body: dict, fragment: str) -> None:
    assert_problem(strict.http.post("/api/webhooks", json=body), 422, fragment)


def test_admin_only(strict: Api, redis_server: RedisServer) -> None:
    base = str(strict.http.base_url)
    editor_token = subprocess.run(
        [sys.executable, "-m", "liveblog", "token", "create", "--name", "Redazione", "--role", "editor"],
        env={**os.environ, "LIVEBLOG_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + f"/{DB}"},
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    assert_problem(httpx.get(f"{base}/api/webhooks"), 401)
    assert_problem(httpx.post(f"{base}/api/webhooks", headers={"Authorization": "Bearer nope", **JSON},
                              json={"url": "http://127.0.0.1/", "blogs": ["*"]}), 401)
    assert_problem(httpx.get(f"{base}/api/webhooks", headers={"Authorization": f"Bearer {editor_token}"}), 403)


def test_lifecycle(service_factory, redis_server: RedisServer) -> None:  # type: ignore[no-untyped-def]
    """Create (secret once), list, get, patch (disable, re-enable, change), deliveries, replay, delete."""
    # Loopback is allowed here (the test default), so the target below is accepted.
    with serving(service_factory, private_db(redis_server, DB - 1)) as api:
        slug = api.blog()
        created = api.subscribe("http://127.0.0.1:9/hook", [slug], events=["entry.created"], description="Partner")
        sub_id = created["id"]
        assert created["secret"].startswith("whsec_") and created["state"] == "active"
        assert created["blogs"] == [slug] and created["events"] == ["entry.created"]
        assert created["consecutive_failures"] == 0 and created["last_success_at"] is None
        listed = api.check(api.http.get("/api/webhooks"), 200)["webhooks"]
        assert [s["id"] for s in listed] == [sub_id] and "secret" not in listed[0]
        assert "secret" not in api.subscription(sub_id)

        disabled = api.check(api.http.patch(f"/api/webhooks/{sub_id}", json={"state": "disabled"}), 200)
        assert disabled["state"] == "disabled" and disabled["disabled_reason"] == "disabled by an admin"
        enabled = api.check(api.http.patch(f"/api/webhooks/{sub_id}", json={"state": "active"}), 200)
        assert enabled["state"] == "active" and enabled["disabled_at"] is None
        changed = api.check(api.http.patch(f"/api/webhooks/{sub_id}", json={"events": ["entry.deleted"]}), 200)
        assert changed["events"] == ["entry.deleted"]
        assert_problem(api.http.patch(f"/api/webhooks/{sub_id}", json={"state": "paused"}), 422, "state")
        assert_problem(api.http.patch(f"/api/webhooks/{sub_id}", json={"url": "http://10.1.2.3/"}), 422, "allowed")

        assert api.deliveries(sub_id) == []
        assert_problem(api.http.post(f"/api/webhooks/{sub_id}/replay", json={"since_event_id": "yesterday"}),
                       422, "since_event_id")
        assert_problem(api.http.post(f"/api/webhooks/{sub_id}/replay", json={"since": "0"}), 422, "since_event_id")
        replayed = api.check(api.http.post(f"/api/webhooks/{sub_id}/replay", json={"since_event_id": "0"}), 202)
        assert replayed["queued"] == 0  # no entry.deleted in that blog

        assert api.http.delete(f"/api/webhooks/{sub_id}").status_code == 204
        for path in (f"/api/webhooks/{sub_id}", f"/api/webhooks/{sub_id}/deliveries"):
            assert_problem(api.http.get(path), 404)
        assert_problem(api.http.delete(f"/api/webhooks/{sub_id}"), 404)
        assert_problem(api.http.get("/api/webhooks/../../lb:tokens"), 404)
