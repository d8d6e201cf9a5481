"""The application factory: wires the store, the fan-out hub and (optionally) the webhook dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import ClusterError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from liveblog.authors import Authors
from liveblog.changelog import ChangeLog, RedisChangeLog
from liveblog.clusterlog import ClusterChangeLog
from liveblog.config import Settings
from liveblog.drafts import Drafts
from liveblog.fanout import BLOCK_MS, Hub
from liveblog.httpserver import server_exiting
from liveblog.media import MediaLibrary
from liveblog.presence import Presence
from liveblog.present import Presenter
from liveblog.redisconn import blocking_client, cluster_client, connect, is_cluster, pool_client
from liveblog.scheduler import Scheduler
from liveblog.store import Store, StoreError
from liveblog.tokens import Tokens
from liveblog.webapp import (
    api,
    authors_api,
    editor,
    feeds,
    media_api,
    openapi,
    pages,
    sse,
    tokens_api,
    update_page,
    webhooks_api,
)
from liveblog.webapp.clients import StreamSlots
from liveblog.webapp.problems import (
    Problem,
    on_client_disconnect,
    on_http_exception,
    on_problem,
    on_redis_down,
    on_redis_refusal,
    on_store_error,
    on_unexpected,
)

log = logging.getLogger(__name__)

EXIT_CHECK = 0.2  # seconds: how soon a start-up waiting for Redis notices it was asked to exit


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await request.app.state.redis.ping()
    except Exception as exc:  # any failure to reach Redis means "not ready"
        return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ready", "redis": "ok"})


async def metrics_endpoint(_request: Request) -> Response:
    return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _detect_cluster(url: str, timeout: float) -> bool | None:
    """Whether ``url`` names a Redis Cluster node, asked until Redis answers: which client to build
    depends on it, so the process does not start serving before it knows. Asked to exit meanwhile
    (SIGTERM, Ctrl-C), it gives up within ``EXIT_CHECK`` seconds (uvicorn does not look while the
    application is starting) and returns None."""
    delay = 0.2
    while True:
        try:
            return await is_cluster(url, timeout=timeout)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis does not answer (%s); asking again in %.1fs", exc, delay)
            waited = 0.0
            while waited < delay:
                if server_exiting():
                    return None
                await asyncio.sleep(EXIT_CHECK)
                waited += EXIT_CHECK
            delay = min(delay * 2, 5.0)


def create_app(settings: Settings | None = None, *, dispatcher: bool | None = None) -> Starlette:
    """Build the ASGI app. ``LIVEBLOG_REDIS_URL`` must be resolved by now (the CLI starts the embedded
    server first and passes its URL down to every worker process)."""
    settings = settings or Settings.from_env()
    if not settings.redis_url:
        raise RuntimeError("LIVEBLOG_REDIS_URL is not set; start the service with `liveblog serve`")
    redis_url = settings.redis_url
    if dispatcher is None:
        dispatcher = os.environ.get("LIVEBLOG_DISPATCHER", "1") != "0"
    public_url = settings.public_url or "http://127.0.0.1:8000"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = settings.redis_timeout_seconds
        cluster = await _detect_cluster(redis_url, timeout)
        if cluster is None:  # nothing was started, so there is nothing to stop: uvicorn exits at once
            log.warning("asked to exit before Redis answered: stopping")
            yield
            return
        redis = connect(redis_url, cluster, timeout=timeout)
        app.state.settings = settings
        app.state.redis = redis
        app.state.media_library = MediaLibrary(settings.media_dir)
        app.state.store = Store(redis, stream_maxlen=settings.stream_maxlen,
                                idempotency_ttl=settings.idempotency_ttl_seconds, media=app.state.media_library,
                                min_replicas=settings.redis_min_replicas,
                                wait_timeout_ms=settings.redis_wait_timeout_ms)
        app.state.presenter = Presenter(public_url)
        app.state.drafts = Drafts(app.state.store)
        app.state.scheduler = Scheduler(app.state.drafts, interval=settings.scheduler_interval_seconds)
        app.state.scheduler.start()
        app.state.tokens = Tokens(redis, bootstrap_admin=settings.admin_token,
                                  touch_interval=settings.token_touch_seconds)
        app.state.streams = StreamSlots(settings)
        app.state.media = media_api.workers(settings)
        app.state.authors = Authors(redis)
        # The hub's own change log: a small pool, and a dedicated connection for its blocking read
        # (on a cluster: one sharded pub/sub connection per primary it needs, see clusterlog.py).
        hub_log: ChangeLog
        if cluster:
            hub_log = ClusterChangeLog(cluster_client(redis_url, max_connections=10, timeout=timeout))
        else:
            hub_log = RedisChangeLog(pool_client(redis_url, max_connections=10, timeout=timeout),
                                     blocking_client(redis_url, read_timeout=BLOCK_MS / 1000 + timeout,
                                                     connect_timeout=timeout))
        app.state.hub = Hub(hub_log, app.state.presenter, buffer=settings.client_buffer,
                            heartbeat=settings.heartbeat_seconds, send_timeout=settings.send_timeout_seconds,
                            released=app.state.streams.release, publishing=app.state.media.pauser.publishing)
        await app.state.hub.start()
        app.state.presence = Presence(redis, app.state.hub, interval=settings.readers_interval_seconds)
        app.state.presence.start()
        worker = None
        if dispatcher:
            from liveblog.webhooks.dispatcher import Dispatcher

            worker = Dispatcher(settings, public_url=public_url, cluster=cluster)
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await app.state.scheduler.stop()
            await app.state.presence.stop()
            await app.state.hub.stop()
            app.state.media.close()
            await redis.aclose()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *api.routes,
        *sse.routes,
        *webhooks_api.routes,
        *authors_api.routes,
        *openapi.routes,
        *media_api.routes(settings),
        *tokens_api.routes,
        *feeds.routes,
        *editor.routes,
        *update_page.routes,
        *pages.routes,
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            Problem: on_problem,
            StoreError: on_store_error,
            HTTPException: on_http_exception,
            RedisConnectionError: on_redis_down,
            RedisTimeoutError: on_redis_down,
            # A cluster that moved a slot and kept answering TRYAGAIN/ASK past redis-py's redirection
            # budget ("TTL exhausted"), or whose slots are not all served (a failover): nothing ran.
            ClusterError: on_redis_down,
            RedisClusterException: on_redis_down,
            RedisResponseError: on_redis_refusal,
            ClientDisconnect: on_client_disconnect,
            Exception: on_unexpected,  # the catch-all (ServerErrorMiddleware): problem+json 500
        },
    )


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory liveblog.webapp.app:app_from_env`` (used by ``liveblog serve``)."""
    return create_app()
