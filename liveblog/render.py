"""Entry bodies: Markdown (with inline HTML allowed) rendered, then sanitized with Ammonia (nh3).

Sanitizing happens after rendering, so nothing an editor types (or pastes) can reach a reader as
script, event handler, ``javascript:`` URL or style.
"""

from __future__ import annotations

import html
import re

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

_TAGS = set(nh3.ALLOWED_TAGS) | {"figure", "figcaption"}
_ATTRIBUTES = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "abbr": {"title"},
    "time": {"datetime"},
}


def render_body(source: str) -> str:
    """Markdown/HTML in, safe HTML out."""
    rendered = _md.render(source)
    return nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    ).strip()


def plain_text(source: str) -> str:
    """Titles and names: no markup at all, entities escaped by the templates/JSON later."""
    return html.unescape(nh3.clean(source, tags=set())).strip()


_BLOCK_BOUNDARY = re.compile(r"<(?=/?(?:p|br|li|h[1-6]|div|blockquote|pre|tr|td|th|figcaption)\b)", re.IGNORECASE)


def html_text(body_html: str) -> str:
    """Readable text of rendered HTML (for JSON-LD and feed titles): blocks separated, spaces folded."""
    return " ".join(plain_text(_BLOCK_BOUNDARY.sub(" <", body_html)).split())
