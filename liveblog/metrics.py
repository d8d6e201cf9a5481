"""Prometheus metrics (exposed at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SSE_CLIENTS = Gauge("liveblog_sse_clients", "Readers connected to this process's event streams")
SSE_EVENTS_SENT = Counter("liveblog_sse_events_sent_total", "Change events queued to readers")
SSE_CUT_OFF = Counter("liveblog_sse_clients_cut_off_total", "Readers disconnected for falling behind")
CHANGES_PUBLISHED = Counter("liveblog_changes_published_total", "Changes written by editors", ["type"])
WEBHOOK_DELIVERIES = Counter(
    "liveblog_webhook_attempts_total", "Webhook delivery attempts", ["outcome"]
)
WEBHOOK_LATENCY = Histogram(
    "liveblog_webhook_attempt_seconds", "Duration of webhook delivery attempts",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
