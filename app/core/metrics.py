"""Prometheus metrics of the HTTP layer and the database pool."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)

REQUESTS = Counter(
    "fastship_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "fastship_http_request_duration_seconds",
    "Time from request start to the end of the response, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge("fastship_http_requests_in_flight", "Requests being served.")
DB_POOL_IN_USE = Gauge(
    "fastship_db_pool_connections_in_use", "Database connections checked out of the pool."
)
LOGIN_FAILURES = Counter("fastship_login_failures_total", "Failed login attempts.", ["reason"])
BACKGROUND_FAILURES = Counter(
    "fastship_background_task_failures_total", "Background tasks that raised.", ["task"]
)


# The labelled children of the two per-request metrics, looked up once per label set:
# prometheus_client's labels() validates and locks on every call. Route labels are
# templates (or "<unmatched>"), so the sets stay few.
_request_counters: dict[tuple[str, str, int], Counter] = {}
_latency_histograms: dict[tuple[str, str], Histogram] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    counter = _request_counters.get((method, route, status))
    if counter is None:
        counter = _request_counters[method, route, status] = REQUESTS.labels(
            method, route, str(status)
        )
    histogram = _latency_histograms.get((method, route))
    if histogram is None:
        histogram = _latency_histograms[method, route] = LATENCY.labels(method, route)
    counter.inc()
    histogram.observe(seconds)


def track_pool(connections_in_use: Callable[[], int]) -> None:
    DB_POOL_IN_USE.set_function(lambda: float(connections_in_use()))


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


# Set by serve_separately(): /metrics then answers on its own port only, so that a route to
# the API (an Ingress or HTTPRoute on "/") never publishes it.
_separate_port: int | None = None


def serve_separately(host: str, port: int) -> None:
    """Serve the metrics on ``host``:``port`` from a thread of this process."""
    global _separate_port
    start_http_server(port, addr=host)
    _separate_port = port


def on_api_port() -> bool:
    """Whether the API's own /metrics route serves the metrics."""
    return _separate_port is None
