"""Small pure functions: rendering, text extraction, Italian time labels, stream IDs, seed parsing."""

from __future__ import annotations

from datetime import UTC, datetime

from liveblog import streamids, timefmt
from liveblog.render import html_text, render_body
from liveblog.seed import parse, seed_dir


def test_markdown_renders_and_keeps_safe_links() -> None:
    html = render_body("**Kyiv**, [fonte](https://example.org) e <em>corsivo</em>")
    assert html == ('<p><strong>Kyiv</strong>, <a href="https://example.org" rel="noopener noreferrer nofollow">'
                    "fonte</a> e <em>corsivo</em></p>")


def test_html_text_separates_blocks() -> None:
    assert html_text("<p>uno</p><p>due &amp; tre</p><ul><li>a</li><li>b</li></ul>") == "uno due & tre a b"


def test_time_labels_follow_the_blog_timezone_across_dst() -> None:
    summer = datetime(2026, 7, 1, 12, 25, tzinfo=UTC)
    winter = datetime(2026, 11, 25, 13, 25, tzinfo=UTC)
    assert timefmt.time_label(summer, "Europe/Rome") == "14.25"
    assert timefmt.time_label(winter, "Europe/Rome") == "14.25"
    assert timefmt.time_label(winter, "America/New_York") == "08.25"
    assert timefmt.date_label(winter, "Europe/Rome") == "25 novembre 2026"
    assert timefmt.rfc3339(winter) == "2026-11-25T13:25:00.000Z"


def test_stream_ids_parse_and_order() -> None:
    assert streamids.parse("1732540000000-3") == (1732540000000, 3)
    assert streamids.parse("1732540000000") == (1732540000000, 0)
    assert streamids.parse("12-ab") is None and streamids.parse("") is None
    assert streamids.parse("99999999999999999999-0") is None  # beyond 64 bits
    assert streamids.parse("5-10") > streamids.parse("5-9")  # numeric, not lexical


def test_seed_document_parses() -> None:
    doc = parse(sorted(seed_dir().glob("*.txt"))[0].read_text(encoding="utf-8"))
    assert doc.blog_title == "La guerra di Putin"
    assert (doc.hour, doc.minute) == (14, 25)
    assert doc.headline.startswith("Crisi Ucraina")
    assert len(doc.related) == 3 and {r["author"] for r in doc.related} == {"Redazione Ore 12"}
