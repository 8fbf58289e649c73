"""Prometheus metrics of the operator, served on --metrics-port (default 8081) at /metrics."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from testapp_operator.status import PHASES

RECONCILES = Counter(
    "testapp_reconciles", "Reconciles of TestAppReleases, by result (ok or error).", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "testapp_reconcile_duration_seconds",
    "Time one reconcile of a TestAppRelease takes, API calls included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RELEASES = Gauge("testapp_releases", "TestAppReleases by phase.", ["phase"])
REVISIONS_CREATED = Counter("testapp_revisions_created", "Revisions recorded.")
ROLLBACKS = Counter(
    "testapp_rollbacks", "Rollbacks carried out, by kind (manual: a pin; automatic).", ["kind"]
)
DRIFT_CORRECTIONS = Counter(
    "testapp_drift_corrections", "Reconciles that restored a changed or deleted child object."
)


def publish_phases(phases: Mapping[str, str]) -> None:
    """Set the per-phase gauge from each release's current phase."""
    for name in PHASES:
        RELEASES.labels(phase=name).set(sum(1 for p in phases.values() if p == name))


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")
