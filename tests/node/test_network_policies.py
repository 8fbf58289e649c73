"""NetworkPolicies enforced on the real node by kube-router (hack/cluster/realnode.py), proven with
real TCP from Pods of the node: who reaches a release's `http`, where a release's Pods can dial,
how spec.ingressFrom opens and closes the door, and that the probes still pass. Every
connection is also put to the model of the rules (tests/cluster/netpol_model.py): a test fails
when the model and the engine disagree.

Each refusal is paired with a connection that succeeds on the same path from a Pod the policies
let through, so a refusal for any other reason (a Pod not up, a wrong address) fails the test.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, localcluster, wait_until
from testapp_dev.node import NodeReleases, appimages, pod_ready
from testapp_dev.podnet import PROBE_PORT, HostEnds, PodRef, ProbePods, dial, host_ends, pod_ref

from tests.cluster.netpol_model import EXTERNAL, Endpoint, allowed

pytestmark = pytest.mark.cluster

CLIENT_LABEL = {"testapp.dev/client": "true"}
PROBE_PERIODS = 11  # seconds: two readiness periods of the app (render.py), and a margin


@pytest.fixture
def probes(
    cluster: LiveCluster, app_images: appimages.AppImages, real_node: str
) -> Iterator[ProbePods]:
    made = ProbePods(cluster, f"{app_images.repository}:{app_images.tags[0]}")
    yield made
    made.delete_all()


@dataclass(frozen=True)
class Scene:
    app: PodRef  # the release's Pod
    client: PodRef  # in a namespace labelled testapp.dev/client=true
    stranger: PodRef  # in a namespace without that label
    neighbour: PodRef  # beside the app, in the release's namespace
    hosts: HostEnds


@pytest.fixture
def scene(cluster: LiveCluster, releases: NodeReleases, probes: ProbePods) -> Iterator[Scene]:
    name = releases.create("1.0.0")
    client_ns = probes.namespace("client", CLIENT_LABEL)
    stranger_ns = probes.namespace("stranger")
    started = [(client_ns, probes.start(client_ns)), (stranger_ns, probes.start(stranger_ns))]
    releases.wait_ready(name, revision=1)
    (app,) = releases.pods(name)
    # Beside the app only now: wait_ready wants every Pod of the namespace to be the release's.
    started.append((name, probes.start(name, {"app": "neighbour"})))
    client, stranger, neighbour = (probes.wait(ns, pod) for ns, pod in started)
    with host_ends(cluster) as hosts:
        yield Scene(pod_ref(app), client, stranger, neighbour, hosts)


def endpoint(cluster: LiveCluster, pod: PodRef) -> Endpoint:
    namespace = cluster.get("namespace", pod.namespace)
    return Endpoint(
        namespace=pod.namespace,
        namespace_labels=namespace["metadata"].get("labels") or {},
        labels=pod.labels,
        ports=pod.ports,
    )


def verdicts(
    cluster: LiveCluster, source: PodRef, target: PodRef | tuple[str, int], port: int | None = None
) -> tuple[bool, bool]:
    """(engine, model) for one connection from `source` to a Pod's port or to a host end."""
    policies = cluster.get("networkpolicies", "--all-namespaces")["items"]
    if isinstance(target, PodRef):
        assert port is not None
        host, far = target.ip, endpoint(cluster, target)
    else:
        (host, port), far = target, EXTERNAL
    model = allowed(endpoint(cluster, source), far, port, policies)
    return dial(cluster, source, host, port), model


def engine_agrees(cluster: LiveCluster, source: PodRef, target, port=None) -> bool:
    engine, model = verdicts(cluster, source, target, port)
    assert engine == model, f"engine {engine}, model {model}: {source.name} -> {target} {port}"
    return engine


def test_a_pod_of_a_client_namespace_reaches_the_apps_http_port(
    cluster: LiveCluster, scene: Scene
) -> None:
    http = scene.app.ports["http"]

    assert engine_agrees(cluster, scene.client, scene.app, http)
    # The policy opens `http` only, even to a client.
    assert not engine_agrees(cluster, scene.client, scene.app, PROBE_PORT)


def test_a_pod_of_an_unlabelled_namespace_and_one_beside_the_app_are_refused(
    cluster: LiveCluster, scene: Scene
) -> None:
    http = scene.app.ports["http"]

    assert not engine_agrees(cluster, scene.stranger, scene.app, http)
    assert not engine_agrees(cluster, scene.neighbour, scene.app, http)
    assert engine_agrees(cluster, scene.client, scene.app, http)


def test_the_app_can_open_no_connection_at_all(cluster: LiveCluster, scene: Scene) -> None:
    targets: list[tuple[PodRef | tuple[str, int], int | None]] = [
        (scene.hosts.apiserver, None),
        (scene.client, PROBE_PORT),
        (scene.hosts.elsewhere, None),
    ]

    refused = [engine_agrees(cluster, scene.app, target, port) for target, port in targets]
    # The same ends from a Pod of a namespace without policies: the paths exist.
    reached = [engine_agrees(cluster, scene.stranger, target, port) for target, port in targets]

    assert refused == [False, False, False]
    assert reached == [True, True, True]


def test_ingress_from_opens_and_closes_the_door_within_seconds_without_a_new_revision(
    cluster: LiveCluster, releases: NodeReleases, scene: Scene
) -> None:
    http = scene.app.ports["http"]
    name = scene.app.namespace
    stranger_only = [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": scene.stranger.namespace}
            }
        }
    ]

    releases.patch(name, {"ingressFrom": stranger_only})
    wait_until(
        lambda: verdicts(cluster, scene.stranger, scene.app, http) == (True, True),
        timeout=20,
        what="the stranger's namespace let in",
    )
    assert not engine_agrees(cluster, scene.client, scene.app, http)
    releases.patch(name, {"ingressFrom": []})
    wait_until(
        lambda: verdicts(cluster, scene.stranger, scene.app, http) == (False, False),
        timeout=20,
        what="everyone shut out",
    )
    assert not engine_agrees(cluster, scene.client, scene.app, http)
    releases.patch(name, {"ingressFrom": None})
    wait_until(
        lambda: verdicts(cluster, scene.client, scene.app, http) == (True, True),
        timeout=20,
        what="the client namespaces let in again",
    )

    assert releases.get(name)["status"]["revision"] == 1
    (app,) = [p for p in releases.pods(name) if p["metadata"]["name"] == scene.app.name]
    assert pod_ready(app)  # the same Pod throughout


def test_the_probes_still_pass_behind_the_default_deny(
    cluster: LiveCluster, releases: NodeReleases, scene: Scene
) -> None:
    # The kubelet probes from the host, which no policy names: NetworkPolicy always lets a Pod's
    # own node in (the model has no node, so this one is not put to it). The app's policy does
    # refuse everyone else meanwhile.
    assert not engine_agrees(cluster, scene.stranger, scene.app, scene.app.ports["http"])
    time.sleep(PROBE_PERIODS)

    (app,) = [
        p for p in releases.pods(scene.app.namespace) if p["metadata"]["name"] == scene.app.name
    ]
    (status,) = app["status"]["containerStatuses"]
    assert pod_ready(app)
    assert status["restartCount"] == 0


def test_cluster_up_starts_a_dead_engine_again_and_the_door_stays_as_it_was(
    cluster: LiveCluster, scene: Scene
) -> None:
    """`make cluster-up` on a running cluster starts a dead kube-router again, and nothing else;
    its rules outlive it, so the policies hold meanwhile too."""
    http = scene.app.ports["http"]
    state = Path(cluster.state_dir)
    paths = localcluster.realnode.NodePaths(state)
    (engine,) = localcluster.realnode.signal_matching(paths, ("kube-router",), signal.SIGKILL)
    wait_until(
        lambda: "kube-router" not in localcluster.realnode.running_components(paths),
        timeout=10,
        what="kube-router gone",
    )
    assert not engine_agrees(cluster, scene.stranger, scene.app, http)  # while it is dead
    said: list[str] = []

    localcluster.up(state, log=said.append, real_node=True)

    assert "kube-router of the real node was not running: starting it again" in said
    assert not any("afresh" in line or "not running: starting them" in line for line in said)
    assert engine not in localcluster.realnode.signal_matching(paths, ("kube-router",), 0)
    assert localcluster.realnode.signal_matching(paths, ("kube-router",), 0)
    assert not engine_agrees(cluster, scene.stranger, scene.app, http)
    assert engine_agrees(cluster, scene.client, scene.app, http)
