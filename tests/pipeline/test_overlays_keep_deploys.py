"""Re-applying an environment's overlay (by hand, Argo CD or Flux) changes what the overlay says
and nothing the pipeline deployed: the tag stays, the image stays, a rollback pin stays."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from testapp_dev import LiveCluster, OperatorProcess

from tests.pipeline.gitlab import REPO

pytestmark = pytest.mark.cluster

ENV = "ppd"  # a release no other pipeline test touches
RELEASE = f"test-app-{ENV}"
IMAGE = "registry.example.com/test-app"


def make(cluster: LiveCluster, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GCP_", "MAKE"))}
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", *args, f"ENV={ENV}", "TIMEOUT=120"],
        cwd=REPO,
        env={**env, "KUBECONFIG": cluster.kubeconfig},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def spec(cluster: LiveCluster) -> dict[str, Any]:
    return cluster.get("testappreleases.testapp.dev", RELEASE)["spec"]


@pytest.fixture
def rolled_back(cluster: LiveCluster, operator: OperatorProcess) -> Iterator[int]:
    """ppd created by a first deploy, deployed again, then pinned back to the first revision."""
    cluster.kubectl("delete", "tar", RELEASE, "--ignore-not-found", "--wait=true")
    make(cluster, "deploy", "TAG=first", f"IMAGE={IMAGE}")
    first = cluster.get("testappreleases.testapp.dev", RELEASE)["status"]["revision"]
    make(cluster, "deploy", "TAG=second")
    make(cluster, "rollback")
    yield first
    cluster.kubectl("delete", "tar", RELEASE, "--ignore-not-found", "--wait=false")


@pytest.mark.parametrize("apply", [["--server-side"], []], ids=["server-side", "client-side"])
def test_reapplying_the_overlay_keeps_the_deployed_tag_image_and_pin(
    cluster: LiveCluster, rolled_back: int, apply: list[str]
) -> None:
    before = spec(cluster)
    assert (before["tag"], before["image"], before["revision"]) == ("second", IMAGE, rolled_back)

    cluster.kubectl("apply", *apply, "-k", str(REPO / "k8s" / "overlays" / ENV))

    after = spec(cluster)
    assert (after["tag"], after["image"], after["revision"]) == ("second", IMAGE, rolled_back)
    assert after["replicas"] == 2  # what the overlay says still applies
