"""Request metrics for Prometheus, as a plain falcon middleware, and the /metrics exposition.

Plain falcon for the same reason as accesslog.py: hug (app.py) and the bare-falcon benchmark app
share it. Labels are the method, the route *template* and the status code, never the raw path:
a client cannot create series by asking for new URLs. Every path no route matches shares one
route label, and a method outside HTTP's own is counted as `other`.

Under gunicorn each worker is a process with its own counters; gunicorn.conf.py then sets
PROMETHEUS_MULTIPROC_DIR before any worker starts, prometheus_client keeps every worker's
values in files there, and /metrics adds them up.
"""

import os
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED_ROUTE = "unmatched"
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
LABELS = ("method", "route", "status")

REQUESTS = Counter("http_requests_total", "HTTP requests answered", LABELS)
LATENCY = Histogram(
    "http_request_duration_seconds", "Time from the request to its response", LABELS
)


def labels_for(method: str, uri_template: str | None, status: Any) -> dict[str, str]:
    """Bounded label values: a known method or `other`, the matched template or `unmatched`."""
    return {
        "method": method if method in METHODS else "other",
        "route": uri_template or UNMATCHED_ROUTE,
        "status": str(status).split(" ", 1)[0],
    }


class RequestMetrics:
    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock

    def process_request(self, req: Any, resp: Any) -> None:
        req.context.metrics_started = self._clock()

    def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool) -> None:
        started = getattr(req.context, "metrics_started", None)
        elapsed = 0.0 if started is None else self._clock() - started
        labels = labels_for(req.method, req.uri_template, resp.status)
        REQUESTS.labels(**labels).inc()
        LATENCY.labels(**labels).observe(elapsed)


def exposition() -> bytes:
    """Every metric in the text format (CONTENT_TYPE), summed over the workers under gunicorn."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    return generate_latest(registry)
