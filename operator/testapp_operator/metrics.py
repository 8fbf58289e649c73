"""Prometheus metrics of the operator, served on --metrics-port (default 8081) at /metrics."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
ANALYSES = Counter(
    "testapp_analysis",
    "Canary analysis measurements, by result (Successful, Failed, Inconclusive, Error, NoData).",
    ["result"],
)


BUILD_INFO = Gauge("testapp_build_info", "The operator's build (always 1).", ["version", "python"])
INFO_LABELS = ("env", "tag", "revision", "phase", "pinned")
Facts = Mapping[str, str]


def _version() -> str:
    try:
        return version("testapp-operator")
    except PackageNotFoundError:  # the image runs the package from /app, not installed
        return "unknown"


BUILD_INFO.labels(version=_version(), python=platform.python_version()).set(1)


class ReleaseInfo(Collector):
    """testapp_release_info: one series per release this replica reconciles, read at scrape
    time. A standby replica reconciles nothing and so exports none, which no alert takes for a
    zero."""

    def __init__(self) -> None:
        self.facts: Callable[[], Iterable[tuple[str, Facts]]] = lambda: ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "testapp_release_info",
            "What runs in each release (always 1; the labels are the facts).",
            labels=["release", *INFO_LABELS],
        )
        for name, facts in self.facts():
            family.add_metric([name, *(facts[label] for label in INFO_LABELS)], 1)
        yield family


RELEASE_INFO = ReleaseInfo()
REGISTRY.register(RELEASE_INFO)


class CanaryWeight(Collector):
    """testapp_canary_weight: the percent of a release's replicas its canary has, for each
    release of this replica with a canary under way (none once it ended)."""

    def __init__(self) -> None:
        self.weights: Callable[[], Iterable[tuple[str, int]]] = lambda: ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "testapp_canary_weight", "The canary's weight, percent.", labels=["release"]
        )
        for name, weight in self.weights():
            family.add_metric([name], weight)
        yield family


CANARY_WEIGHT = CanaryWeight()
REGISTRY.register(CANARY_WEIGHT)


def release_facts(body: Mapping[str, Any]) -> dict[str, str] | None:
    """The labels of a release's testapp_release_info, from its status (None: nothing yet)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if not status.get("phase"):
        return None
    return {
        "env": str(spec.get("env", "")),
        "tag": str(status.get("tag", "")),
        "revision": str(status.get("revision", "")),
        "phase": str(status["phase"]),
        "pinned": str(bool(status.get("pinned"))).lower(),
    }


def track_releases(facts: Callable[[], Iterable[tuple[str, Facts]]]) -> None:
    RELEASE_INFO.facts = facts


def track_canaries(weights: Callable[[], Iterable[tuple[str, int]]]) -> None:
    CANARY_WEIGHT.weights = weights


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
