"""The operator's Pod, installed from its image on the real node (`python -m
testapp_operator.delivery.install operator`, what `make install-operator` runs), behind its own
NetworkPolicies (k8s/operator/networkpolicy.yaml) enforced by kube-router: it reaches the API
server, and nothing else. Each connection is put to the model too (netpol_model.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, localcluster
from testapp_dev.node import appimages, pod_ready
from testapp_dev.podnet import PROBE_PORT, HostEnds, PodRef, ProbePods, host_ends, pod_ref

from tests.node.test_network_policies import engine_agrees

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "testapp-system"


@dataclass(frozen=True)
class Scene:
    operators: list[dict]  # the operator's Pods, as the API server had them once rolled out
    other: PodRef  # a Pod of another namespace, listening
    peer: PodRef  # beside `other`, in a namespace without policies
    hosts: HostEnds


@pytest.fixture
def scene(cluster: LiveCluster, app_images: appimages.AppImages, real_node: str) -> Iterator[Scene]:
    """The operator's Deployment, from its image by digest, on the real node; removed after
    (while it runs, its active replica reconciles the cluster's releases beside the tests')."""
    registry = localcluster.ensure_registry(Path(cluster.state_dir))
    repository, digest = appimages.push_operator(
        registry, log=lambda line: print(line, file=sys.stderr)
    )
    running = localcluster.read_state(Path(cluster.state_dir))
    assert running is not None
    probes = ProbePods(cluster, f"{app_images.repository}:{app_images.tags[0]}")
    try:
        namespace = probes.namespace("client", {"testapp.dev/client": "true"})
        started = [probes.start(namespace), probes.start(namespace)]
        other, peer = (probes.wait(namespace, name) for name in started)
        localcluster.place_on_real_node(running, NAMESPACE)
        with host_ends(cluster) as hosts:
            installed = subprocess.run(
                [
                    sys.executable, "-m", "testapp_operator.delivery.install", "operator",
                    "--image", repository, "--digest", digest, "--timeout", "240",
                    "--manifests", str(REPO / "k8s" / "operator"),
                ],
                env=cluster.env, capture_output=True, text=True, cwd=REPO,
            )  # fmt: skip
            assert installed.returncode == 0, installed.stdout + installed.stderr
            selector = "app.kubernetes.io/name=testapp-operator"
            operators = cluster.get("pods", "-n", NAMESPACE, "-l", selector)["items"]
            yield Scene(operators, other, peer, hosts)
    finally:
        cluster.kubectl("delete", "deployment", "testapp-operator", "-n", NAMESPACE, check=False)
        # Later tests install the operator here too, on kwok: the namespace goes back as it was.
        placed = (f"{key}-" for key in localcluster.realnode.placement())
        cluster.kubectl("annotate", "namespace", NAMESPACE, *placed, check=False)
        probes.delete_all()


def test_the_operators_pod_reaches_the_api_server_and_nothing_else(
    cluster: LiveCluster, scene: Scene
) -> None:
    # Ready: the rollout waited for /readyz, which needs the operator's watches of the API server.
    assert scene.operators and all(pod_ready(p) for p in scene.operators)
    for operator in map(pod_ref, scene.operators):
        assert operator.namespace == NAMESPACE
        assert engine_agrees(cluster, operator, scene.hosts.apiserver)
        assert not engine_agrees(cluster, operator, scene.other, PROBE_PORT)
        assert not engine_agrees(cluster, operator, scene.hosts.elsewhere)
    # The paths exist: a Pod without policies of its own takes them.
    assert engine_agrees(cluster, scene.peer, scene.other, PROBE_PORT)
    assert engine_agrees(cluster, scene.peer, scene.hosts.elsewhere)
