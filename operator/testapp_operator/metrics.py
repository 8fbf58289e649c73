"""Prometheus metrics of the operator, served on --metrics-port (default 8081) at /metrics."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PHASES = ("Progressing", "Ready", "Degraded", "Paused")

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


RELEASE_INFO = Gauge(
    "testapp_release_info",
    "What runs in each release this replica reconciles (always 1; the labels are the facts).",
    ["release", "env", "tag", "revision", "phase", "pinned"],
)
BUILD_INFO = Gauge("testapp_build_info", "The operator's build (always 1).", ["version", "python"])


def _version() -> str:
    try:
        return version("testapp-operator")
    except PackageNotFoundError:  # the image runs the package from /app, not installed
        return "unknown"


BUILD_INFO.labels(version=_version(), python=platform.python_version()).set(1)


INFO_LABELS = ("env", "tag", "revision", "phase", "pinned")


def publish_release(
    name: str, before: Mapping[str, str] | None, after: Mapping[str, str] | None
) -> None:
    """Move the release's testapp_release_info series from the `before` facts to `after` (None:
    none). A standby replica reconciles nothing and so exports no series, which no alert takes
    for a zero; the series is replaced in place, never cleared, so no scrape misses it."""
    if before is not None and before != after:
        RELEASE_INFO.remove(name, *(before[label] for label in INFO_LABELS))
    if after is not None:
        RELEASE_INFO.labels(name, *(after[label] for label in INFO_LABELS)).set(1)


def publish_phases(phases: Mapping[str, str]) -> None:
    """Set the per-phase gauge from each release's current phase."""
    for name in PHASES:
        RELEASES.labels(phase=name).set(sum(1 for p in phases.values() if p == name))


def serve(port: int) -> None:
    start_http_server(port, addr="0.0.0.0")
