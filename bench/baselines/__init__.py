"""Baselines measured in the same run as liveblog: the usual ways to build SSE over Redis streams.

Both are plain sse-starlette apps served by uvicorn with uvloop and httptools (as ``liveblog serve``
is). ``POST /publish`` appends its request body to the stream (on a client of its own, so that the
editor's path stays up while readers fail) and returns the stream ID; ``GET /events`` streams it.
"""
