"""Author profiles (CONTRACT "Editorial workflow and discovery"): the API, and an update signed with
``author_id`` in the API, the event stream, the page, its JSON-LD and both feeds. Also the publisher
of the JSON-LD (LIVEBLOG_PUBLISHER_NAME / LIVEBLOG_PUBLISHER_LOGO)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import httpx
import pytest

from tests.conftest import admin
from tests.sse_client import SSEClient
from tests.support import post
from tests.test_pages import block

ATOM = "{http://www.w3.org/2005/Atom}"
PROFILE = {"name": "Cecilia Sala", "title": "inviata a Kiev", "url": "https://example.org/autori/sala",
           "avatar": "https://example.org/foto/sala.jpg"}


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.found.append(dict(attrs))


async def make_author(client: httpx.AsyncClient, **fields: str) -> dict[str, str]:
    response = await client.post("/api/authors", headers=admin(), json={**PROFILE, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_admins_create_authors_and_editors_list_them(client: httpx.AsyncClient, editor: dict[str, str]) -> None:
    created = await make_author(client, name=f"Autrice {uuid.uuid4().hex[:6]}")
    assert {k: created[k] for k in ("title", "url", "avatar")} == {k: PROFILE[k] for k in ("title", "url", "avatar")}
    assert (await client.post("/api/authors", headers=editor, json=PROFILE)).status_code == 403
    assert (await client.get("/api/authors")).status_code == 401
    listed = (await client.get("/api/authors", headers=editor)).json()["authors"]
    assert created in listed


@pytest.mark.parametrize("fields", [
    {"title": "senza nome"},
    {"name": "   "},
    {"name": "X", "url": "javascript:alert(1)"},
    {"name": "X", "avatar": "ftp://example.org/a.jpg"},
    {"name": "X", "avatar": "/media/../../etc/passwd"},
    {"name": "X", "colour": "red"},
    {"name": 42},
])
async def test_bad_author_fields_are_refused(client: httpx.AsyncClient, fields: dict[str, object]) -> None:
    response = await client.post("/api/authors", headers=admin(), json=fields)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_signed_update_carries_the_profile_everywhere(client: httpx.AsyncClient, server, blog: str,  # type: ignore[no-untyped-def]
                                                              editor: dict[str, str]) -> None:
    author = await make_author(client)
    async with SSEClient(f"{server.url}/blogs/{blog}/events") as reader:
        entry = await post(client, blog, editor, "Sirene a Kiev", author_id=author["id"])
        streamed = (await reader.next()).json
    profile = {k: author[k] for k in ("id", "name", "title", "url", "avatar")}
    assert entry["author"] == "Cecilia Sala" and entry["author_profile"] == profile
    assert streamed["author_profile"] == profile
    api = (await client.get(f"/api/blogs/{blog}/entries/{entry['id']}")).json()
    assert api["author_profile"] == profile

    html = (await client.get(f"/blogs/{blog}")).text
    images = Images()
    images.feed(html)
    assert any(img.get("src") == PROFILE["avatar"] and "lb-avatar" in (img.get("class") or "")
               for img in images.found)
    assert "inviata a Kiev" in html
    ld = block(html, "application/ld+json")
    person = next(u["author"] for u in ld["liveBlogUpdate"] if u["url"] == entry["url"])
    assert person == {"@type": "Person", "name": "Cecilia Sala", "url": PROFILE["url"],
                      "jobTitle": "inviata a Kiev", "image": PROFILE["avatar"]}

    atom = ET.fromstring((await client.get(f"/blogs/{blog}/feed.atom")).content)
    node = atom.find(f"{ATOM}entry/{ATOM}author")
    assert node is not None
    assert (node.findtext(f"{ATOM}name"), node.findtext(f"{ATOM}uri")) == ("Cecilia Sala", PROFILE["url"])
    item = json.loads((await client.get(f"/blogs/{blog}/feed.json")).content)["items"][0]
    assert item["authors"] == [{"name": "Cecilia Sala", "url": PROFILE["url"], "avatar": PROFILE["avatar"]}]


async def test_an_uploaded_avatar_path_is_served_as_an_absolute_link(client: httpx.AsyncClient, server,  # type: ignore[no-untyped-def]
                                                                     blog: str, editor: dict[str, str]) -> None:
    author = await make_author(client, avatar="/media/ab/abcdef-480.jpg")
    assert author["avatar"] == f"{server.url}/media/ab/abcdef-480.jpg"
    entry = await post(client, blog, editor, "Con foto", author_id=author["id"])
    assert entry["author_profile"]["avatar"] == f"{server.url}/media/ab/abcdef-480.jpg"


@pytest.mark.parametrize(("fields", "status"), [
    ({"author_id": "nessuno"}, 422),
    ({"author_id": 7}, 422),
    ({"author_id": "x", "author": "Anna"}, 422),
])
async def test_a_post_with_a_bad_author_id_is_refused_and_writes_nothing(
        client: httpx.AsyncClient, blog: str, editor: dict[str, str], fields: dict[str, object], status: int) -> None:
    response = await client.post(f"/api/blogs/{blog}/entries", headers=editor, json={"body": "testo", **fields})
    assert response.status_code == status, response.text
    assert (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"] == []


async def test_the_publisher_setting_becomes_the_json_ld_publisher(service_factory) -> None:  # type: ignore[no-untyped-def]
    logo = "https://example.org/logo.png"
    own = service_factory("serve", "--no-dispatcher", env={"LIVEBLOG_PUBLISHER_NAME": "Ore 12 Quotidiano",
                                                           "LIVEBLOG_PUBLISHER_LOGO": logo})
    slug = f"pub-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=own.url, timeout=10) as http:
        assert (await http.post("/api/blogs", headers=admin(), json={"slug": slug, "title": "T"})).status_code == 201
        ld = block((await http.get(f"/blogs/{slug}")).text, "application/ld+json")
    assert ld["publisher"] == {"@type": "Organization", "name": "Ore 12 Quotidiano",
                               "logo": {"@type": "ImageObject", "url": logo}}


def test_a_bad_publisher_logo_stops_the_process_naming_the_variable() -> None:
    result = subprocess.run([sys.executable, "-m", "liveblog", "serve", "--port", "1"],
                            env={"PATH": "/usr/bin:/bin", "LIVEBLOG_PUBLISHER_LOGO": "javascript:alert(1)"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "LIVEBLOG_PUBLISHER_LOGO" in result.stderr


async def test_a_token_tied_to_an_author_signs_its_posts_as_that_author(client: httpx.AsyncClient, blog: str) -> None:
    author = await make_author(client)
    made = await client.post("/api/tokens", headers=admin(),
                             json={"name": "Inviata", "role": "editor", "author_id": author["id"]})
    assert made.status_code == 201, made.text
    tied = {"Authorization": f"Bearer {made.json()['token']}", "Content-Type": "application/json"}
    signed = await post(client, blog, tied, "Dal fronte")
    assert signed["author"] == "Cecilia Sala" and signed["author_profile"]["id"] == author["id"]
    named = await post(client, blog, tied, "Firmato a mano", author="Redazione")
    assert named["author"] == "Redazione" and named["author_profile"] is None
    unknown = await client.post("/api/tokens", headers=admin(), json={"name": "X", "author_id": "nessuno"})
    assert unknown.status_code == 422
