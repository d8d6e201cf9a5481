"""The ``liveblog`` console script: serve, worker, demo, token create|list|revoke."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from liveblog import __version__, capacity
from liveblog.config import SettingError, Settings
from liveblog.embedded import EmbeddedRedis, EmbeddedRedisError

if TYPE_CHECKING:
    from liveblog.tokens import Tokens

# In the data dir: the demo editor token, so that `liveblog demo` prints the same one every time.
DEMO_TOKEN_FILE = "demo-editor-token"


def _redacted(url: str) -> str:
    """A Redis URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}" if url else "(embedded)"


def say(message: str) -> None:
    print(f"liveblog: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def redis_url(settings: Settings, *, watch: bool = True) -> Iterator[str]:
    """The configured Redis, or the data dir's embedded one (joined, or started if none runs; it
    stops when its last user leaves). ``watch``: restart it if it dies while this process runs."""
    if settings.redis_url:
        yield settings.redis_url
        return
    server = EmbeddedRedis(settings.data_dir)
    url = server.start(watch=watch)
    say(f"LIVEBLOG_REDIS_URL is unset: starting the embedded Redis server in {server.data_dir}"
        if server.started_supervisor else f"using the embedded Redis server already running for {server.data_dir}")
    try:
        yield url
    finally:
        server.close()


async def _with_store(url: str, work):  # type: ignore[no-untyped-def]
    from liveblog.redisconn import connect_pool
    from liveblog.store import Store
    from liveblog.tokens import Tokens

    redis = await connect_pool(url, max_connections=4)
    try:
        return await work(Store(redis), Tokens(redis))
    finally:
        await redis.aclose()


def _public_url(settings: Settings, host: str, port: int) -> str:
    if settings.public_url:
        return settings.public_url
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}"


def _run_server(url: str, args: argparse.Namespace, public_url: str) -> int:
    import uvicorn

    os.environ["LIVEBLOG_REDIS_URL"] = url
    os.environ["LIVEBLOG_PUBLIC_URL"] = public_url
    os.environ["LIVEBLOG_DISPATCHER"] = "0" if args.no_dispatcher else "1"
    # uvicorn shuts down on SIGTERM, then raises the signal again; exiting normally at that point
    # lets the caller leave the embedded Redis server (close) only after the service is done with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    settings = Settings.from_env()
    uvicorn.run(
        "liveblog.webapp.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="liveblog.httpserver:LimitedHttpToolsProtocol",  # httptools with a head cap and read timeouts
        backlog=settings.backlog,
        log_level=args.log_level,
        access_log=args.access_log,
        timeout_graceful_shutdown=5,
        # X-Forwarded-For/-Proto only from LIVEBLOG_TRUSTED_PROXIES; the client is then the rightmost
        # address in X-Forwarded-For that is not a trusted proxy (uvicorn's proxy-headers middleware).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    public_url = _public_url(settings, args.host, args.port)
    with redis_url(settings) as url:
        say(f"serving on http://{args.host}:{args.port} ({args.workers} worker(s), "
            f"dispatcher {'off' if args.no_dispatcher else 'on'})")
        return _run_server(url, args, public_url)


def cmd_demo(args: argparse.Namespace) -> int:
    from liveblog.seed import load_demo

    settings = Settings.from_env()
    public_url = _public_url(settings, args.host, args.port)

    async def prepare(store, tokens):  # type: ignore[no-untyped-def]
        slug, created = await load_demo(store)
        token = await demo_token(tokens, settings.data_dir)
        return slug, created, token

    with redis_url(settings) as url:
        slug, created, token = asyncio.run(_with_store(url, prepare))
        say("demo blog loaded from seeds/" if created else "demo blog already loaded; left as it is")
        print(f"\n  Live page:     {public_url}/blogs/{slug}")
        print(f"  Editor page:   {public_url}/editor/{slug}")
        print(f"  Editor token:  {token}")
        print("\n  Post an update:")
        print(f"    curl -X POST {public_url}/api/blogs/{slug}/entries -H 'Authorization: Bearer {token}' \\")
        print("         -H 'Content-Type: application/json' -d '{\"body\": \"aggiornamento\"}'\n", flush=True)
        return _run_server(url, args, public_url)


async def demo_token(tokens: Tokens, data_dir: Path) -> str:
    """The demo editor token: the one kept in ``DEMO_TOKEN_FILE`` (0600) while Redis still knows it,
    else a new one, written there. Redis holds only its hash, as for every token; the file lock keeps
    two demos starting at once from making two."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    fd = os.open(data_dir / DEMO_TOKEN_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="ascii") as kept:
        fcntl.flock(kept, fcntl.LOCK_EX)
        token = kept.read().strip()
        if token and await tokens.lookup(token) is not None:
            return token
        _record, token = await tokens.create("demo editor", "editor")
        kept.seek(0)
        kept.truncate()
        kept.write(token + "\n")
        return token


def cmd_worker(args: argparse.Namespace) -> int:
    from liveblog.webhooks import health
    from liveblog.webhooks.dispatcher import Dispatcher

    settings = Settings.from_env()
    if args.check:
        if settings.worker_health_file is None:
            say("error: --check needs LIVEBLOG_WORKER_HEALTH_FILE (the file a running worker keeps fresh)")
            return 2
        healthy, why = health.check(settings.worker_health_file)
        say(why)
        return 0 if healthy else 1

    async def run(url: str) -> None:
        from liveblog.drafts import Drafts
        from liveblog.redisconn import connect, is_cluster
        from liveblog.scheduler import Scheduler
        from liveblog.store import Store

        cluster = await is_cluster(url, timeout=settings.redis_timeout_seconds)
        dispatcher = Dispatcher(Settings.from_env({**os.environ, "LIVEBLOG_REDIS_URL": url}),
                                public_url=settings.public_url or "http://127.0.0.1:8000", cluster=cluster)
        redis = connect(url, cluster, timeout=settings.redis_timeout_seconds)
        scheduler = Scheduler(Drafts(Store(redis, stream_maxlen=settings.stream_maxlen)),
                              interval=settings.scheduler_interval_seconds)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await dispatcher.start()
        scheduler.start()
        beating = None
        if settings.worker_health_file is not None:
            beating = asyncio.create_task(health.beat(settings.worker_health_file, lambda: dispatcher.last_progress))
        say("webhook dispatcher running; Ctrl-C to stop")
        await stop.wait()
        if beating is not None:
            beating.cancel()
        say("stopping: finishing deliveries in flight")
        await scheduler.stop()
        await dispatcher.stop()
        await redis.aclose()

    with redis_url(settings) as url:
        asyncio.run(run(url))
    return 0


def _token_command(work):  # type: ignore[no-untyped-def]
    """Run ``work(tokens)`` against the configured Redis; a ValueError is a usage error (exit 2)."""
    settings = Settings.from_env()

    async def run(_store, tokens):  # type: ignore[no-untyped-def]
        return await work(tokens)

    with redis_url(settings, watch=False) as url:
        return asyncio.run(_with_store(url, run))


def cmd_token_create(args: argparse.Namespace) -> int:
    try:
        record, token = _token_command(lambda tokens: tokens.create(args.name, args.role, args.blog,
                                                                    author_id=args.author))
    except ValueError as exc:
        say(str(exc))
        return 2
    scope = f" for {', '.join(record['blogs'])}" if record["blogs"] else ""
    signed = f", signing as author {record['author_id']}" if record.get("author_id") else ""
    say(f"created {record['role']} token '{record['name']}' ({record['id']}){scope}{signed}; "
        "it is shown only once:")
    print(token)
    return 0


def cmd_token_list(_args: argparse.Namespace) -> int:
    async def listing(tokens: Tokens) -> tuple[list[dict[str, Any]], dict[str, str]]:
        names = {author["id"]: author["name"] for author in await tokens.authors.list()}
        return await tokens.list(), names

    records, author_names = _token_command(listing)
    for record in records:
        blogs = ",".join(record["blogs"]) or "*"
        author = record.get("author_id")
        if author in author_names:
            author = f"{author} ({author_names[author]})"
        print("\t".join((record["id"], record["name"], record["role"], blogs, record.get("created_at") or "-",
                         record.get("last_used_at") or "-", author or "-")))
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    if not _token_command(lambda tokens: tokens.revoke(args.id)):
        say(f"no token '{args.id}' (see `liveblog token list`)")
        return 1
    say(f"revoked {args.id}: it is refused from now on")
    return 0


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="web worker processes (default 1)")
    parser.add_argument("--no-dispatcher", action="store_true", help="do not run the webhook dispatcher here")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true", help="log every request")


def environment_help(command: str) -> str:
    """The environment variables ``command`` reads, from their declarations in ``Settings``."""
    lines = ["environment (an empty value means the default; a bad value exits with code 2):"]
    for variable in Settings.variables():
        if command in variable.used_by:
            lines.append(f"  {variable.name}")
            lines += textwrap.wrap(f"{variable.doc} (default: {variable.default})", width=78,
                                   initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def _command(group: argparse._SubParsersAction, name: str, *, summary: str, description: str,
             environment: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` has a description and the environment variables it reads
    (``environment``: the command name variables declare in ``used_by``)."""
    return group.add_parser(name, help=summary, description=textwrap.fill(" ".join(description.split()), 78),
                            epilog=environment_help(environment),
                            formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveblog", description="Live-blog feed publisher.")
    parser.add_argument("--version", action="version", version=f"liveblog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = _command(commands, "serve", summary="run the web service (and the webhook dispatcher)", description="""
        Run the web service: the JSON API, the live and editor pages, feeds, server-sent event streams
        and, unless --no-dispatcher, the webhook dispatcher. With LIVEBLOG_REDIS_URL unset it uses the
        embedded Redis server of LIVEBLOG_DATA_DIR (started if none runs, restarted if it dies, shared
        with every other liveblog process on that directory).""", environment="serve")
    _server_flags(serve)
    serve.set_defaults(func=cmd_serve)

    demo = _command(commands, "demo", summary="load the demo live blog from seeds/ and serve it", description="""
        Load the demo live blog from seeds/ (once: an existing copy is left as it is), print its page
        URL and an editor token, then serve exactly like `liveblog serve`.""", environment="demo")
    _server_flags(demo)
    demo.set_defaults(func=cmd_demo)

    worker = _command(commands, "worker", summary="run the webhook dispatcher alone", description="""
        Run the webhook dispatcher alone: it delivers every change to the partner subscriptions as
        signed Standard Webhooks and retries failures on the retry schedule. Run any number of workers,
        on any machine, against one Redis; each delivery is claimed by one of them.""", environment="worker")
    worker.add_argument("--check", action="store_true",
                        help="health check: exit 0 if the worker using LIVEBLOG_WORKER_HEALTH_FILE made progress "
                             "in the last 30 s, else 1")
    worker.set_defaults(func=cmd_worker)

    token = _command(commands, "token", summary="manage bearer tokens", description="""
        Manage the bearer tokens of the HTTP API (editor or admin). Tokens are stored hashed in Redis;
        the secret is printed only when a token is created.""", environment="token")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = _command(token_commands, "create", summary="print a new bearer token", description="""
        Create a bearer token and print it on standard output, the only time it is shown. An editor
        token writes entries; an admin token also manages blogs, webhooks and tokens.""", environment="token")
    create.add_argument("--name", required=True, help="who or what the token is for")
    create.add_argument("--role", default="editor", choices=["editor", "admin"])
    create.add_argument("--blog", action="append", default=[], metavar="SLUG",
                        help="limit an editor token to this blog (repeatable; default: every blog)")
    create.add_argument("--author", metavar="AUTHOR_ID",
                        help="tie the token to an author profile (its id, from GET /api/authors): its posts "
                             "that name no author are signed as that author, with the profile; an unknown "
                             "id exits with code 2")
    create.set_defaults(func=cmd_token_create)
    listing = _command(token_commands, "list",
                       summary="one line per token: id, name, role, blogs, created, last used, author",
                       description="""
        List every bearer token, one line each, tab-separated: its public id, name, role, the blogs it is
        limited to (* for all), when it was created and last used (- for never), and the author profile
        it signs as (id and name; - for none). The secrets are never shown (only their hashes are
        stored).""", environment="token")
    listing.set_defaults(func=cmd_token_list)
    revoke = _command(token_commands, "revoke", summary="revoke a token: it is refused at once", description="""
        Revoke a bearer token by its public id (as `liveblog token list` shows it). Every web process
        refuses it from the next request on; nothing else is changed.""", environment="token")
    revoke.add_argument("id", help="the token's id (tok_…), as `liveblog token list` shows it")
    revoke.set_defaults(func=cmd_token_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        Settings.from_env()  # every command refuses bad settings before it starts anything
    except SettingError as exc:
        say(f"error: {exc}")
        return 2
    before, after = capacity.raise_open_file_limit()
    if after != before:
        say(f"open-file limit raised from {before} to {after}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (EmbeddedRedisError, ValueError) as exc:
        say(f"error: {exc}")
        return 2
    except RedisError as exc:
        say(f"error: cannot use Redis at {_redacted(os.environ.get('LIVEBLOG_REDIS_URL', ''))}: {exc}")
        return 3
    except KeyboardInterrupt:
        return 130
