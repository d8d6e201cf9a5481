"""The Starlette service: JSON API, server-sent events, pages, feeds, health."""
