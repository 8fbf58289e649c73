"""Pod Security `restricted`, enforced by the real API server's admission: the Pods a release
runs and the operator's own Pods are admitted; a privileged Pod in the same namespace is not
(so the enforcement the first two pass is really on)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from testapp_dev import LiveCluster, OperatorProcess, manifest, unique, wait_until

from tests.chaos.helpers import wait_ready

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture
def restricted_namespace(cluster: LiveCluster) -> Iterator[str]:
    name = f"psa-{uuid.uuid4().hex[:8]}"
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_from(template: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"].get("labels", {}),
        },
        "spec": template["spec"],
    }


def admitted(cluster: LiveCluster, pod: dict[str, Any]) -> tuple[bool, str]:
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    return result.returncode == 0, result.stderr


def test_a_privileged_pod_is_refused_so_enforcement_is_on(
    cluster: LiveCluster, restricted_namespace: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": restricted_namespace},
        "spec": {
            "containers": [
                {"name": "x", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }

    ok, stderr = admitted(cluster, pod)

    assert not ok
    assert 'violates PodSecurity "restricted:latest"' in stderr
    assert "privileged" in stderr


def test_the_pods_of_a_release_pass_restricted(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("psa")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest(name, tag="1.0.0", replicas=2)))
    try:
        wait_ready(cluster, name, "1.0.0")
        namespace = cluster.get("namespace", name)
        assert RESTRICTED.items() <= namespace["metadata"]["labels"].items()
        pods = cluster.get("pods", "-n", name, "-l", "app=test-app")["items"]
        assert len(pods) == 2, "both replicas were admitted"
        template = cluster.get("deployment", name, "-n", name)["spec"]["template"]
        ok, stderr = admitted(cluster, pod_from(template, name, "probe"))
        assert ok, stderr
        assert "PodSecurity" not in stderr
    finally:
        cluster.kubectl("delete", "tar", name, "--ignore-not-found", "--wait=false", check=False)


def test_the_operator_pods_pass_restricted(cluster: LiveCluster, restricted_namespace: str) -> None:
    rendered = cluster.kubectl("kustomize", str(REPO / "k8s" / "operator")).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["metadata"]["namespace"] = restricted_namespace
    service_account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": deployment["spec"]["template"]["spec"]["serviceAccountName"],
            "namespace": restricted_namespace,
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(service_account))

    ok, stderr = admitted(
        cluster, pod_from(deployment["spec"]["template"], restricted_namespace, "probe")
    )
    assert ok, stderr
    applied = cluster.apply(deployment)
    assert applied.returncode == 0, applied.stderr
    assert "PodSecurity" not in applied.stderr
    # The ReplicaSet's Pods are admitted (kwok runs them as fake Pods).
    replicas = deployment["spec"]["replicas"]
    wait_until(
        lambda: (
            len(
                cluster.get(
                    "pods",
                    "-n",
                    restricted_namespace,
                    "-l",
                    "app.kubernetes.io/name=testapp-operator",
                )["items"]
            )
            == replicas
        ),
        timeout=60,
        what=f"{replicas} operator Pods admitted",
    )
