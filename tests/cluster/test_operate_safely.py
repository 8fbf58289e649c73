"""Operating releases safely: automatic rollback, pause, events, metrics, JSON logs and
high availability, against the real control plane (kwok keeps Pods of a `broken` tag un-Ready)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from testapp_dev import IMAGE, LiveCluster, OperatorProcess, manifest, unique, wait_until

from tests.cluster.test_operator import (
    condition,
    create,
    events,
    patch,
    pinned_to_first_of_two,
    release,
    running_image,
    wait_ready,
)

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
DEADLINE = 10  # progressDeadlineSeconds for releases that are meant to fail fast


def wait_phase(cluster: LiveCluster, name: str, phase: str, timeout: float = 60) -> dict:
    def reached() -> dict | None:
        body = release(cluster, name)
        status = body.get("status") or {}
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        return body if current and status.get("phase") == phase else None

    return wait_until(reached, timeout=timeout, what=f"{name} {phase}")


def test_a_stalled_rollout_rolls_back_to_the_newest_ready_revision(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0", progressDeadlineSeconds=DEADLINE)

    patch(cluster, name, {"spec": {"tag": "broken-1"}})
    degraded = wait_phase(cluster, name, "Degraded", timeout=DEADLINE + 40)

    assert degraded["status"]["revision"] == 1
    assert [(h["revision"], h["outcome"]) for h in degraded["status"]["history"]] == [
        (2, "Failed"),
        (1, "Ready"),
    ]
    assert condition(degraded, "Degraded")["reason"] == "RolledBack"
    assert "revision 2 failed" in condition(degraded, "Degraded")["message"]
    wait_until(
        lambda: running_image(cluster, name) == f"{IMAGE}:1.0.0", what="revision 1 running again"
    )
    warnings = [e for e in events(cluster, name) if e["type"] == "Warning"]
    assert "AutoRolledBack" in [e["reason"] for e in warnings]
    stored = cluster.get("controllerrevision", f"{name}-2", "-n", name)
    assert stored["metadata"]["annotations"]["testapp.dev/outcome"] == "Failed"

    # The failed spec is not retried: a restart of the operator and another deadline change nothing.
    operator.restart()
    patch(cluster, name, {"spec": {"replicas": 2}})
    scaled = wait_phase(cluster, name, "Degraded")
    assert scaled["status"]["revision"] == 1
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"
    assert [h["revision"] for h in scaled["status"]["history"]] == [2, 1]

    patch(cluster, name, {"spec": {"tag": "1.1.0"}})
    fixed = wait_ready(cluster, name, revision=3)
    assert condition(fixed, "Degraded")["status"] == "False"
    assert running_image(cluster, name) == f"{IMAGE}:1.1.0"


def test_a_first_revision_that_fails_stays_degraded(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    body = manifest(name, tag="broken-1", progressDeadlineSeconds=DEADLINE)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

    degraded = wait_phase(cluster, name, "Degraded", timeout=DEADLINE + 40)

    assert degraded["status"]["revision"] == 1
    assert degraded["status"]["history"][0]["outcome"] == "Failed"
    assert condition(degraded, "Degraded")["reason"] == "RevisionFailed"
    assert running_image(cluster, name) == f"{IMAGE}:broken-1"


def test_a_paused_release_changes_nothing_until_unpaused(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0")
    generation = cluster.get("deployment", name, "-n", name)["metadata"]["generation"]

    patch(cluster, name, {"spec": {"paused": True}})
    wait_phase(cluster, name, "Paused")
    patch(cluster, name, {"spec": {"tag": "2.0.0", "replicas": 3}})
    paused = wait_phase(cluster, name, "Paused")
    cluster.kubectl("delete", "service", name, "-n", name)

    assert paused["status"]["paused"] is True
    assert [h["revision"] for h in paused["status"]["history"]] == [1]
    deployment = cluster.get("deployment", name, "-n", name)
    assert deployment["metadata"]["generation"] == generation
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"

    patch(cluster, name, {"spec": {"paused": False}})
    resumed = wait_ready(cluster, name, revision=2)

    assert running_image(cluster, name) == f"{IMAGE}:2.0.0"
    assert resumed["status"]["readyReplicas"] == 3
    assert cluster.kubectl("get", "service", name, "-n", name, check=False).returncode == 0


def test_history_is_pruned_to_the_limit_with_an_event(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0", revisionHistoryLimit=2)

    for number, tag in enumerate(("2.0.0", "3.0.0", "4.0.0"), start=2):
        patch(cluster, name, {"spec": {"tag": tag}})
        body = wait_ready(cluster, name, revision=number)

    assert [h["revision"] for h in body["status"]["history"]] == [4, 3]
    stored = cluster.get("controllerrevisions", "-n", name)["items"]
    assert sorted(r["revision"] for r in stored) == [3, 4]
    pruned = [e["message"] for e in events(cluster, name) if e["reason"] == "Pruned"]
    assert sorted(pruned) == ["revision 1 pruned", "revision 2 pruned"]


def test_every_decision_is_an_event_a_json_log_line_and_a_metric(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    pinned_to_first_of_two(cluster, name)
    patch(cluster, name, {"spec": {"revision": None}})
    wait_ready(cluster, name, revision=2)
    cluster.kubectl("set", "image", "-n", name, f"deployment/{name}", "app=x/y:1")
    wait_until(
        lambda: "DriftCorrected" in [e["reason"] for e in events(cluster, name)],
        timeout=15,
        what="DriftCorrected",
    )
    patch(cluster, name, {"spec": {"revision": 9}})
    wait_phase(cluster, name, "Degraded")

    reasons = {e["reason"] for e in events(cluster, name)}
    assert {
        "RevisionCreated",
        "Pinned",
        "RolledBack",
        "Unpinned",
        "DriftCorrected",
        "RevisionNotFound",
    } <= reasons

    lines = [json.loads(line) for line in operator.log_path.read_text().splitlines() if "{" in line]
    ours = [line for line in lines if line.get("release") == name]
    assert {"Created", "Pinned", "RolledForward", "RevisionNotFound"} <= {
        line.get("reason") for line in ours
    }
    assert all("revision" in line and "message" in line for line in ours)

    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        metrics = response.read().decode()
    for family in (
        'testapp_reconciles_total{result="ok"}',
        "testapp_reconcile_duration_seconds_bucket",
        'testapp_releases{phase="Degraded"}',
        "testapp_revisions_created_total",
        'testapp_rollbacks_total{kind="manual"}',
        "testapp_drift_corrections_total",
    ):
        assert family in metrics, family


def test_two_replicas_with_peering_keep_one_active_and_fail_over(
    cluster: LiveCluster, operator: OperatorProcess, tmp_path: Path
) -> None:
    operator.stop()
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / "peering-crd.yaml"))
    cluster.kubectl(
        "wait",
        "crd/clusterkopfpeerings.kopf.dev",
        "--for=condition=Established",
        "--timeout=30s",
    )
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / "peering.yaml"))
    active = OperatorProcess(
        operator.kubeconfig, tmp_path / "active.log", "--priority=200", standalone=False
    )
    standby = OperatorProcess(
        operator.kubeconfig, tmp_path / "standby.log", "--priority=100", standalone=False
    )
    try:
        active.start()
        standby.start()
        name = unique()
        create(cluster, name, tag="1.0.0")
        assert f'"release": "{name}"' in active.log_path.read_text()
        assert f'"release": "{name}"' not in standby.log_path.read_text()

        active.stop(signal.SIGKILL)
        killed = time.monotonic()
        patch(cluster, name, {"spec": {"tag": "2.0.0"}})
        wait_ready(cluster, name, revision=2, timeout=30)

        assert time.monotonic() - killed < 30
        assert f'"release": "{name}"' in standby.log_path.read_text()
    finally:
        active.stop()
        standby.stop()
        operator.start()
