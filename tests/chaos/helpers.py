"""What the chaos tests share: releases as data, their history as the API server holds it, and
killing one control-plane component (kube-apiserver) and starting it again with its arguments."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testapp_dev import LiveCluster, is_ready_at, localcluster, wait_until


def wait_ready(cluster: LiveCluster, name: str, tag: str, timeout: float = 90) -> dict[str, Any]:
    return wait_until(
        lambda: (body := cluster.get("tar", name)) and is_ready_at(body, tag) and body,
        timeout=timeout,
        what=f"{name} Ready at tag {tag}",
    )


def deployment(cluster: LiveCluster, name: str) -> dict[str, Any]:
    return cluster.get("deployment", name, "-n", name)


def image_of(deployment_body: dict[str, Any]) -> str:
    return deployment_body["spec"]["template"]["spec"]["containers"][0]["image"]


def controller_revisions(cluster: LiveCluster, name: str) -> dict[int, dict[str, Any]]:
    items = cluster.get("controllerrevisions", "-n", name, "-l", f"testapp.dev/release={name}")[
        "items"
    ]
    return {item["revision"]: item for item in items}


@dataclass(frozen=True)
class World:
    """Releases, their ControllerRevisions and Deployments, read in three calls (not 3 per
    release): what a check over many releases looks at."""

    releases: dict[str, dict[str, Any]]
    revisions: dict[str, dict[int, dict[str, Any]]]
    deployments: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, cluster: LiveCluster) -> World:
        revisions: dict[str, dict[int, dict[str, Any]]] = {}
        for item in cluster.get("controllerrevisions", "-A", "-l", "testapp.dev/release")["items"]:
            owner = item["metadata"]["labels"]["testapp.dev/release"]
            revisions.setdefault(owner, {})[item["revision"]] = item
        managed = "app.kubernetes.io/managed-by=testapp-operator"
        return cls(
            releases={b["metadata"]["name"]: b for b in cluster.get("tar")["items"]},
            revisions=revisions,
            deployments={
                d["metadata"]["namespace"]: d
                for d in cluster.get("deployments", "-A", "-l", managed)["items"]
                if d["metadata"]["name"] == d["metadata"]["namespace"]
            },
        )


def assert_history_consistent(
    cluster: LiveCluster, name: str, world: World | None = None
) -> dict[str, Any]:
    """Numbers strictly increasing without duplicates, one revision per distinct Pod-template
    spec (every tag the tests write is new, so snapshots never repeat), status history matching
    the stored ControllerRevisions, and the deployed revision's snapshot being what runs."""
    body = world.releases[name] if world else cluster.get("tar", name)
    status = body["status"]
    history = status["history"]
    numbers = [item["revision"] for item in history]
    assert numbers == sorted(set(numbers), reverse=True), f"{name}: history {numbers}"
    stored = world.revisions.get(name, {}) if world else controller_revisions(cluster, name)
    assert sorted(stored) == sorted(numbers), f"{name}: stored {sorted(stored)} vs {numbers}"
    snapshots = [json.dumps(stored[n]["data"], sort_keys=True) for n in sorted(stored)]
    assert len(set(snapshots)) == len(snapshots), f"{name}: two revisions of one snapshot"
    for item in history:
        assert stored[item["revision"]]["data"]["tag"] == item["tag"], f"{name}: {item}"
    running = world.deployments[name] if world else deployment(cluster, name)
    template = running["spec"]["template"]
    deployed = stored[status["revision"]]["data"]
    assert image_of(running) == f"{deployed['image']}:{deployed['tag']}" == status["image"]
    assert template["metadata"]["annotations"]["testapp.dev/revision"] == str(status["revision"])
    return body


# --- kube-apiserver restart ---------------------------------------------------------------------


def restart_component(state: Path, component: str, timeout: float = 60) -> None:
    """SIGKILL one component and start it again with the same arguments, in the same process
    group (so `localcluster.py down` still stops it), then wait until it serves again."""
    cluster = localcluster.read_state(state)
    assert cluster is not None, f"no cluster state in {state}"
    pid = localcluster.component_pids(cluster)[component]
    os.kill(pid, signal.SIGKILL)
    # Gone or a zombie (realnode.zombie says True for both).
    wait_until(lambda: localcluster.realnode.zombie(pid), 10, what=f"{pid} gone")
    # Reap it if it is our child (the test session started the cluster); harmless otherwise.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    # Die with us only if the cluster itself does (this process started it).
    leader_parent = int(Path(f"/proc/{cluster.pgid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    localcluster.restart(cluster, component, die_with_parent=leader_parent == os.getpid())
    admin = localcluster.admin_context(state)
    deadline = time.monotonic() + timeout
    while localcluster.http(f"{cluster.server}/readyz", admin)[0] != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"{component} did not become ready again in {timeout} s")
        time.sleep(0.2)
