"""The operator against the real control plane: what a release produces, revisions, pins,
scaling, drift, restarts and deletion. Each test owns its releases (unique names)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from testapp_dev import IMAGE, LiveCluster, OperatorProcess, manifest, unique, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def release(cluster: LiveCluster, name: str) -> dict[str, Any]:
    return cluster.get("tar", name)


def patch(cluster: LiveCluster, name: str, patch_body: dict[str, Any]) -> None:
    cluster.kubectl("patch", "tar", name, "--type=merge", "-p", json.dumps(patch_body))


def wait_ready(cluster: LiveCluster, name: str, revision: int, timeout: float = 60) -> dict:
    """Wait until the release reports Ready at `revision` for its current generation."""

    def ready() -> dict | None:
        body = release(cluster, name)
        status = body.get("status") or {}
        current = status.get("observedGeneration") == body["metadata"]["generation"]
        if current and status.get("phase") == "Ready" and status.get("revision") == revision:
            return body
        return None

    return wait_until(ready, timeout=timeout, what=f"{name} Ready at revision {revision}")


def running_image(cluster: LiveCluster, name: str) -> str:
    deployment = cluster.get("deployment", name, "-n", name)
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def condition(body: dict, kind: str) -> dict:
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


def events(cluster: LiveCluster, name: str) -> list[dict]:
    items = cluster.get(
        "events", "-n", "default", "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return sorted(items, key=lambda e: e["metadata"]["creationTimestamp"])


def create(cluster: LiveCluster, name: str, **spec: Any) -> dict:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest(name, **spec)))
    return wait_ready(cluster, name, revision=1)


def pinned_to_first_of_two(cluster: LiveCluster, name: str) -> dict:
    """A release that ran 1.0.0 (revision 1), then 2.0.0 (revision 2), now pinned to 1."""
    create(cluster, name, tag="1.0.0")
    patch(cluster, name, {"spec": {"tag": "2.0.0"}})
    wait_ready(cluster, name, revision=2)
    patch(cluster, name, {"spec": {"revision": 1}})
    return wait_ready(cluster, name, revision=1)


def test_applying_an_overlay_produces_namespace_deployment_and_service(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    rendered = subprocess.run(
        ["make", "-s", "manifests", "ENV=stg", "TAG=1.0.0", f"IMAGE={IMAGE}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    cluster.kubectl("apply", "--server-side", "-f", "-", input=rendered.stdout)

    body = wait_ready(cluster, "test-app-stg", revision=1)

    namespace = cluster.get("namespace", "test-app-stg")
    deployment = cluster.get("deployment", "test-app-stg", "-n", "test-app-stg")
    service = cluster.get("service", "test-app-stg", "-n", "test-app-stg")
    pods = cluster.get("pods", "-n", "test-app-stg", "-l", "app=test-app,env=stg")["items"]
    expected = {
        "app": "test-app",
        "env": "stg",
        "app.kubernetes.io/name": "test-app",
        "app.kubernetes.io/instance": "test-app-stg",
        "app.kubernetes.io/managed-by": "testapp-operator",
    }
    versioned = {**expected, "app.kubernetes.io/version": body["spec"]["tag"]}
    template = deployment["spec"]["template"]
    for labels in (namespace["metadata"]["labels"], service["metadata"]["labels"]):
        assert expected.items() <= labels.items()
        assert "app.kubernetes.io/version" not in labels
    for labels in (deployment["metadata"]["labels"], template["metadata"]["labels"]):
        assert versioned.items() <= labels.items()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "test-app", "env": "stg"}}
    assert deployment["spec"]["replicas"] == 2
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Running" for p in pods)
    for obj in (namespace, deployment, service):
        owner = obj["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == (
            "TestAppRelease",
            "test-app-stg",
            True,
        )
    status = body["status"]
    assert status["readyReplicas"] == 2
    assert status["image"] == f"{body['spec']['image']}:{body['spec']['tag']}"
    assert condition(body, "Ready")["status"] == "True"
    assert [h["revision"] for h in status["history"]] == [1]
    assert not body["metadata"].get("finalizers")
    # Kopf keeps no state on the release: no progress or last-handled-configuration annotations.
    assert not any(
        "kopf" in key or "last-handled" in key for key in body["metadata"].get("annotations", {})
    )


def test_patching_the_tag_as_ci_would_deploys_revision_2(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0")

    # The cause comes with the change it explains, in one request (a cause set apart from a
    # change is dropped by the admission policy: docs/history.md).
    cause = {"testapp.dev/change-cause": "pipeline 42 commit abc123 by dev"}
    patch(cluster, name, {"metadata": {"annotations": cause}, "spec": {"tag": "1.1.0"}})
    body = wait_ready(cluster, name, revision=2)

    assert running_image(cluster, name) == f"{IMAGE}:1.1.0"
    history = body["status"]["history"]
    assert [(h["revision"], h["tag"], h["outcome"]) for h in history] == [
        (2, "1.1.0", "Ready"),
        (1, "1.0.0", "Ready"),
    ]
    assert history[0]["changeCause"] == "pipeline 42 commit abc123 by dev"
    revisions = cluster.get("controllerrevisions", "-n", name, "-l", f"testapp.dev/release={name}")
    stored = {r["revision"]: r["data"]["tag"] for r in revisions["items"]}
    assert stored == {1: "1.0.0", 2: "1.1.0"}
    assert "RevisionCreated" in [e["reason"] for e in events(cluster, name)]


def test_setting_revision_pins_the_old_tag_and_later_tags_wait(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()

    pinned = pinned_to_first_of_two(cluster, name)

    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"
    assert pinned["status"]["pinned"] is True
    assert condition(pinned, "Pinned")["status"] == "True"

    patch(cluster, name, {"spec": {"tag": "3.0.0"}})
    held = wait_ready(cluster, name, revision=1)

    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"
    assert held["spec"]["tag"] == "3.0.0"
    message = condition(held, "Pinned")["message"]
    assert message == "pinned to revision 1; clear spec.revision to roll forward"
    assert [h["revision"] for h in held["status"]["history"]] == [2, 1]
    warnings = [e for e in events(cluster, name) if e["type"] == "Warning"]
    assert any(e["reason"] == "Pinned" and e["message"] == message for e in warnings)

    patch(cluster, name, {"spec": {"revision": None}})
    forward = wait_ready(cluster, name, revision=3)

    assert running_image(cluster, name) == f"{IMAGE}:3.0.0"
    assert forward["status"]["pinned"] is False
    assert [h["tag"] for h in forward["status"]["history"]] == ["3.0.0", "2.0.0", "1.0.0"]


def test_variables_reach_the_pods_and_a_rollback_restores_them(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0", variables=[{"name": "LOG_LEVEL", "value": "info"}])

    patch(cluster, name, {"spec": {"variables": [{"name": "LOG_LEVEL", "value": "debug"}]}})
    wait_ready(cluster, name, revision=2)
    debug = cluster.get("deployment", name, "-n", name)["spec"]["template"]["spec"]
    patch(cluster, name, {"spec": {"revision": 1}})
    wait_ready(cluster, name, revision=1)
    info = cluster.get("deployment", name, "-n", name)["spec"]["template"]["spec"]

    assert {"name": "LOG_LEVEL", "value": "debug"} in debug["containers"][0]["env"]
    assert {"name": "LOG_LEVEL", "value": "info"} in info["containers"][0]["env"]
    created = [e["message"] for e in events(cluster, name) if e["reason"] == "RevisionCreated"]
    assert any("variables changed" in message for message in created), created


def test_kubectl_scale_is_honoured_while_pinned_and_creates_no_revision(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    pinned_to_first_of_two(cluster, name)

    cluster.kubectl("scale", "tar", name, "--replicas=3")

    def scaled() -> bool:
        status = release(cluster, name)["status"]
        return status.get("readyReplicas") == 3 and status.get("phase") == "Ready"

    wait_until(scaled, what="3 ready replicas")
    body = release(cluster, name)
    assert cluster.get("deployment", name, "-n", name)["spec"]["replicas"] == 3
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"
    assert [h["revision"] for h in body["status"]["history"]] == [2, 1]
    raw = cluster.kubectl("get", "--raw", f"/apis/testapp.dev/v1/testappreleases/{name}/scale")
    scale = json.loads(raw.stdout)
    assert scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "app=test-app,env=dev"


def test_a_missing_revision_reports_revision_not_found_and_changes_nothing(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0")
    deployment_before = cluster.get("deployment", name, "-n", name)

    patch(cluster, name, {"spec": {"revision": 7, "tag": "9.9.9"}})

    def reported() -> dict | None:
        body = release(cluster, name)
        pinned = condition(body, "Pinned")
        return body if pinned["reason"] == "RevisionNotFound" else None

    body = wait_until(reported, what="RevisionNotFound")
    assert condition(body, "Pinned")["message"] == (
        "revision 7 not found; existing revisions: 1; nothing changes"
    )
    assert body["status"]["phase"] == "Degraded"
    assert body["status"]["revision"] == 1
    deployment_after = cluster.get("deployment", name, "-n", name)
    assert deployment_after["metadata"]["generation"] == deployment_before["metadata"]["generation"]
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"
    assert "RevisionNotFound" in [
        e["reason"] for e in events(cluster, name) if e["type"] == "Warning"
    ]


def test_manual_drift_on_the_deployment_is_restored(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0", replicas=2)

    cluster.kubectl("set", "image", "-n", name, f"deployment/{name}", "app=attacker/evil:1")
    cluster.kubectl("scale", "-n", name, f"deployment/{name}", "--replicas=5")

    def restored() -> bool:
        deployment = cluster.get("deployment", name, "-n", name)
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image == f"{IMAGE}:1.0.0" and deployment["spec"]["replicas"] == 2

    wait_until(restored, timeout=15, what="the Deployment restored")
    assert "DriftCorrected" in [e["reason"] for e in events(cluster, name)]
    assert [h["revision"] for h in release(cluster, name)["status"]["history"]] == [1]


def test_a_deleted_service_is_recreated(cluster: LiveCluster, operator: OperatorProcess) -> None:
    name = unique()
    create(cluster, name)

    cluster.kubectl("delete", "service", name, "-n", name)

    def back() -> bool:
        result = cluster.kubectl("get", "service", name, "-n", name, check=False)
        return result.returncode == 0

    wait_until(back, timeout=15, what="the Service recreated")


def test_an_operator_restart_creates_no_revision_and_writes_nothing(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    names = [unique() for _ in range(3)]
    for name in names:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest(name)))
    for name in names:
        wait_ready(cluster, name, revision=1)
    # Let the rollouts' last status updates settle before counting.
    wait_until(lambda: _quiet(cluster, seconds=3), timeout=30, what="no operator writes for 3 s")

    mark = cluster.audit.mark()
    operator.restart()
    wait_until(lambda: _quiet(cluster, seconds=5), timeout=30, what="a quiet operator")

    writes = [
        w for w in cluster.audit.writes_since(mark) if any(n in w["requestURI"] for n in names)
    ]
    assert writes == [], [f"{w['verb']} {w['requestURI']}" for w in writes]
    for name in names:
        assert [h["revision"] for h in release(cluster, name)["status"]["history"]] == [1]


def _quiet(cluster: LiveCluster, seconds: float) -> bool:
    """True when the operator made no write during the last `seconds` (a measured window)."""
    mark = cluster.audit.mark()
    time.sleep(seconds)
    return not cluster.audit.writes_since(mark)


def test_deleting_a_release_garbage_collects_everything(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name)

    cluster.kubectl("delete", "tar", name)

    def gone() -> bool:
        return cluster.kubectl("get", "namespace", name, check=False).returncode != 0

    wait_until(gone, timeout=90, what=f"namespace {name} garbage-collected")


def test_a_write_rbac_forbids_reaches_the_release_and_clears_once_allowed(
    cluster: LiveCluster, operator: OperatorProcess, request: pytest.FixtureRequest
) -> None:
    """The operator's ClusterRole loses `patch` on Deployments: a tag change is refused (403),
    and the release says so (Ready=False, ReconcileError, the API's message) with one Warning
    event, instead of Progressing with a stale message; RBAC back, it rolls out and clears."""
    if request.config.getoption("--operator-identity") != "serviceaccount":
        pytest.skip("the operator runs as admin here; make test runs it as its ServiceAccount too")
    name = unique()
    create(cluster, name, tag="1.0.0")
    role = cluster.get("clusterrole", "testapp-operator")
    rules = [
        {**rule, "verbs": [v for v in rule["verbs"] if v not in ("create", "patch")]}
        if rule.get("resources") == ["deployments"]
        else rule
        for rule in role["rules"]
    ]
    revoked = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    revoked |= {"metadata": {"name": "testapp-operator"}, "rules": rules}
    try:
        cluster.kubectl("replace", "-f", "-", input=json.dumps(revoked))
        patch(cluster, name, {"spec": {"tag": "2.0.0"}})

        def refused() -> dict | None:
            ready = condition(release(cluster, name), "Ready")
            return ready if ready["reason"] == "ReconcileError" else None

        ready = wait_until(refused, timeout=60, what=f"{name} Ready=False ReconcileError")
        assert ready["status"] == "False"
        assert "HTTP 403 Forbidden" in ready["message"]
        assert "deployments" in ready["message"]
        time.sleep(3)  # retries with backoff meanwhile: still one event for the one error
        warnings = [e for e in events(cluster, name) if e["reason"] == "ReconcileError"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
        assert warnings[0].get("count", 1) == 1
    finally:
        cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / "rbac.yaml"))
    wait_ready(cluster, name, revision=2, timeout=120)
    assert condition(release(cluster, name), "Ready")["reason"] == "RolloutComplete"
