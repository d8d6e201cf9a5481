"""Settings, read once from the environment (see CONTRACT.md for the public variables).

Every ``LIVEBLOG_*`` variable is read through one of the small parsers below, which validate it
(type, range, scheme, ...) and raise :class:`SettingError` naming the variable; the CLI turns that
into a one-line message and exit code 2 before anything starts. Each read also declares the variable
(a line of documentation and the commands that use it), which is where ``liveblog CMD --help`` takes
its list of environment variables from. To add a setting: a field on :class:`Settings` and one parser
call in :meth:`Settings.from_env` with its bounds, e.g.
``_number(env, "LIVEBLOG_X", 10, minimum=1, doc="...", used_by=WEB)``.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from liveblog.redisconn import SENTINEL_SCHEME, parse_sentinel_url

Num = TypeVar("Num", int, float)

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
REDIS_SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)
PUBLIC_SCHEMES = ("http", "https")

# Which commands use a variable (``liveblog CMD --help`` lists it); "token" covers its subcommands.
EVERY = ("serve", "demo", "worker", "token")
WEB = ("serve", "demo")
DELIVERY = ("serve", "demo", "worker")


class SettingError(ValueError):
    """A ``LIVEBLOG_*`` variable with a value that cannot be used."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name} {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True)
class Variable:
    """One environment variable as ``--help`` shows it."""

    name: str
    doc: str
    used_by: tuple[str, ...]
    default: str


class _Env:
    """The environment as ``from_env`` reads it: each read also declares the variable."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.declared: dict[str, Variable] = {}

    def read(self, name: str, default: object, doc: str, used_by: tuple[str, ...]) -> str | None:
        """The stripped value, or None when unset or empty (the default applies)."""
        shown = "unset" if default is None else ",".join(map(_plain, default)) if isinstance(default, tuple) \
            else _plain(default)
        self.declared[name] = Variable(name, doc, used_by, shown)
        raw = self.values.get(name)
        return raw.strip() if raw is not None and raw.strip() else None


def _plain(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(env: _Env, name: str, default: Num, *, minimum: Num | None = None, maximum: Num | None = None,
            above: Num | None = None, doc: str, used_by: tuple[str, ...]) -> Num:
    """A number of the type of ``default``, within ``minimum``/``maximum`` (inclusive) and ``above``
    (exclusive)."""
    raw = env.read(name, default, doc, used_by)
    if raw is None:
        return default
    kind = "an integer" if isinstance(default, int) else "a number"
    try:
        value = type(default)(raw)
    except ValueError:
        raise SettingError(name, f"must be {kind}, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingError(name, f"must be a finite number, got {raw!r}")
    bounds = [f"greater than {_plain(above)}" if above is not None else "",
              f"at least {_plain(minimum)}" if minimum is not None else "",
              f"at most {_plain(maximum)}" if maximum is not None else ""]
    if ((above is not None and value <= above) or (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        raise SettingError(name, f"must be {kind} {' and '.join(b for b in bounds if b)}, got {raw!r}")
    return value


def _seconds_list(env: _Env, name: str, default: tuple[float, ...], *, doc: str,
                  used_by: tuple[str, ...]) -> tuple[float, ...]:
    """Comma-separated non-negative seconds, at least one."""
    raw = env.read(name, default, doc, used_by)
    if raw is None:
        return default
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingError(name, f"must be comma-separated seconds, got {raw!r}") from None
    if not values:
        raise SettingError(name, "must list at least one delay in seconds")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise SettingError(name, f"must hold finite, non-negative seconds, got {raw!r}")
    return values


def _networks(env: _Env, name: str, *, doc: str, used_by: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated CIDRs (IPv4 or IPv6; host bits allowed), normalised."""
    raw = env.read(name, None, doc, used_by)
    if raw is None:
        return ()
    networks = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingError(name, f"must be comma-separated CIDRs (e.g. 10.0.0.0/8), got {part!r}") from None
    return tuple(networks)


def _url(env: _Env, name: str, *, schemes: tuple[str, ...], doc: str, used_by: tuple[str, ...]) -> str | None:
    """An absolute URL with one of ``schemes`` and a host (a path for ``unix://``)."""
    raw = env.read(name, None, doc, used_by)
    if raw is None:
        return None
    try:
        parts = urlsplit(raw)
        single_host = "," not in parts.netloc
        if single_host:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise SettingError(name, f"is not a valid URL: {raw!r}") from None
    if parts.scheme not in schemes:
        raise SettingError(name, f"must start with {' or '.join(s + '://' for s in schemes)}, got {raw!r}")
    if parts.scheme == "unix" and not parts.path:
        raise SettingError(name, f"must name a socket path (unix:///path/to/redis.sock), got {raw!r}")
    if parts.scheme != "unix" and not (parts.hostname if single_host else parts.netloc):
        raise SettingError(name, f"must name a host, got {raw!r}")
    if parts.scheme == SENTINEL_SCHEME:
        try:
            parse_sentinel_url(raw)
        except ValueError as exc:
            raise SettingError(name, f"{exc}: the form is redis+sentinel://host:port[,host:port...]/SERVICE[/DB]"
                               ) from None
    if parts.scheme in PUBLIC_SCHEMES:
        if parts.query or parts.fragment:
            raise SettingError(name, f"must be a base URL without query or fragment, got {raw!r}")
        return raw.rstrip("/")
    return raw


def _text(env: _Env, name: str, *, min_length: int = 1, doc: str, used_by: tuple[str, ...]) -> str | None:
    """A word: no whitespace inside, at least ``min_length`` characters."""
    raw = env.read(name, None, doc, used_by)
    if raw is None:
        return None
    if len(raw) < min_length or any(c.isspace() or not c.isprintable() for c in raw):
        raise SettingError(name, f"must be at least {min_length} printable characters without spaces")
    return raw


def _label(env: _Env, name: str, *, max_length: int, doc: str, used_by: tuple[str, ...]) -> str | None:
    """Free text shown to people (a name): printable, spaces allowed, at most ``max_length``."""
    raw = env.read(name, None, doc, used_by)
    if raw is None:
        return None
    if not raw.strip() or len(raw) > max_length or not raw.isprintable():
        raise SettingError(name, f"must be 1-{max_length} printable characters")
    return raw.strip()


def _directory(env: _Env, name: str, default: Path, *, doc: str, used_by: tuple[str, ...]) -> Path:
    """A directory path; it may not exist yet, but must not be something else."""
    raw = env.read(name, default, doc, used_by)
    path = default if raw is None else Path(raw)
    if path.exists() and not path.is_dir():
        raise SettingError(name, f"must be a directory, and {str(path)!r} is not one")
    return path


def _file(env: _Env, name: str, *, doc: str, used_by: tuple[str, ...]) -> Path | None:
    """An optional file path; it may not exist yet, but must not be a directory."""
    raw = env.read(name, None, doc, used_by)
    if raw is None:
        return None
    if Path(raw).is_dir():
        raise SettingError(name, f"must be a file, and {raw!r} is a directory")
    return Path(raw)


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know; web processes and workers share one definition."""

    redis_url: str | None = None
    # Longest wait for Redis per step of a command (free connection, connect, answer): a stalled Redis
    # fails the request with 503 after about this long. Commands are never retried automatically.
    redis_timeout_seconds: float = 5.0
    # Durability: each change waits (WAIT) for this many replicas before it is acknowledged; past the
    # wait timeout the answer is 503 although the change is in the primary (see Store.NotDurable).
    redis_min_replicas: int = 0
    redis_wait_timeout_ms: int = 1000
    data_dir: Path = Path(".liveblog")
    admin_token: str | None = None
    public_url: str | None = None
    # Change log: events kept per blog stream. Entries' current state is kept apart, so trimming
    # only limits how far back a reader can resume (older IDs get a `reset`).
    stream_maxlen: int = 10_000
    # Request limits.
    max_body_bytes: int = 256 * 1024
    # SSE: events buffered per reader before it is cut off, heartbeat, browser retry hint.
    client_buffer: int = 256
    heartbeat_seconds: float = 15.0
    send_timeout_seconds: float = 10.0
    # Limits (CONTRACT "Operating safely"): request head and read timeouts, connections and streams
    # per process (0: derived from the open-file limit, see capacity.py), streams per client, the
    # longest catch-up served (beyond it: `reset`) and the bytes of frames it gathers per write, the
    # browsers' reconnect delay (random in the range, per stream, to spread a reconnect herd) and the
    # listen backlog.
    max_header_bytes: int = 65536
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    max_connections: int = 0
    sse_max_streams: int = 0
    sse_max_per_client: int = 64
    trusted_proxies: tuple[str, ...] = ()
    sse_max_catch_up: int = 500
    sse_catch_up_bytes: int = 256 * 1024
    retry_min_ms: int = 500
    retry_max_ms: int = 3000
    backlog: int = 4096
    # Updates an open live page keeps rendered during a long session (older ones: "load older").
    page_max_entries: int = 200
    # How often an open page of an ended blog checks whether it was reopened (it holds no stream).
    page_ended_poll_seconds: float = 60.0
    # Webhooks.
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    allowed_networks: tuple[str, ...] = ()
    webhook_timeout_seconds: float = 15.0
    webhook_disable_after_seconds: float = 5 * 24 * 3600.0
    webhook_concurrency: int = 256
    webhook_concurrency_per_subscription: int = 4
    webhook_claim_idle_seconds: float = 60.0
    # Attempts kept per subscription in its delivery log, and bytes of a response body read/kept.
    webhook_log_size: int = 200
    webhook_response_cap_bytes: int = 4096
    idempotency_ttl_seconds: int = 24 * 3600
    # Reader counts: each process publishes its counts this often (they expire after two intervals).
    readers_interval_seconds: float = 5.0
    # How often each web process and worker publishes the scheduled entries that are due.
    scheduler_interval_seconds: float = 0.5
    # JSON-LD `publisher` (an Organization with a logo), which Google's Top Stories expects.
    publisher_name: str | None = None
    publisher_logo: str | None = None
    # `liveblog worker` keeps this file fresh while it makes progress (`liveblog worker --check`).
    worker_health_file: Path | None = None
    # Uploaded photos: where they live (shared storage behind several machines), size and pixel caps.
    media_dir: Path = Path(".liveblog/media")
    max_media_bytes: int = 20 * 1024 * 1024
    media_max_pixels: int = 50_000_000
    media_workers: int = 1
    # Milliseconds the decoders stay stopped after the hub last published changes (0: never stopped).
    media_yield_ms: int = 200
    # A token's last_used_at is written at most once per this many seconds per process.
    token_touch_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings, validated; raises :class:`SettingError` for the first bad variable."""
        return cls._read(_Env(os.environ if env is None else env))

    @classmethod
    def variables(cls) -> list[Variable]:
        """Every variable ``from_env`` reads, in order, with its documentation."""
        env = _Env({})
        cls._read(env)
        return list(env.declared.values())

    @classmethod
    def _read(cls, env: _Env) -> Settings:
        retry_min = _number(env, "LIVEBLOG_SSE_RETRY_MIN", 500, minimum=0, maximum=3_600_000, used_by=WEB,
                            doc="least reconnect delay (ms) sent to a browser; each stream gets a random one")
        data_dir = _directory(env, "LIVEBLOG_DATA_DIR", Path(".liveblog"), used_by=EVERY,
                              doc="where the embedded Redis server keeps its data (private, 0700)")
        return cls(
            redis_url=_url(env, "LIVEBLOG_REDIS_URL", schemes=REDIS_SCHEMES, used_by=EVERY,
                           doc="Redis to use; unset: the embedded server in the data dir"),
            redis_timeout_seconds=_number(env, "LIVEBLOG_REDIS_TIMEOUT", 5.0, above=0.0, maximum=300.0, used_by=EVERY,
                                          doc="seconds a command may wait for Redis before the request fails (503)"),
            redis_min_replicas=_number(env, "LIVEBLOG_REDIS_MIN_REPLICAS", 0, minimum=0, maximum=100, used_by=WEB,
                                       doc="replicas that must have each change (WAIT) before it is acknowledged"),
            redis_wait_timeout_ms=_number(env, "LIVEBLOG_REDIS_WAIT_TIMEOUT_MS", 1000, minimum=1, maximum=60_000,
                                          used_by=WEB, doc="ms a change waits for LIVEBLOG_REDIS_MIN_REPLICAS; "
                                          "past it the answer is 503 (the change is kept, not known durable)"),
            data_dir=data_dir,
            admin_token=_text(env, "LIVEBLOG_ADMIN_TOKEN", min_length=16, used_by=WEB,
                              doc="a bootstrap admin bearer token"),
            public_url=_url(env, "LIVEBLOG_PUBLIC_URL", schemes=PUBLIC_SCHEMES, used_by=DELIVERY,
                            doc="absolute base URL of links in pages, feeds and webhooks; unset: http://HOST:PORT"),
            scheduler_interval_seconds=_number(env, "LIVEBLOG_SCHEDULER_INTERVAL", 0.5, above=0.0, maximum=2.0,
                                               used_by=DELIVERY, doc="seconds between two looks for due "
                                               "scheduled entries (each is published within this of its time)"),
            readers_interval_seconds=_number(env, "LIVEBLOG_READERS_INTERVAL", 5.0, above=0.0, maximum=5.0,
                                             used_by=WEB, doc="seconds between a process's reader-count "
                                             "updates (counts are at most twice this old)"),
            publisher_name=_label(env, "LIVEBLOG_PUBLISHER_NAME", max_length=200, used_by=WEB,
                                  doc="the publisher named in the pages' JSON-LD (e.g. the newspaper)"),
            publisher_logo=_url(env, "LIVEBLOG_PUBLISHER_LOGO", schemes=PUBLIC_SCHEMES, used_by=WEB,
                                doc="absolute URL of the publisher's logo for the JSON-LD"),
            stream_maxlen=_number(env, "LIVEBLOG_STREAM_MAXLEN", 10_000, minimum=1, used_by=WEB,
                                  doc="changes kept per blog for resuming readers"),
            max_body_bytes=_number(env, "LIVEBLOG_MAX_BODY_BYTES", 256 * 1024, minimum=1, used_by=WEB,
                                   doc="largest accepted JSON request body, in bytes"),
            client_buffer=_number(env, "LIVEBLOG_SSE_CLIENT_BUFFER", 256, minimum=1, used_by=WEB,
                                  doc="events queued per event-stream reader before it is cut off"),
            heartbeat_seconds=_number(env, "LIVEBLOG_SSE_HEARTBEAT", 15.0, above=0.0, maximum=3600.0, used_by=WEB,
                                      doc="most seconds between heartbeats on an event stream"),
            send_timeout_seconds=_number(env, "LIVEBLOG_SSE_SEND_TIMEOUT", 10.0, above=0.0, maximum=3600.0,
                                         used_by=WEB, doc="seconds an event stream's connection may stay full "
                                         "(the reader stopped reading) before the reader is cut off"),
            max_header_bytes=_number(env, "LIVEBLOG_MAX_HEADER_BYTES", 65536, minimum=256, used_by=WEB,
                                     doc="largest request head (request line and headers); larger gets 431"),
            header_timeout_seconds=_number(env, "LIVEBLOG_HEADER_TIMEOUT", 10.0, above=0.0, used_by=WEB,
                                           doc="seconds a client has to send a whole request head"),
            body_timeout_seconds=_number(env, "LIVEBLOG_BODY_TIMEOUT", 10.0, above=0.0, used_by=WEB,
                                         doc="seconds a request body may send nothing before it is disconnected"),
            max_connections=_number(env, "LIVEBLOG_MAX_CONNECTIONS", 0, minimum=0, used_by=WEB,
                                    doc="open connections per web process, past which requests get 503 "
                                        "(0: the open-file limit minus a reserve)"),
            sse_max_streams=_number(env, "LIVEBLOG_SSE_MAX_STREAMS", 0, minimum=0, used_by=WEB,
                                    doc="event streams per web process, past which new ones get 503 "
                                        "(0: the connection cap minus a headroom for other requests)"),
            sse_max_per_client=_number(env, "LIVEBLOG_SSE_MAX_PER_CLIENT", 64, minimum=1, used_by=WEB,
                                       doc="event streams per client address and web process; one more gets 429"),
            trusted_proxies=_networks(env, "LIVEBLOG_TRUSTED_PROXIES", used_by=WEB,
                                      doc="CIDRs of proxies whose X-Forwarded-For names the client"),
            sse_max_catch_up=_number(env, "LIVEBLOG_SSE_MAX_CATCH_UP", 500, minimum=1, used_by=WEB,
                                     doc="changes a resuming reader may be behind; further gets `reset`"),
            sse_catch_up_bytes=_number(env, "LIVEBLOG_SSE_CATCH_UP_BYTES", 256 * 1024, minimum=1, used_by=WEB,
                                       doc="bytes of catch-up frames gathered before they are written to a "
                                           "resuming reader (bounds a resume's memory)"),
            retry_min_ms=retry_min,
            retry_max_ms=_number(env, "LIVEBLOG_SSE_RETRY_MAX", max(3000, retry_min), minimum=retry_min,
                                 maximum=3_600_000, used_by=WEB,
                                 doc="greatest reconnect delay (ms) sent to a browser"),
            backlog=_number(env, "LIVEBLOG_BACKLOG", 4096, minimum=1, maximum=65535, used_by=WEB,
                            doc="listen backlog of the web server's socket (capped by net.core.somaxconn)"),
            page_max_entries=_number(env, "LIVEBLOG_PAGE_MAX_ENTRIES", 200, minimum=1, maximum=100_000, used_by=WEB,
                                     doc="updates an open live page keeps rendered; older ones are dropped and "
                                         "reloaded by 'load older'"),
            page_ended_poll_seconds=_number(env, "LIVEBLOG_PAGE_ENDED_POLL", 60.0, above=0.0, used_by=WEB,
                                            doc="seconds between an ended blog's open pages checking for a reopening"),
            retry_schedule=_seconds_list(env, "LIVEBLOG_WEBHOOK_RETRY_SCHEDULE", DEFAULT_RETRY_SCHEDULE,
                                         used_by=DELIVERY, doc="seconds between webhook attempts, comma-separated"),
            allowed_networks=_networks(env, "LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS", used_by=DELIVERY,
                                       doc="CIDRs webhook targets may resolve to although private/loopback"),
            webhook_timeout_seconds=_number(env, "LIVEBLOG_WEBHOOK_TIMEOUT", 15.0, above=0.0, used_by=DELIVERY,
                                            doc="seconds a webhook receiver has to answer"),
            webhook_disable_after_seconds=_number(env, "LIVEBLOG_WEBHOOK_DISABLE_AFTER", 5 * 24 * 3600.0,
                                                  above=0.0, used_by=DELIVERY,
                                                  doc="seconds of nothing but failures before a subscription "
                                                      "is disabled"),
            webhook_claim_idle_seconds=_number(env, "LIVEBLOG_WEBHOOK_CLAIM_IDLE", 60.0, above=0.0,
                                               used_by=DELIVERY,
                                               doc="seconds before a dead dispatcher's deliveries are taken over"),
            webhook_concurrency=_number(env, "LIVEBLOG_WEBHOOK_CONCURRENCY", 256, minimum=1, used_by=DELIVERY,
                                        doc="webhook deliveries in flight per dispatcher"),
            webhook_concurrency_per_subscription=_number(
                env, "LIVEBLOG_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", 4, minimum=1, used_by=DELIVERY,
                doc="webhook deliveries in flight per subscription, across all dispatchers"),
            webhook_log_size=_number(env, "LIVEBLOG_WEBHOOK_LOG_SIZE", 200, minimum=1, used_by=DELIVERY,
                                     doc="delivery attempts kept per subscription"),
            worker_health_file=_file(env, "LIVEBLOG_WORKER_HEALTH_FILE", used_by=("worker",),
                                     doc="a file `liveblog worker` keeps fresh while it makes progress "
                                         "(`worker --check` reads it)"),
            media_dir=_directory(env, "LIVEBLOG_MEDIA_DIR", data_dir / "media", used_by=WEB,
                                 doc="where uploaded photos are stored (shared storage across machines)"),
            max_media_bytes=_number(env, "LIVEBLOG_MAX_MEDIA_BYTES", 20 * 1024 * 1024, minimum=1, used_by=WEB,
                                    doc="largest photo upload, in bytes"),
            media_max_pixels=_number(env, "LIVEBLOG_MEDIA_MAX_PIXELS", 50_000_000, minimum=1, used_by=WEB,
                                     doc="largest photo in pixels (all frames of an animation together)"),
            media_workers=_number(env, "LIVEBLOG_MEDIA_WORKERS", 1, minimum=1, used_by=WEB,
                                  doc="processes per web process that decode and resize uploads"),
            media_yield_ms=_number(env, "LIVEBLOG_MEDIA_YIELD_MS", 200, minimum=0, maximum=10_000, used_by=WEB,
                                   doc="ms the photo decoding processes stay stopped after this process writes "
                                       "changes to its readers (0: never stopped)"),
            token_touch_seconds=_number(env, "LIVEBLOG_TOKEN_TOUCH_INTERVAL", 60.0, minimum=0.0, used_by=WEB,
                                        doc="seconds between two writes of a token's last_used_at by one process"),
        )

