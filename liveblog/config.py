"""Settings, read once from the environment (see CONTRACT.md for the public variables)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

Num = TypeVar("Num", int, float)

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def _floats(raw: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"LIVEBLOG_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds: {raw!r}") from exc
    if any(v < 0 for v in values):
        raise ValueError("LIVEBLOG_WEBHOOK_RETRY_SCHEDULE must not contain negative delays")
    return values


def _number(env: dict[str, str], name: str, default: Num) -> Num:
    """``env[name]`` parsed as the type of ``default``; unset or empty gives ``default``."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return type(default)(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be {'an integer' if isinstance(default, int) else 'a number'}, "
                         f"got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything a process needs to know; web processes and workers share one definition."""

    redis_url: str | None = None
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
    retry_ms: int = 2000
    send_timeout_seconds: float = 10.0
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
    # `liveblog worker` keeps this file fresh while it makes progress (`liveblog worker --check`).
    worker_health_file: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        schedule = env.get("LIVEBLOG_WEBHOOK_RETRY_SCHEDULE")
        networks = env.get("LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS", "")
        return cls(
            redis_url=env.get("LIVEBLOG_REDIS_URL") or None,
            data_dir=Path(env.get("LIVEBLOG_DATA_DIR") or ".liveblog"),
            admin_token=env.get("LIVEBLOG_ADMIN_TOKEN") or None,
            public_url=(env.get("LIVEBLOG_PUBLIC_URL") or "").rstrip("/") or None,
            stream_maxlen=_number(env, "LIVEBLOG_STREAM_MAXLEN", 10_000),
            max_body_bytes=_number(env, "LIVEBLOG_MAX_BODY_BYTES", 256 * 1024),
            client_buffer=_number(env, "LIVEBLOG_SSE_CLIENT_BUFFER", 256),
            heartbeat_seconds=_number(env, "LIVEBLOG_SSE_HEARTBEAT", 15.0),
            retry_schedule=_floats(schedule) if schedule else DEFAULT_RETRY_SCHEDULE,
            allowed_networks=tuple(n.strip() for n in networks.split(",") if n.strip()),
            webhook_timeout_seconds=_number(env, "LIVEBLOG_WEBHOOK_TIMEOUT", 15.0),
            webhook_disable_after_seconds=_number(env, "LIVEBLOG_WEBHOOK_DISABLE_AFTER", 5 * 24 * 3600.0),
            webhook_claim_idle_seconds=_number(env, "LIVEBLOG_WEBHOOK_CLAIM_IDLE", 60.0),
            webhook_concurrency=_number(env, "LIVEBLOG_WEBHOOK_CONCURRENCY", 256),
            webhook_concurrency_per_subscription=_number(env, "LIVEBLOG_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION", 4),
            webhook_log_size=_number(env, "LIVEBLOG_WEBHOOK_LOG_SIZE", 200),
            worker_health_file=Path(env["LIVEBLOG_WORKER_HEALTH_FILE"]) if env.get("LIVEBLOG_WORKER_HEALTH_FILE")
            else None,
        )
