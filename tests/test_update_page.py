"""Each update's own page, /blogs/{slug}/updates/{id} (CONTRACT "Editorial workflow and discovery")."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import httpx

from tests.support import post
from tests.test_pages import block


class Head(HTMLParser):
    """<meta property|name=… content=…> and <link rel=… href=…> of a page, and its links."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.anchors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta" and "content" in a:
            self.meta[a.get("property") or a.get("name", "")] = a["content"]
        elif tag == "link" and "rel" in a:
            self.links[a["rel"]] = a["href"]
        elif tag == "a" and "href" in a:
            self.anchors.append(a["href"])


def head(html: str) -> Head:
    parser = Head()
    parser.feed(html)
    return parser


async def test_the_update_page_is_the_entry_url_with_share_card_meta(client: httpx.AsyncClient, server,  # type: ignore[no-untyped-def]
                                                                     blog: str, editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "Le sirene suonano a Kiev da **dieci minuti**. " * 8,
                       title="Allarme aereo a Kiev")
    assert entry["url"] == f"{server.url}/blogs/{blog}/updates/{entry['id']}"
    response = await client.get(f"/blogs/{blog}/updates/{entry['id']}")
    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("public")
    page = head(response.text)
    assert page.links["canonical"] == entry["url"]
    assert page.meta["og:title"] == page.meta["twitter:title"] == "Allarme aereo a Kiev"
    assert page.meta["og:url"] == entry["url"] and page.meta["og:type"] == "article"
    description = page.meta["og:description"]
    assert description.startswith("Le sirene suonano a Kiev da dieci minuti.") and len(description) <= 200
    assert page.meta["twitter:card"] == "summary" and "og:image" not in page.meta
    assert f"/blogs/{blog}#aggiornamento-{entry['id']}" in page.anchors  # the live page, at this update
    ld = block(response.text, "application/ld+json")
    assert ld["@type"] == "BlogPosting" and ld["url"] == entry["url"] and ld["headline"] == "Allarme aereo a Kiev"
    assert ld["isPartOf"] == {"@type": "LiveBlogPosting", "@id": f"{server.url}/blogs/{blog}",
                              "url": f"{server.url}/blogs/{blog}", "headline": f"Blog {blog}"}


async def test_an_untitled_update_takes_its_title_from_the_text(client: httpx.AsyncClient, blog: str,
                                                                editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "Solo testo, senza titolo")
    page = head((await client.get(f"/blogs/{blog}/updates/{entry['id']}")).text)
    assert page.meta["og:title"] == "Solo testo, senza titolo"


async def test_a_deleted_update_is_gone_and_an_unknown_one_not_found(client: httpx.AsyncClient, blog: str,
                                                                     editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "Da cancellare")
    assert (await client.delete(f"/api/blogs/{blog}/entries/{entry['id']}", headers=editor)).status_code == 204
    gone = await client.get(f"/blogs/{blog}/updates/{entry['id']}")
    assert gone.status_code == 410 and gone.headers["content-type"].startswith("text/html")
    assert (await client.get(f"/blogs/{blog}/updates/999999")).status_code == 404
    assert (await client.get(f"/blogs/nessun-blog-{blog}/updates/1")).status_code == 404


async def test_share_links_and_feeds_point_at_the_update_page(client: httpx.AsyncClient, blog: str,
                                                              editor: dict[str, str]) -> None:
    entry = await post(client, blog, editor, "Condividimi")
    live = (await client.get(f"/blogs/{blog}")).text
    assert f'class="lb-share" data-field="share" href="{entry["url"]}"' in live
    feed = json.loads((await client.get(f"/blogs/{blog}/feed.json")).content)
    assert feed["items"][0]["url"] == entry["url"]
