"""Atom and JSON Feed 1.1 per blog."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
