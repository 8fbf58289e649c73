"""End to end on the real node: real Pods from the loopback registry, real probes, real Service
routing (kube-proxy), and the operator's rollout decisions on top of them."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, localcluster, wait_until
from testapp_dev.node import (
    NodeReleases,
    appimages,
    pod_ready,
    revision_of,
    version,
    wait_version,
)
from testapp_operator.cli import client, views

pytestmark = pytest.mark.cluster


def test_a_release_runs_the_pushed_digest_on_the_real_node(
    releases: NodeReleases, app_images: appimages.AppImages, real_node: str
) -> None:
    name = releases.create("1.0.0")

    releases.wait_ready(name, revision=1)

    (pod,) = releases.pods(name)
    assert pod["spec"]["nodeName"] == real_node
    (container,) = pod["status"]["containerStatuses"]
    assert container["imageID"].endswith(app_images.digest)
    assert version(releases.url(name)) == "1.0.0"


def test_readiness_gates_the_rollout(releases: NodeReleases) -> None:
    name = releases.create("1.0.0", progressDeadlineSeconds=120)
    releases.wait_ready(name, revision=1)
    url = releases.url(name)

    releases.patch(name, {"tag": appimages.UNREADY_TAG})

    def new_pod_running() -> dict | None:
        pods = [p for p in releases.pods(name) if revision_of(p) == 2]
        running = [
            p
            for p in pods
            if "running" in (p["status"].get("containerStatuses") or [{}])[0].get("state", {})
        ]
        return running[0] if running else None

    new = wait_until(new_pod_running, timeout=60, what="the revision 2 Pod running")
    time.sleep(6)  # more than a probe period: the kubelet has probed the new Pod
    (new,) = [p for p in releases.pods(name) if p["metadata"]["name"] == new["metadata"]["name"]]
    old = [p for p in releases.pods(name) if revision_of(p) == 1]
    assert not pod_ready(new)
    assert [pod_ready(p) for p in old] == [True]
    assert version(url) == "1.0.0"
    assert releases.get(name)["status"]["phase"] != "Ready"


def test_a_crash_looping_revision_is_marked_failed_and_rolled_back(
    releases: NodeReleases, cluster: LiveCluster
) -> None:
    name = releases.create("1.0.0", progressDeadlineSeconds=30)
    releases.wait_ready(name, revision=1)
    plugin = client.connect(cluster.kubeconfig, None)

    releases.patch(name, {"tag": appimages.CRASH_TAG})

    # What `kubectl testapp status -o wide` shows while the broken revision rolls out.
    told = wait_until(
        lambda: (
            "CrashLoopBackOff" in (problems := views.pod_problems(plugin.list_pods(name)) or "")
            and problems
        ),
        timeout=60,
        what="the plugin reporting the revision 2 Pod in CrashLoopBackOff",
    )
    body = wait_until(
        lambda: (b := releases.get(name))["status"].get("phase") == "Degraded" and b,
        timeout=120,
        what=f"{name} rolled back (Degraded)",
    )
    history = {r["revision"]: r["outcome"] for r in body["status"]["history"]}
    assert history[2] == "Failed"
    assert body["status"]["revision"] == 1
    wait_version(releases.url(name), "1.0.0")
    reasons = {
        e["reason"]
        for e in cluster.get(
            "events", "-n", "default", "--field-selector", f"involvedObject.name={name}"
        )["items"]
    }
    assert "AutoRolledBack" in reasons
    kubelet_reasons = {e["reason"] for e in cluster.get("events", "-n", name)["items"]}
    assert "BackOff" in kubelet_reasons
    assert told == "1 CrashLoopBackOff"


def test_the_service_answers_the_running_revision_after_a_deploy_a_pin_and_an_unpin(
    releases: NodeReleases,
) -> None:
    name = releases.create("1.0.0")
    releases.wait_ready(name, revision=1)
    url = releases.url(name)

    releases.patch(name, {"tag": "1.1.0"})
    releases.wait_ready(name, revision=2)
    deployed = version(url)
    releases.patch(name, {"revision": 1})
    releases.wait_ready(name, revision=1)
    pinned = version(url)
    releases.patch(name, {"revision": None})
    releases.wait_ready(name, revision=2)
    unpinned = version(url)

    assert (deployed, pinned, unpinned) == ("1.1.0", "1.0.0", "1.1.0")


def test_a_deleted_deployment_is_repaired_and_the_app_answers_again(
    releases: NodeReleases, cluster: LiveCluster
) -> None:
    name = releases.create("1.0.0")
    releases.wait_ready(name, revision=1)
    url = releases.url(name)

    cluster.kubectl("delete", "deployment", name, "-n", name, "--wait=true")

    releases.wait_ready(name, revision=1)
    wait_version(url, "1.0.0")


def test_cluster_up_starts_a_dead_kubelet_again_and_the_pods_keep_serving(
    releases: NodeReleases, cluster: LiveCluster, real_node: str
) -> None:
    """`make cluster-up` on a running cluster repairs the real node too: only the kubelet, which
    died, is started again (containerd and the Pods live on), and the Node is Ready again."""
    name = releases.create("1.0.0")
    releases.wait_ready(name, revision=1)
    url = releases.url(name)
    paths = localcluster.realnode.NodePaths(Path(cluster.state_dir))
    (kubelet,) = localcluster.realnode.signal_matching(paths, ("kubelet",), signal.SIGKILL)
    wait_until(lambda: not localcluster.node_running(Path(cluster.state_dir)), timeout=10)
    containerd = set(localcluster.realnode.signal_matching(paths, ("containerd",), 0))
    said: list[str] = []

    running = localcluster.up(Path(cluster.state_dir), log=said.append, real_node=True)

    assert "kubelet of the real node was not running: starting it again" in said
    assert not any("afresh" in line for line in said), said
    assert localcluster.node_ready(
        running.server, localcluster.admin_context(Path(cluster.state_dir)), real_node
    )
    assert set(localcluster.realnode.signal_matching(paths, ("containerd",), 0)) == containerd
    assert kubelet not in localcluster.realnode.signal_matching(paths, ("kubelet",), 0)
    wait_version(url, "1.0.0")
