"""Tokens an operator can manage: the CLI, the admin API, blog scoping, revocation seen at once by
every process, last use recorded without a write per request, tokens of the previous version, and
the demo's token kept across restarts."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

import httpx
import redis

from tests.conftest import JSON, RedisServer, admin
from tests.test_cli import run_cli


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **JSON}


def new_blog(base: str) -> str:
    slug = f"tok-{uuid.uuid4().hex[:10]}"
    response = httpx.post(f"{base}/api/blogs", headers=admin(), json={"slug": slug, "title": slug})
    assert response.status_code == 201, response.text
    return slug


def listed(base: str) -> dict[str, dict]:
    response = httpx.get(f"{base}/api/tokens", headers=admin())
    assert response.status_code == 200, response.text
    return {t["id"]: t for t in response.json()["tokens"]}


def test_api_creates_lists_and_revokes_tokens(server) -> None:  # type: ignore[no-untyped-def]
    made = httpx.post(f"{server.url}/api/tokens", headers=admin(), json={"name": "Desk esteri"})
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["token"].startswith("lb_") and created["id"].startswith("tok_")
    assert created["role"] == "editor" and created["blogs"] == [] and created["last_used_at"] is None
    assert made.headers["location"] == f"/api/tokens/{created['id']}"

    shown = listed(server.url)[created["id"]]
    assert set(shown) == {"id", "name", "role", "blogs", "created_at", "last_used_at"}
    assert shown["name"] == "Desk esteri" and shown["created_at"] == created["created_at"]
    everything = httpx.get(f"{server.url}/api/tokens", headers=admin()).text
    assert created["token"] not in everything
    assert hashlib.sha256(created["token"].encode()).hexdigest() not in everything

    slug = new_blog(server.url)
    assert httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(created["token"]),
                      json={"body": "prima della revoca"}).status_code == 201
    assert httpx.delete(f"{server.url}/api/tokens/{created['id']}", headers=admin()).status_code == 204
    refused = httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(created["token"]),
                         json={"body": "dopo la revoca"})
    assert refused.status_code == 401 and refused.headers["content-type"].startswith("application/problem+json")
    assert created["id"] not in listed(server.url)
    again = httpx.delete(f"{server.url}/api/tokens/{created['id']}", headers=admin())
    assert again.status_code == 404 and again.headers["content-type"].startswith("application/problem+json")


def test_token_api_is_for_admins_only(server, editor_token: str) -> None:  # type: ignore[no-untyped-def]
    for method, path, body in (("GET", "/api/tokens", None), ("POST", "/api/tokens", {"name": "x"}),
                               ("DELETE", "/api/tokens/tok_0000000000000000", None)):
        assert httpx.request(method, f"{server.url}{path}", json=body).status_code == 401
        refused = httpx.request(method, f"{server.url}{path}", headers=bearer(editor_token), json=body)
        assert refused.status_code == 403, refused.text


def test_token_api_rejects_bad_input(server) -> None:  # type: ignore[no-untyped-def]
    for body in ({}, {"name": " "}, {"name": "x", "role": "root"}, {"name": "x", "blogs": "uno"},
                 {"name": "x", "blogs": ["Non Slug"]}, {"name": "x", "role": "admin", "blogs": ["uno"]},
                 {"name": "x", "colour": "red"}):
        response = httpx.post(f"{server.url}/api/tokens", headers=admin(), json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_token_limited_to_blogs_gets_403_elsewhere(server) -> None:  # type: ignore[no-untyped-def]
    mine, other = new_blog(server.url), new_blog(server.url)
    made = httpx.post(f"{server.url}/api/tokens", headers=admin(), json={"name": "solo una", "blogs": [mine]}).json()
    assert made["blogs"] == [mine]
    headers = bearer(made["token"])
    entry = httpx.post(f"{server.url}/api/blogs/{mine}/entries", headers=headers, json={"body": "qui sì"})
    assert entry.status_code == 201
    assert httpx.patch(f"{server.url}/api/blogs/{mine}", headers=headers, json={"title": "ok"}).status_code == 200
    elsewhere = httpx.post(f"{server.url}/api/blogs/{other}/entries", headers=headers, json={"body": "qui no"})
    assert elsewhere.status_code == 403 and other in elsewhere.json()["detail"]
    admin_entry = httpx.post(f"{server.url}/api/blogs/{other}/entries", headers=admin(), json={"body": "x"}).json()
    for method, path, body in (("PATCH", f"/api/blogs/{other}", {"title": "no"}),
                               ("PATCH", f"/api/blogs/{other}/entries/{admin_entry['id']}", {"body": "no"}),
                               ("DELETE", f"/api/blogs/{other}/entries/{admin_entry['id']}", None)):
        assert httpx.request(method, f"{server.url}{path}", headers=headers, json=body).status_code == 403
    # Reads of another blog are what anyone gets (no source); the editor page's sign-in check says 403.
    public = httpx.get(f"{server.url}/api/blogs/{other}/entries/{admin_entry['id']}", headers=headers).json()
    assert "body" not in public
    assert httpx.post(f"{server.url}/api/preview", headers=headers, json={"body": "", "blog": other}).status_code == 403
    assert httpx.post(f"{server.url}/api/preview", headers=headers, json={"body": "", "blog": mine}).status_code == 200


def test_revocation_is_seen_at_once_by_every_process(service_factory) -> None:  # type: ignore[no-untyped-def]
    first, second = service_factory("serve", "--no-dispatcher"), service_factory("serve", "--no-dispatcher")
    slug = new_blog(first.url)
    made = httpx.post(f"{first.url}/api/tokens", headers=admin(), json={"name": "due processi"}).json()
    for service in (first, second):
        assert httpx.post(f"{service.url}/api/blogs/{slug}/entries", headers=bearer(made["token"]),
                          json={"body": "prima"}).status_code == 201
    assert httpx.delete(f"{first.url}/api/tokens/{made['id']}", headers=admin()).status_code == 204
    for service in (second, first):
        assert httpx.post(f"{service.url}/api/blogs/{slug}/entries", headers=bearer(made["token"]),
                          json={"body": "dopo"}).status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute_per_process(server) -> None:  # type: ignore[no-untyped-def]
    slug = new_blog(server.url)
    made = httpx.post(f"{server.url}/api/tokens", headers=admin(), json={"name": "uso"}).json()
    assert listed(server.url)[made["id"]]["last_used_at"] is None
    httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(made["token"]), json={"body": "uno"})
    first_use = listed(server.url)[made["id"]]["last_used_at"]
    assert first_use and first_use >= made["created_at"]
    for body in ("due", "tre"):
        httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(made["token"]), json={"body": body})
    # Well within the interval (60 s by default): the same process wrote nothing more.
    assert listed(server.url)[made["id"]]["last_used_at"] == first_use


def test_cli_creates_lists_and_revokes(redis_server: RedisServer, server) -> None:  # type: ignore[no-untyped-def]
    env = {"LIVEBLOG_REDIS_URL": redis_server.url}
    slug = new_blog(server.url)
    made = run_cli("token", "create", "--name", "Cronaca", "--blog", slug, "--blog", slug, env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    token_id = next(word.strip("()") for word in made.stderr.split() if word.startswith("(tok_"))
    lines = run_cli("token", "list", env=env)
    assert lines.returncode == 0 and token not in lines.stdout
    (line,) = [row for row in lines.stdout.splitlines() if row.startswith(token_id)]
    fields = line.split("\t")
    assert fields[:4] == [token_id, "Cronaca", "editor", slug] and fields[4].endswith("Z")
    assert fields[5:] == ["-", "-"]  # never used, signs as no author
    assert httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(token),
                      json={"body": "dalla CLI"}).status_code == 201
    revoked = run_cli("token", "revoke", token_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(token),
                      json={"body": "revocato"}).status_code == 401
    assert token_id not in run_cli("token", "list", env=env).stdout
    missing = run_cli("token", "revoke", token_id, env=env)
    assert missing.returncode == 1 and "no token" in missing.stderr
    scoped_admin = run_cli("token", "create", "--name", "x", "--role", "admin", "--blog", slug, env=env)
    assert scoped_admin.returncode == 2 and "only editor tokens" in scoped_admin.stderr


def _token_id(stderr: str) -> str:
    return next(word.strip("(),") for word in stderr.split() if word.startswith("(tok_"))


def test_cli_ties_a_token_to_an_author_like_the_api(redis_server: RedisServer, server) -> None:  # type: ignore[no-untyped-def]
    """`token create --author ID`: the token's posts that name no author are signed with the profile;
    `token list` shows the author; an unknown id is a one-line error with exit code 2, and no token."""
    env = {"LIVEBLOG_REDIS_URL": redis_server.url}
    name = f"Cecilia {uuid.uuid4().hex[:6]}"
    author = httpx.post(f"{server.url}/api/authors", headers=admin(),
                        json={"name": name, "title": "inviata a Kiev"}).json()
    made = run_cli("token", "create", "--name", "Inviata", "--author", author["id"], env=env)
    assert made.returncode == 0, made.stderr
    token, token_id = made.stdout.strip(), _token_id(made.stderr)
    assert f"signing as author {author['id']}" in made.stderr

    slug = new_blog(server.url)
    signed = httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(token), json={"body": "Dal fronte"})
    assert signed.status_code == 201, signed.text
    assert signed.json()["author"] == name
    assert signed.json()["author_profile"] == {"id": author["id"], "name": name, "title": "inviata a Kiev",
                                               "url": None, "avatar": None}
    assert listed(server.url)[token_id]["author_id"] == author["id"]  # the same record the API makes
    (line,) = [row for row in run_cli("token", "list", env=env).stdout.splitlines() if row.startswith(token_id)]
    fields = line.split("\t")
    assert fields[1:3] == ["Inviata", "editor"] and fields[5].endswith("Z")  # used once by now
    assert fields[6] == f"{author['id']} ({name})"

    ghost = f"Fantasma {uuid.uuid4().hex[:6]}"
    for bad, reason in (("nessuno", "no author 'nessuno'"), ("non un id!", "must be the id of an author")):
        refused = run_cli("token", "create", "--name", ghost, "--author", bad, env=env)
        assert refused.returncode == 2, refused.stderr
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        (message,) = refused.stderr.strip().splitlines()
        assert message.startswith("liveblog: cannot tie the token to an author") and reason in message
    assert ghost not in {t["name"] for t in listed(server.url).values()}  # nothing was created

    shown = run_cli("token", "create", "--help", env={}).stdout
    assert "--author AUTHOR_ID" in shown and "GET /api/authors" in " ".join(shown.split())


def test_tokens_of_the_previous_version_keep_working(redis_server: RedisServer, server) -> None:  # type: ignore[no-untyped-def]
    """A record stored as {name, role, created_at} (no id) works and gets an id that revokes it."""
    token = f"lb_{uuid.uuid4().hex}"
    hashed = hashlib.sha256(token.encode()).hexdigest()
    old = {"name": "vecchio", "role": "editor", "created_at": "2025-01-02T03:04:05.000Z"}
    redis.Redis(port=redis_server.port).hset("lb:tokens", hashed, json.dumps(old))
    slug = new_blog(server.url)
    assert httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(token),
                      json={"body": "ancora valido"}).status_code == 201
    (mine,) = [t for t in listed(server.url).values() if t["name"] == "vecchio"]
    assert mine["id"].startswith("tok_") and mine["blogs"] == [] and mine["created_at"] == old["created_at"]
    assert listed(server.url)[mine["id"]]["id"] == mine["id"]  # the id is stable once given
    assert httpx.delete(f"{server.url}/api/tokens/{mine['id']}", headers=admin()).status_code == 204
    assert httpx.post(f"{server.url}/api/blogs/{slug}/entries", headers=bearer(token),
                      json={"body": "revocato"}).status_code == 401


def test_demo_reuses_its_editor_token_across_restarts(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    env = {"LIVEBLOG_REDIS_URL": "", "LIVEBLOG_DATA_DIR": str(data)}
    service = service_factory("demo", "--no-dispatcher", env=env)

    def printed() -> list[str]:
        return [line.split()[-1] for line in service.log().splitlines() if "Editor token:" in line]

    service.restart()
    first, second = printed()
    assert first == second and first.startswith("lb_")
    kept = data / "demo-editor-token"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600 and kept.read_text().strip() == first
    demo_tokens = [t for t in listed(service.url).values() if t["name"] == "demo editor"]
    assert len(demo_tokens) == 1
    # Revoked meanwhile: the next start makes a new one instead of printing a dead token.
    assert httpx.delete(f"{service.url}/api/tokens/{demo_tokens[0]['id']}", headers=admin()).status_code == 204
    service.restart()
    third = printed()[-1]
    assert third != first
    assert httpx.post(f"{service.url}/api/preview", headers=bearer(third), json={"body": ""}).status_code == 200
