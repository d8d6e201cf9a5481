"""Bodies with photos and embeds: the renderer (every provider, lines left alone) and what the server
serves (API, preview, feeds, JSON-LD, CSP)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest

from liveblog.render import embed_for, render
from tests.support import assert_clean, post
from tests.test_media import picture, stored

YT = "dQw4w9WgXcQ"


@pytest.mark.parametrize("url", [
    f"https://www.youtube.com/watch?v={YT}",
    f"https://youtube.com/watch?v={YT}&t=42s",
    f"https://m.youtube.com/watch?feature=share&v={YT}",
    f"https://youtu.be/{YT}",
    f"https://youtu.be/{YT}?si=abc",
    f"https://www.youtube.com/shorts/{YT}",
    f"https://www.youtube.com/live/{YT}",
    f"https://www.youtube.com/embed/{YT}",
])
def test_youtube_forms_become_a_click_to_load_player(url: str) -> None:
    out = render(url).html
    assert f'data-embed="youtube" data-embed-id="{YT}"' in out
    assert '<button type="button"' in out and "YouTube" in out
    assert f'href="{html.escape(url)}"' in out
    assert "<iframe" not in out and "youtube-nocookie" not in out  # nothing to load until the click


@pytest.mark.parametrize(("url", "video"), [
    ("https://vimeo.com/76979871", "76979871"),
    ("https://vimeo.com/channels/staffpicks/76979871", "76979871"),
    ("https://player.vimeo.com/video/76979871", "76979871"),
    ("https://vimeo.com/76979871/1a2b3c4d5e", "76979871:1a2b3c4d5e"),  # unlisted: id and hash
])
def test_vimeo_forms_become_a_click_to_load_player(url: str, video: str) -> None:
    out = render(f"<{url}>").html
    assert f'data-embed="vimeo" data-embed-id="{video}"' in out and "Vimeo" in out


@pytest.mark.parametrize(("url", "provider", "name"), [
    ("https://x.com/Quirinale/status/1790000000000000000", "x", "X"),
    ("https://twitter.com/Quirinale/status/1790000000000000000", "x", "X"),
    ("https://www.instagram.com/p/C7abcDEF123/", "instagram", "Instagram"),
    ("https://www.instagram.com/reel/C7abcDEF123/", "instagram", "Instagram"),
    ("https://www.facebook.com/Quirinale/posts/pfbid0abc", "facebook", "Facebook"),
    ("https://www.facebook.com/watch/?v=123456", "facebook", "Facebook"),
    ("https://www.tiktok.com/@rainews/video/7350000000000000000", "tiktok", "TikTok"),
    ("https://bsky.app/profile/rainews.bsky.social/post/3kxyzabc2", "bluesky", "Bluesky"),
    ("https://www.threads.net/@rainews/post/C7abcDEF123", "threads", "Threads"),
    ("https://www.threads.com/@rainews/post/C7abcDEF123", "threads", "Threads"),
])
def test_social_posts_become_cards_that_only_link(url: str, provider: str, name: str) -> None:
    out = render(f"Prima riga\n{url}\nUltima riga").html
    assert f'data-card="{provider}"' in out and f"Post su {name}" in out
    assert f'href="{html.escape(url)}"' in out
    assert "<script" not in out and "<iframe" not in out and "data-embed" not in out
    # the lines around it stay paragraphs of their own
    assert out.startswith("<p>Prima riga</p>") and out.endswith("<p>Ultima riga</p>")


@pytest.mark.parametrize("source", [
    f"guarda https://youtu.be/{YT} qui",  # not alone on its line
    f"[il video](https://youtu.be/{YT}) e altro",
    "https://www.youtube.com/watch?v=short",  # not a video id
    "https://www.youtube.com/@rainews",  # a channel
    "https://vimeo.com/about",
    "https://x.com/Quirinale",  # a profile, not a post
    "https://www.instagram.com/rainews/",
    "https://bsky.app/profile/rainews.bsky.social",
    "https://example.org/watch?v=dQw4w9WgXcQ",
    f"`https://youtu.be/{YT}`",
    f"    https://youtu.be/{YT}",  # a code block
    f"javascript://youtu.be/{YT}",
])
def test_lines_that_are_not_a_lone_provider_link_are_left_alone(source: str) -> None:
    out = render(source).html
    assert "data-embed" not in out and "data-card" not in out and "lb-card" not in out


def test_authors_cannot_write_embeds_or_iframes_themselves() -> None:
    forged = (f'<div class="lb-player" data-embed="youtube" data-embed-id="{YT}"><button>x</button></div>'
              '<iframe src="https://www.youtube-nocookie.com/embed/x"></iframe>'
              '<p class="lb-card" data-card="x">y</p><img src="/media/ab/cd.jpg" srcset="x 1w" onerror="alert(1)">')
    out = render(forged).html
    assert "data-embed" not in out and "iframe" not in out and "button" not in out and "class=" not in out
    assert "srcset" not in out and "onerror" not in out
    assert embed_for("https://youtu.be/not-an-id") is None


def test_a_guessed_marker_does_not_become_markup() -> None:
    assert render("lbfragment0000000000000000x0").html == "<p>lbfragment0000000000000000x0</p>"


# ---- through the server ------------------------------------------------------------------------------

def _attr(html_text: str, tag: str, name: str) -> str:
    match = re.search(rf"<{tag}\b[^>]*\s{name}=\"([^\"]*)\"", html_text)
    assert match, (tag, name, html_text)
    return html.unescape(match.group(1))


async def test_an_uploaded_photo_in_a_body_is_a_responsive_figure(client: httpx.AsyncClient, blog: str,
                                                                  editor: dict[str, str], editor_token: str) -> None:
    photo = await stored(client, editor_token, picture(2400, 1600))
    path = photo["url"].removeprefix(str(client.base_url))
    entry = await post(client, blog, editor, f'![Il palco di piazza San Giovanni]({path} "Foto di Anna")\n\nTesto')
    body = entry["body_html"]
    assert body.startswith('<figure class="lb-figure"><img ') and "<figcaption>Foto di Anna</figcaption>" in body
    assert _attr(body, "img", "alt") == "Il palco di piazza San Giovanni"
    assert (_attr(body, "img", "width"), _attr(body, "img", "height")) == ("2000", "1333")
    assert _attr(body, "img", "loading") == "lazy" and _attr(body, "img", "decoding") == "async"
    assert _attr(body, "img", "sizes")
    srcset = _attr(body, "img", "srcset")
    assert [c.split()[0] for c in srcset.split(", ")] == [v["url"] for v in photo["variants"]]  # absolute
    assert [c.split()[1] for c in srcset.split(", ")] == ["480w", "960w", "1600w", "2000w"]
    assert _attr(body, "img", "src").startswith(f"{client.base_url}/media/")
    assert entry["image"] == photo["url"]  # the largest variant, absolute
    assert_clean(body)
    # The full URL works the same, and the same entry comes back from the list.
    again = await post(client, blog, editor, f"![foto]({photo['variants'][0]['url']})")
    assert again["image"] == photo["url"] and 'srcset="' in again["body_html"]
    listed = (await client.get(f"/api/blogs/{blog}/entries")).json()["entries"]
    assert [e["image"] for e in listed] == [photo["url"], photo["url"]]


async def test_image_is_the_first_image_or_null(client: httpx.AsyncClient, blog: str,
                                                editor: dict[str, str]) -> None:
    assert (await post(client, blog, editor, "solo testo"))["image"] is None
    other = await post(client, blog, editor, "![a](https://foto.example.org/a.jpg) e ![b](https://foto.example.org/b.jpg)")
    assert other["image"] == "https://foto.example.org/a.jpg"
    assert '<img src="https://foto.example.org/a.jpg" alt="a">' in other["body_html"]  # other hosts as before


async def test_json_ld_and_feeds_carry_the_image_and_plain_video_links(client: httpx.AsyncClient, blog: str,
                                                                       editor: dict[str, str],
                                                                       editor_token: str) -> None:
    photo = await stored(client, editor_token, picture(800, 600))
    path = photo["url"].removeprefix(str(client.base_url))
    await post(client, blog, editor, f"![foto]({path})\n\nhttps://youtu.be/{YT}")
    page = (await client.get(f"/blogs/{blog}")).text
    assert f'"image":"{photo["url"]}"' in page
    atom = (await client.get(f"/blogs/{blog}/feed.atom")).text
    assert f'<link rel="enclosure" type="image/jpeg" href="{photo["url"]}"' in atom
    feed = (await client.get(f"/blogs/{blog}/feed.json")).json()
    [item] = feed["items"]
    assert item["image"] == photo["url"]
    assert f'<p><a href="https://youtu.be/{YT}">https://youtu.be/{YT}</a></p>' in item["content_html"]
    assert "data-embed" not in item["content_html"] and "<button" not in item["content_html"]
    assert "data-embed" not in html.unescape(atom)


async def test_the_preview_renders_photos_and_embeds_like_a_post(client: httpx.AsyncClient,
                                                                 editor: dict[str, str], editor_token: str,
                                                                 blog: str) -> None:
    photo = await stored(client, editor_token, picture(700, 500))
    source = f"![foto]({photo['url']})\n\nhttps://x.com/a/status/1\n\nhttps://vimeo.com/76979871"
    preview = await client.post("/api/preview", headers=editor, json={"body": source})
    entry = await post(client, blog, editor, source)
    shown = preview.json()["body_html"]
    assert "srcset" in shown and 'data-card="x"' in shown and 'data-embed="vimeo"' in shown
    # the same markup, paths root-relative in the preview (same origin) and absolute in the entry
    assert shown.replace('"/media/', f'"{client.base_url}/media/').replace(", /media/", f", {client.base_url}/media/") \
        == entry["body_html"]


async def test_the_live_page_allows_exactly_the_two_players_as_frames(client: httpx.AsyncClient, blog: str) -> None:
    for path in (f"/blogs/{blog}", f"/blogs/{blog}/embed", f"/editor/{blog}"):
        policy = (await client.get(path)).headers["content-security-policy"]
        frames = [d for d in policy.split("; ") if d.startswith("frame-src")]
        assert frames == ["frame-src https://www.youtube-nocookie.com https://player.vimeo.com"], path
        assert "script-src 'self';" in policy + ";"


def test_the_english_blog_gets_english_words() -> None:
    out: Any = render(f"https://youtu.be/{YT}", language="en").html
    assert "Load the video from YouTube" in out
