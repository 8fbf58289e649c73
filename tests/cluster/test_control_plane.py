"""The local control plane is a real Kubernetes: controllers, scheduler, admission, RBAC, CRDs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, localcluster, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "example/app:1"}]},
            },
        },
    }


def test_a_deployment_becomes_available_with_ready_pods_on_the_fake_node(
    cluster: LiveCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment("web", 2)))

    cluster.kubectl(
        "wait", "-n", namespace, "deployment/web", "--for=condition=Available", "--timeout=60s"
    )
    pods = cluster.get("pods", "-n", namespace, "-l", "app=web")["items"]

    assert len(pods) == 2
    assert {pod["spec"]["nodeName"] for pod in pods} == {"kwok-node-0"}
    for pod in pods:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"]
        assert ready == "True"


def test_deleting_a_deployment_garbage_collects_its_replicaset_and_pods(
    cluster: LiveCluster, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment("gc", 2)))
    cluster.kubectl(
        "wait", "-n", namespace, "deployment/gc", "--for=condition=Available", "--timeout=60s"
    )

    cluster.kubectl("delete", "-n", namespace, "deployment/gc")

    def nothing_left() -> bool:
        leftovers = cluster.get("replicasets,pods", "-n", namespace, "-l", "app=gc")["items"]
        return not leftovers

    wait_until(nothing_left, timeout=60, what="ReplicaSet and Pods to be garbage-collected")


def test_a_service_account_without_rbac_is_denied(cluster: LiveCluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    user = f"system:serviceaccount:{namespace}:nobody"

    can_i = cluster.kubectl(
        "auth", "can-i", "list", "pods", "-n", namespace, "--as", user, check=False
    )
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    # A real request authenticated by the token alone, not the admin certificate.
    request = cluster.kubectl(
        "--kubeconfig=/dev/null",
        f"--server={cluster.server}",
        f"--certificate-authority={cluster.state_dir}/pki/ca.crt",
        f"--token={token}",
        "get",
        "pods",
        "-n",
        namespace,
        check=False,
    )

    assert can_i.stdout.strip() == "no"
    assert request.returncode != 0
    assert "Forbidden" in request.stderr
    assert f'User "{user}" cannot list resource "pods"' in request.stderr


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.smoke.testapp.dev"},
    "spec": {
        "group": "smoke.testapp.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                    "color": {"type": "string"},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(namespace: str, **spec: object) -> dict:
    return {
        "apiVersion": "smoke.testapp.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture(scope="module")
def widget_crd(cluster: LiveCluster) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl(
        "wait", "crd/widgets.smoke.testapp.dev", "--for=condition=Established", "--timeout=30s"
    )


def test_a_crd_schema_rejects_an_invalid_object(
    cluster: LiveCluster, namespace: str, widget_crd: None
) -> None:
    result = cluster.apply(widget(namespace, size=42))

    assert result.returncode != 0
    assert "spec.size" in result.stderr
    assert "should be less than or equal to 10" in result.stderr


def test_server_side_apply_reports_a_conflict_between_field_managers(
    cluster: LiveCluster, namespace: str, widget_crd: None
) -> None:
    body = json.dumps(widget(namespace, size=1, color="red"))
    first = cluster.kubectl(
        "apply", "--server-side", "--field-manager=alice", "-f", "-", input=body
    )
    changed = json.dumps(widget(namespace, size=2, color="blue"))

    conflict = cluster.kubectl(
        "apply", "--server-side", "--field-manager=bob", "-f", "-", input=changed, check=False
    )

    assert "serverside-applied" in first.stdout
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower()
    assert 'conflicts with "alice"' in conflict.stderr
    assert ".spec.size" in conflict.stderr
    stored = cluster.get("widget", "w", "-n", namespace)
    assert stored["spec"] == {"size": 1, "color": "red"}


def test_an_interrupted_test_run_leaves_no_process_or_port_behind(tmp_path: Path) -> None:
    """A pytest that is SIGKILLed mid-run takes its control plane with it (PR_SET_PDEATHSIG)."""
    script = (
        "import os, signal\n"
        "from testapp_dev import localcluster\n"
        "from pathlib import Path\n"
        f"with localcluster.running(Path({str(tmp_path)!r}), log=lambda line: None):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )

    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=180)
    state = json.loads((tmp_path / "state.json").read_text())

    assert run.returncode == -signal.SIGKILL
    wait_until(lambda: not _group_alive(state["pgid"]), timeout=30, what="every component to exit")
    for port in state["ports"].values():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_up_restarts_exactly_what_died_and_keeps_what_the_cluster_holds(
    tmp_path: Path,
) -> None:
    """`make cluster-up` on a running cluster trusts nothing: the dead components (etcd among
    them: its data stays) and the registry are started again, from another session too, and
    `down` still stops every one of them."""
    env = {**os.environ, "TESTAPP_CLUSTER_DIR": str(tmp_path), "TESTAPP_REAL_NODE": "0"}
    launcher = [sys.executable, str(REPO / "hack" / "cluster" / "localcluster.py")]

    def cluster_up() -> str:
        # setsid: a later `make` runs in a session of its own, as from another terminal.
        result = subprocess.run(
            ["setsid", "--wait", *launcher, "up"], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={tmp_path / 'kubeconfig'}", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        cluster_up()
        assert kubectl("create", "namespace", "kept").returncode == 0
        cluster = localcluster.read_state(tmp_path)
        assert cluster is not None
        pids = localcluster.component_pids(cluster)
        registry = json.loads((tmp_path / "registry.json").read_text())["pid"]
        for pid in (pids["etcd"], pids["kube-scheduler"], registry):
            os.kill(pid, signal.SIGKILL)

        said = cluster_up()

        assert "etcd was not running: starting it again" in said
        assert "kube-scheduler was not running: starting it again" in said
        assert "registry was not answering: starting it again" in said
        for alive in ("kube-apiserver", "kube-controller-manager", "kwok"):
            assert f"{alive} was not running" not in said
        repaired = localcluster.read_state(tmp_path)
        assert repaired is not None
        now = localcluster.component_pids(repaired)
        assert now["kube-apiserver"] == pids["kube-apiserver"]
        assert set(localcluster.COMPONENTS) <= set(now)
        assert kubectl("get", "namespace", "kept").returncode == 0
        address = localcluster.registry_address(tmp_path)
        assert address is not None and localcluster.registry_answers(address)
        assert "every component answers" in cluster_up()
    finally:
        subprocess.run([*launcher, "down"], env=env, capture_output=True, timeout=120)
    assert len(repaired.all_groups) > 1, "the restarts from another session have own groups"
    wait_until(
        lambda: not any(_group_alive(group) for group in repaired.all_groups),
        timeout=30,
        what="every component, restarted ones too, to exit",
    )


def test_cluster_up_waits_for_a_restarted_api_server_before_what_depends_on_it(
    tmp_path: Path,
) -> None:
    """The controller-manager exits when it finds no API server: a repair of both starts the API
    server, waits until it is ready, and only then the controller-manager."""
    env = {**os.environ, "TESTAPP_CLUSTER_DIR": str(tmp_path), "TESTAPP_REAL_NODE": "0"}
    launcher = [sys.executable, str(REPO / "hack" / "cluster" / "localcluster.py")]
    try:
        subprocess.run([*launcher, "up"], env=env, capture_output=True, check=True, timeout=180)
        cluster = localcluster.read_state(tmp_path)
        assert cluster is not None
        pids = localcluster.component_pids(cluster)
        for component in ("kube-apiserver", "kube-controller-manager"):
            os.kill(pids[component], signal.SIGKILL)

        repaired = subprocess.run(
            [*launcher, "up"], env=env, capture_output=True, text=True, timeout=180
        )

        assert repaired.returncode == 0, repaired.stderr
        assert "kube-controller-manager was not running: starting it again" in repaired.stdout
        running = localcluster.read_state(tmp_path)
        assert running is not None and localcluster.is_healthy(running)
        assert set(localcluster.COMPONENTS) <= set(localcluster.component_pids(running))
    finally:
        subprocess.run([*launcher, "down"], env=env, capture_output=True, timeout=120)
