"""The editor's page (``GET /editor/{slug}``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
