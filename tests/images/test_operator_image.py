"""The operator image runs the operator: podman, host network, loopback only, against a local
control plane of this module's own, authenticated as its ServiceAccount with only the RBAC of
k8s/operator. Its kubectl-testapp answers too, and `make push` puts both images in the cluster's
loopback registry."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, free_port, localcluster, service_account_kubeconfig, wait_until
from testapp_dev.podman import ENV, ROOT, Podman

from tests.images.conftest import Images

pytestmark = [pytest.mark.images, pytest.mark.cluster]

RELEASE = "test-app-dev"
KUBECONFIG_IN_CONTAINER = "/etc/testapp/kubeconfig"


@dataclass(frozen=True)
class Operator:
    container: str
    run_flags: tuple[str, ...]  # how to start another container with the same identity


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveCluster]:
    """A control plane (and registry) for this module alone: the operator in the image reconciles
    every release in the cluster, and must not race the operator the other suites run."""
    state = tmp_path_factory.mktemp("cluster")
    running = localcluster.up(state, die_with_parent=True, log=lambda line: print(line))
    try:
        yield LiveCluster(running.kubeconfig, running.server, str(state))
    finally:
        localcluster.down(state)


@pytest.fixture(scope="module")
def operator(podman: Podman, images: Images, own_cluster: LiveCluster) -> Iterator[Operator]:
    own_cluster.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
    for manifest in ("namespace.yaml", "rbac.yaml", "peering-crd.yaml", "peering.yaml"):
        own_cluster.kubectl("apply", "-f", str(ROOT / "k8s" / "operator" / manifest))
    state = Path(own_cluster.state_dir)
    kubeconfig = service_account_kubeconfig(
        own_cluster, "testapp-system", "testapp-operator", state / "operator.kubeconfig"
    )
    run_flags = (
        # As k8s/operator's Deployment: a read-only root, an emptyDir on /tmp.
        "--pull=never", "--network=host", "--read-only", "--read-only-tmpfs=false", "--tmpfs=/tmp",
        f"--volume={kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
        f"--env=KUBECONFIG={KUBECONFIG_IN_CONTAINER}",
    )  # fmt: skip
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    name = f"pytest-operator-{uuid.uuid4().hex[:8]}"
    podman(
        "run", "--detach", "--name", name, *run_flags,
        f"--env=TESTAPP_LIVENESS={liveness}", f"--env=TESTAPP_METRICS_PORT={free_port()}",
        images.operator,
    )  # fmt: skip
    try:
        wait_until(lambda: answers(liveness), timeout=60, what="the operator container's liveness")
        yield Operator(name, run_flags)
    finally:
        print(podman("logs", name, check=False).stderr[-3000:])
        podman("rm", "--force", "--time=10", name, check=False)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def ready_release(own_cluster: LiveCluster, operator: Operator) -> dict:
    """test-app-dev, created and reconciled to Ready by the operator in the container."""
    release = {
        "apiVersion": "testapp.dev/v1",
        "kind": "TestAppRelease",
        "metadata": {"name": RELEASE},
        "spec": {"env": "dev", "image": "registry.example.com/test-app", "tag": "1.0.0"},
    }
    own_cluster.kubectl("apply", "-f", "-", input=json.dumps(release))

    def ready() -> dict | None:
        body = own_cluster.get("tar", RELEASE)
        status = body.get("status") or {}
        return body if status.get("phase") == "Ready" and status.get("revision") == 1 else None

    return wait_until(ready, timeout=90, what=f"{RELEASE} Ready at revision 1")


def test_the_operator_image_reconciles_a_release_to_ready(
    podman: Podman, own_cluster: LiveCluster, operator: Operator, ready_release: dict
) -> None:
    deployment = own_cluster.get("deployment", RELEASE, "-n", RELEASE)
    status = podman("exec", operator.container, "cat", "/proc/1/status").stdout

    assert ready_release["status"]["phase"] == "Ready"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.0.0")
    assert re.search(r"^Uid:\s+10001\s", status, re.M)


@pytest.mark.parametrize(
    ("command", "expected"),
    [(["status"], ["dev", "1.0.0", "Ready"]), (["history", "dev"], ["1.0.0", "Ready"])],
)
def test_kubectl_testapp_runs_from_the_operator_image(
    podman: Podman,
    images: Images,
    operator: Operator,
    ready_release: dict,
    command: list[str],
    expected: list[str],
) -> None:
    result = podman(
        "run", "--rm", *operator.run_flags, images.operator, "kubectl-testapp", *command
    )

    assert all(word in result.stdout for word in expected), result.stdout


def test_make_push_puts_both_images_in_the_loopback_registry_and_prints_their_digests(
    podman: Podman, images: Images, own_cluster: LiveCluster
) -> None:
    registry = localcluster.registry_address(Path(own_cluster.state_dir))
    assert registry and registry.startswith("127.0.0.1:")

    result = subprocess.run(
        [
            *("make", "-C", str(images.tree), "push", "DOCKER=podman", f"REGISTRY={registry}"),
            *(f"GIT_SHA={images.git_sha}", f"APP_VERSION={images.app_version}"),
        ],
        capture_output=True,
        text=True,
        env={**ENV, "MAKEFLAGS": ""},
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    printed = dict(re.findall(rf"^{re.escape(registry)}/([\w-]+)@(sha256:[0-9a-f]{{64}})$",
                              result.stdout, re.M))  # fmt: skip
    assert printed.keys() == {"test-app", "testapp-operator"}
    crane = str(localcluster.ensure_crane())
    for name, digest in printed.items():
        reference = f"{registry}/{name}:{images.git_sha}"
        served = subprocess.run(
            [crane, "digest", "--insecure", reference], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert served == digest, name
    podman("pull", "--tls-verify=false", f"{registry}/test-app@{printed['test-app']}")
    podman(
        "rmi",
        f"{registry}/test-app@{printed['test-app']}",
        *(f"{registry}/{name}:{images.git_sha}" for name in printed),
        check=False,
    )
