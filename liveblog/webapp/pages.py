"""HTML pages and feeds (the live page, embed, editor, Atom, JSON Feed)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
