"""Prometheus metrics of the operator, served on --metrics-port (default 8081) at /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable

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


def track_phases(phases: Callable[[], Iterable[str]]) -> None:
    """The per-phase gauge, counted from every release's current phase at each scrape."""
    for name in PHASES:
        RELEASES.labels(phase=name).set_function(
            lambda name=name: sum(1 for phase in phases() if phase == name)
        )


def count_event(reason: str) -> None:
    """Decisions are counted as their events are recorded: one place says what happened."""
    if reason == "RevisionCreated":
        REVISIONS_CREATED.inc()
    elif reason == "DriftCorrected":
        DRIFT_CORRECTIONS.inc()
    elif reason == "RolledBack":
        ROLLBACKS.labels(kind="manual").inc()
    elif reason == "AutoRolledBack":
        ROLLBACKS.labels(kind="automatic").inc()


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")
