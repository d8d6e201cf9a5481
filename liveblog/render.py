"""Entry bodies: Markdown (with inline HTML allowed) rendered, then sanitized with Ammonia (nh3).

Sanitizing happens after rendering, so nothing an editor types (or pastes) can reach a reader as
script, event handler, ``javascript:`` URL or style.

Three things are built by us rather than written by the author, and are put in only *after*
sanitizing (the Markdown renderer leaves a marker with a per-render nonce, which the author cannot
guess, and the marker is swapped for our markup), so the sanitizer stays as strict as before (no
iframe, no ``data-*``, no button, no class an author could forge):

- a photo of ours (``![alt](/media/…)`` or its full URL) becomes a responsive ``<img>`` (``srcset``
  of its variants, ``sizes``, ``width``/``height``, lazy); alone in its paragraph it is a
  ``<figure>`` with the Markdown title as ``<figcaption>``;
- a line holding only a YouTube or Vimeo link becomes a click-to-load placeholder (``data-embed``;
  ``web/static/embeds.js`` swaps in the privacy-enhanced player when the reader asks);
- a line holding only a link to a post on X, Instagram, Facebook, TikTok, Bluesky or Threads becomes
  a card linking to it. Neither requests anything from the provider on load.

Media paths are stored root-relative (``/media/…``); ``liveblog.present`` makes them absolute
with the current public URL when an entry is served.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token

_md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

_TAGS = set(nh3.ALLOWED_TAGS) | {"figure", "figcaption"}
_ATTRIBUTES = {
    # ``cite`` (q, blockquote, del, ins) is a URL that Ammonia does not filter by scheme, so
    # ``cite="javascript:…"`` would survive; readers never see it, so it is dropped everywhere.
    **{tag: set(attrs) - {"cite"} for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "abbr": {"title"},
    "time": {"datetime"},
}

# Photos fill the text column (live.css: .lb-wrap 46rem wide with 1.25rem padding each side).
IMAGE_SIZES = "(min-width: 46rem) 43.5rem, calc(100vw - 2.5rem)"
MEDIA_PREFIX = "/media/"

# Characters XML 1.0 forbids (C0 controls but tab, LF and CR; U+FFFE, U+FFFF; lone surrogates): one
# of them in a title or body would make the Atom feed not well-formed, so none is ever stored.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_chars(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids."""
    return _NOT_XML.sub("", text)



class Rendered(NamedTuple):
    html: str
    image: str | None  # the first image: "/media/…" (ours, largest variant) or an absolute http(s) URL


class MediaLookup(Protocol):
    """What the renderer needs from the photo store: a stored photo's manifest from any of its URLs."""

    def manifest(self, url: str) -> dict[str, Any] | None: ...


# ---- embeds --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Embed:
    kind: str  # "player" or "card"
    provider: str  # youtube, vimeo, x, instagram, facebook, tiktok, bluesky, threads
    name: str  # shown to readers
    url: str
    video: str | None = None  # the player's id (and, for Vimeo, "id:hash" of an unlisted video)


_YT_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_HOSTS = {
    "youtube": {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtube-nocookie.com",
                "www.youtube-nocookie.com"},
    "vimeo": {"vimeo.com", "www.vimeo.com", "player.vimeo.com"},
    "x": {"x.com", "www.x.com", "twitter.com", "www.twitter.com", "mobile.twitter.com", "mobile.x.com"},
    "instagram": {"instagram.com", "www.instagram.com"},
    "facebook": {"facebook.com", "www.facebook.com", "m.facebook.com", "web.facebook.com", "fb.watch"},
    "tiktok": {"tiktok.com", "www.tiktok.com", "m.tiktok.com", "vm.tiktok.com", "vt.tiktok.com"},
    "bluesky": {"bsky.app"},
    "threads": {"threads.net", "www.threads.net", "threads.com", "www.threads.com"},
}
_NAMES = {"youtube": "YouTube", "vimeo": "Vimeo", "x": "X", "instagram": "Instagram", "facebook": "Facebook",
          "tiktok": "TikTok", "bluesky": "Bluesky", "threads": "Threads"}
# Paths of a post (not a profile or a home page), per provider.
_POSTS = {
    "x": re.compile(r"/(?:[A-Za-z0-9_]{1,15}|i/web)/status(?:es)?/\d+/?"),
    "instagram": re.compile(r"/(?:[A-Za-z0-9_.]+/)?(?:p|reel|reels|tv)/[A-Za-z0-9_-]+/?"),
    "facebook": re.compile(r"/(?:[^/]+/(?:posts|videos|photos)/.+|(?:permalink|story|photo)\.php|watch/?|reel/\d+/?"
                           r"|share/(?:p|v|r)/[A-Za-z0-9]+/?|groups/[^/]+/(?:posts|permalink)/\d+/?|[A-Za-z0-9_-]+/?)"),
    "tiktok": re.compile(r"/(?:@[A-Za-z0-9_.]+/(?:video|photo)/\d+|[A-Za-z0-9]+)/?"),
    "bluesky": re.compile(r"/profile/[^/]+/post/[a-z0-9]+/?"),
    "threads": re.compile(r"/@[A-Za-z0-9_.]+/post/[A-Za-z0-9_-]+/?"),
}


def _youtube(host: str, path: str, query: str) -> str | None:
    if host == "youtu.be":
        candidate = path.strip("/")
    elif path.rstrip("/") == "/watch":
        candidate = (parse_qs(query).get("v") or [""])[0]
    else:
        match = re.fullmatch(r"/(?:shorts|embed|live|v)/([^/]+)/?", path)
        candidate = match.group(1) if match else ""
    return candidate if _YT_ID.fullmatch(candidate) else None


def _vimeo(host: str, path: str) -> str | None:
    pattern = (r"/video/(\d+)/?" if host == "player.vimeo.com"
               else r"/(?:channels/[^/]+/|groups/[^/]+/videos/)?(\d+)(?:/([0-9a-f]+))?/?")
    match = re.fullmatch(pattern, path)
    if not match:
        return None
    unlisted = match.group(2) if match.lastindex and match.lastindex >= 2 else None
    return f"{match.group(1)}:{unlisted}" if unlisted else match.group(1)


def embed_for(url: str) -> Embed | None:
    """The embed a link alone on its line becomes, or None (then it stays an ordinary link)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        return None
    host = (parts.hostname or "").lower()
    if host == "youtu.be" or host in _HOSTS["youtube"]:
        video = _youtube(host, parts.path, parts.query)
        return Embed("player", "youtube", "YouTube", url, video) if video else None
    if host in _HOSTS["vimeo"]:
        video = _vimeo(host, parts.path)
        return Embed("player", "vimeo", "Vimeo", url, video) if video else None
    for provider, pattern in _POSTS.items():
        if host in _HOSTS[provider]:
            if host == "fb.watch" or host.startswith(("vm.", "vt.")):
                ok = bool(parts.path.strip("/"))
            else:
                ok = bool(pattern.fullmatch(parts.path)) and parts.path.strip("/") != ""
            return Embed("card", provider, _NAMES[provider], url) if ok else None
    return None


_LABELS = {
    "it": {"play": "Carica il video da {name}", "notice": "Il video si carica da {name} solo quando lo avvii.",
           "post": "Post su {name}"},
    "en": {"play": "Load the video from {name}", "notice": "The video loads from {name} only when you start it.",
           "post": "Post on {name}"},
}


def _embed_html(embed: Embed, language: str) -> str:
    L = _LABELS.get(language, _LABELS["it"])
    url = html.escape(embed.url, quote=True)
    name = html.escape(embed.name)
    shown = html.escape(_short(embed.url))
    if embed.kind == "player":
        video = html.escape(embed.video or "")
        return (f'<div class="lb-player" data-embed="{embed.provider}" data-embed-id="{video}">'
                f'<button type="button" class="lb-player-play">{L["play"].format(name=name)}</button>'
                f'<p class="lb-player-note">{L["notice"].format(name=name)} '
                f'<a class="lb-player-link" href="{url}" rel="noopener noreferrer nofollow">{shown}</a></p></div>')
    return (f'<p class="lb-card" data-card="{embed.provider}">'
            f'<a class="lb-card-link" href="{url}" rel="noopener noreferrer nofollow">'
            f'<span class="lb-card-provider">{L["post"].format(name=name)}</span> '
            f'<span class="lb-card-url">{shown}</span></a></p>')


def _short(url: str) -> str:
    parts = urlsplit(url)
    text = (parts.hostname or "").removeprefix("www.") + parts.path
    return text if len(text) <= 60 else text[:59] + "…"


_PLAYER_BLOCK = re.compile(
    r'<div class="lb-player" data-embed="[a-z]+" data-embed-id="[^"]*">.*?'
    r'<a class="lb-player-link" href="([^"]*)"[^>]*>(.*?)</a></p></div>', re.S)


def plain_embeds(body_html: str) -> str:
    """For feeds: each click-to-load placeholder becomes a plain link (feed readers run no script)."""
    return _PLAYER_BLOCK.sub(r'<p><a href="\1">\1</a></p>', body_html)


# ---- photos --------------------------------------------------------------------------------------

def _image_html(manifest: dict[str, Any], alt: str, title: str | None, *, figure: bool) -> str:
    variants = manifest["variants"]
    largest = variants[-1]
    fallback = next((v for v in variants if v["width"] >= 960), largest)
    srcset = ", ".join(f'{MEDIA_PREFIX}{v["path"]} {v["width"]}w' for v in variants)
    img = (f'<img src="{MEDIA_PREFIX}{fallback["path"]}" srcset="{srcset}" sizes="{IMAGE_SIZES}" '
           f'width="{largest["width"]}" height="{largest["height"]}" alt="{html.escape(alt, quote=True)}" '
           f'loading="lazy" decoding="async">')
    if not figure:
        return img
    caption = f"<figcaption>{html.escape(title)}</figcaption>" if title else ""
    return f'<figure class="lb-figure">{img}{caption}</figure>'


# ---- the renderer --------------------------------------------------------------------------------

@dataclass
class _Pass:
    """One rendering: the trusted fragments waiting for their markers, and the first image seen."""

    media: MediaLookup | None
    language: str = "it"
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    fragments: list[str] = field(default_factory=list)
    image: str | None = None

    def marker(self, fragment: str) -> str:
        self.fragments.append(fragment)
        return f"lbfragment{self.nonce}x{len(self.fragments) - 1}"

    def substitute(self, cleaned: str) -> str:
        def swap(match: re.Match[str]) -> str:
            return self.fragments[int(match.group(1))]

        paragraph = re.compile(rf"<p>lbfragment{self.nonce}x(\d+)</p>")
        inline = re.compile(rf"lbfragment{self.nonce}x(\d+)")
        return inline.sub(swap, paragraph.sub(swap, cleaned))

    def saw_image(self, src: str, manifest: dict[str, Any] | None) -> None:
        if self.image is None:
            if manifest is not None:
                self.image = MEDIA_PREFIX + manifest["variants"][-1]["path"]
            elif urlsplit(src).scheme in ("http", "https"):
                self.image = src


def _lone_link(children: list[Token]) -> str | None:
    """The URL when a line's inline tokens are one link or one bare URL and nothing else."""
    kept = [t for t in children if not (t.type == "text" and not t.content.strip())]
    if len(kept) == 1 and kept[0].type == "text":
        text = kept[0].content.strip()
        return text if re.fullmatch(r"https?://\S+", text) else None
    if len(kept) >= 2 and kept[0].type == "link_open" and kept[-1].type == "link_close":
        inner = kept[1:-1]
        if all(t.type == "text" for t in inner):
            return str(kept[0].attrGet("href") or "")
    return None


def _lines(children: list[Token]) -> list[list[Token]]:
    lines: list[list[Token]] = [[]]
    for token in children:
        if token.type in ("softbreak", "hardbreak"):
            lines.append([])
        else:
            lines[-1].append(token)
    return lines


def _paragraph(children: list[Token], template: Token) -> list[Token]:
    inline = Token("inline", "", 0, map=template.map, content="", children=children)
    return [Token("paragraph_open", "p", 1, block=True), inline, Token("paragraph_close", "p", -1, block=True)]


def _marker_block(marker: str) -> Token:
    return Token("html_block", "", 0, block=True, content=f"<p>{marker}</p>\n")


def _blocks(tokens: list[Token], work: _Pass) -> list[Token]:
    """Paragraphs whose lines are embeds, or that hold one photo of ours, become our blocks."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        opening = tokens[i]
        if not (opening.type == "paragraph_open" and i + 2 < len(tokens) and tokens[i + 1].type == "inline"
                and not opening.hidden):
            out.append(opening)
            i += 1
            continue
        inline = tokens[i + 1]
        children = inline.children or []
        kept = [t for t in children if not (t.type == "text" and not t.content.strip())]
        if len(kept) == 1 and kept[0].type == "image":
            src = str(kept[0].attrGet("src") or "")
            manifest = work.media.manifest(src) if work.media else None
            if manifest is not None:
                work.saw_image(src, manifest)
                renderer = cast(RendererHTML, _md.renderer)  # typed as the protocol; it is the HTML one
                alt = renderer.renderInlineAsText(kept[0].children or [], _md.options, {})
                title = kept[0].attrGet("title")
                out.append(_marker_block(work.marker(_image_html(manifest, alt, str(title) if title else None,
                                                                 figure=True))))
                i += 3
                continue
        lines = _lines(children)
        embeds = [embed_for(url) if (url := _lone_link(line)) else None for line in lines]
        if not any(embeds):
            out.extend(tokens[i:i + 3])
            i += 3
            continue
        pending: list[Token] = []
        for line, embed in zip(lines, embeds, strict=True):
            if embed is None:
                if pending:
                    pending.append(Token("softbreak", "br", 0))
                pending.extend(line)
                continue
            if pending:
                out.extend(_paragraph(pending, inline))
                pending = []
            out.append(_marker_block(work.marker(_embed_html(embed, work.language))))
        if pending:
            out.extend(_paragraph(pending, inline))
        i += 3
    return out


def render(source: str, media: MediaLookup | None = None, language: str = "it") -> Rendered:
    """Markdown/HTML in, safe HTML out, with the first image (see ``Rendered``); ``language`` is the
    blog's, for the placeholders' words."""
    work = _Pass(media, language)
    tokens = _blocks(_md.parse(source), work)
    env: dict[str, Any] = {"work": work}
    rendered = _md.renderer.render(tokens, _md.options, env)
    cleaned = nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    ).strip()
    return Rendered(work.substitute(cleaned), work.image)


def _inline_image(self: Any, tokens: list[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    """An image inside text: ours gets its srcset (no figure inside a paragraph); others as usual."""
    token = tokens[idx]
    work: _Pass | None = env.get("work")
    src = str(token.attrGet("src") or "")
    manifest = work.media.manifest(src) if work and work.media else None
    if work is not None:
        work.saw_image(src, manifest)
    if work is None or manifest is None:
        return str(self.image(tokens, idx, options, env))
    alt = self.renderInlineAsText(token.children or [], options, env)
    return work.marker(_image_html(manifest, alt, None, figure=False))


_md.add_render_rule("image", _inline_image)


def render_body(source: str, media: MediaLookup | None = None) -> str:
    """Markdown/HTML in, safe HTML out."""
    return render(source, media).html


def plain_text(source: str) -> str:
    """Titles and names: no markup at all, entities escaped by the templates/JSON later."""
    return html.unescape(nh3.clean(source, tags=set())).strip()


_BLOCK_BOUNDARY = re.compile(r"<(?=/?(?:p|br|li|h[1-6]|div|blockquote|pre|tr|td|th|figcaption)\b)", re.IGNORECASE)


def html_text(body_html: str) -> str:
    """Readable text of rendered HTML (for JSON-LD and feed titles): blocks separated, spaces folded;
    a video placeholder counts as its link, not as its button's words."""
    return " ".join(plain_text(_BLOCK_BOUNDARY.sub(" <", plain_embeds(body_html))).split())
