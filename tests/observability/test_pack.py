"""k8s/observability: the alert rules and the dashboard parse as PromQL (promql-parser, the Rust
parser Prometheus-compatible tools use) and only name metrics the operator exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY
from testapp_operator import metrics

PACK = Path(__file__).resolve().parents[2] / "k8s" / "observability"
METRIC_RE = re.compile(r"\b(testapp_[a-z_]+)")


def exported() -> set[str]:
    """Every sample name the operator's metrics give (a counter's *_total, a histogram's
    *_bucket/_sum/_count), whether or not a sample exists yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PACK / "prometheusrule.yaml").read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads((PACK / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_rules_alert_on_degraded_rollbacks_and_reconcile_errors() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) == {
        "TestAppReleaseDegraded",
        "TestAppAutomaticRollback",
        "TestAppReconcileErrors",
    }
    assert by_name["TestAppReleaseDegraded"]["for"] == "5m"


@pytest.mark.parametrize("expr", [rule["expr"] for rule in rules()])
def test_each_rule_parses_and_names_only_exported_metrics(expr: str) -> None:
    promql_parser.parse(expr)
    assert set(METRIC_RE.findall(expr)) <= exported()


@pytest.mark.parametrize("expr", [rule["expr"] for rule in rules()])
def test_no_rule_fires_on_the_standby_replicas_zeros(expr: str) -> None:
    # Every rule aggregates across replicas and compares to a positive threshold: a standby's
    # missing or zero series can neither fire an alert nor hide the active replica's.
    parsed = promql_parser.parse(expr)
    assert isinstance(parsed, promql_parser.BinaryExpr)
    assert isinstance(parsed.lhs, promql_parser.AggregateExpr)
    zero_fires = {">": parsed.rhs.val < 0, "==": parsed.rhs.val == 0, ">=": parsed.rhs.val <= 0}
    assert zero_fires[str(parsed.op).strip()] is False
    assert "absent" not in expr


@pytest.mark.parametrize("expr", dashboard_queries())
def test_each_dashboard_query_parses_and_names_only_exported_metrics(expr: str) -> None:
    promql_parser.parse(expr.replace("$__rate_interval", "5m"))
    assert set(METRIC_RE.findall(expr)) <= exported()


def test_the_dashboard_shows_what_runs_where_and_the_build() -> None:
    queries = " ".join(dashboard_queries())
    assert "testapp_release_info" in queries
    assert "testapp_build_info" in queries


def test_the_component_builds() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(PACK)], capture_output=True, text=True, check=True
    ).stdout
    kinds = [document["kind"] for document in yaml.safe_load_all(built)]
    assert sorted(kinds) == ["ConfigMap", "PodMonitor", "PrometheusRule"]


def test_release_info_is_read_from_the_releases_at_scrape_time() -> None:
    body = {
        "spec": {"env": "dev"},
        "status": {"phase": "Ready", "tag": "v2", "revision": 2, "pinned": True},
    }
    facts = metrics.release_facts(body)
    metrics.track_releases(lambda: [("test-app-dev", facts)])

    series = [
        sample.labels
        for family in REGISTRY.collect()
        if family.name == "testapp_release_info"
        for sample in family.samples
    ]
    metrics.track_releases(lambda: ())
    assert series == [
        {
            "release": "test-app-dev",
            "env": "dev",
            "tag": "v2",
            "revision": "2",
            "phase": "Ready",
            "pinned": "true",
        }
    ]
    assert metrics.release_facts({"spec": {"env": "dev"}}) is None  # no status yet: no series
