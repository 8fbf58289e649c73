"""What runs is pinned by digest: the release records the digest with the tag, the Pods run
image:tag@digest, a rollback runs the bytes it ran before, `kubectl testapp deploy --digest`
and `promote` carry it; the CRD refuses a malformed digest."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, OperatorProcess

from tests.cluster.test_operator import IMAGE, create, patch, release, running_image, wait_ready

pytestmark = pytest.mark.cluster

PLUGIN = Path(sys.executable).parent / "kubectl-testapp"
ONE = "sha256:" + "1" * 64
TWO = "sha256:" + "2" * 64


def unique() -> str:
    # The plugin names releases test-app-<env>; any suffix after the prefix is an "env" to it.
    return f"test-app-dg{uuid.uuid4().hex[:6]}"


def test_a_release_runs_its_tag_by_digest_and_a_rollback_runs_the_old_bytes(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    body = create(cluster, name, tag="1.0.0", digest=ONE)

    assert running_image(cluster, name) == f"{IMAGE}:1.0.0@{ONE}"
    assert (body["status"]["image"], body["status"]["digest"]) == (f"{IMAGE}:1.0.0", ONE)
    assert body["status"]["history"][0]["digest"] == ONE

    # The same tag pushed again as other bytes: a new revision, since what runs changes.
    patch(cluster, name, {"spec": {"digest": TWO}})
    wait_ready(cluster, name, revision=2)
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0@{TWO}"

    patch(cluster, name, {"spec": {"revision": 1}})
    body = wait_ready(cluster, name, revision=1)
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0@{ONE}"
    assert body["status"]["digest"] == ONE
    revision = cluster.get("controllerrevision", f"{name}-1", "-n", name)
    assert revision["data"]["digest"] == ONE


def test_deploy_with_digest_pins_it_and_deploy_without_clears_it(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique()
    create(cluster, name, tag="1.0.0")
    assert running_image(cluster, name) == f"{IMAGE}:1.0.0"

    def deploy(*args: str) -> None:
        result = subprocess.run(
            [str(PLUGIN), "--kubeconfig", cluster.kubeconfig, "deploy", name, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr

    deploy("--tag", "2.0.0", "--digest", TWO)
    assert running_image(cluster, name) == f"{IMAGE}:2.0.0@{TWO}"
    assert release(cluster, name)["spec"]["digest"] == TWO

    # A tag without a digest must not run under the previous tag's digest.
    deploy("--tag", "3.0.0")
    assert running_image(cluster, name) == f"{IMAGE}:3.0.0"
    assert "digest" not in release(cluster, name)["spec"]


@pytest.mark.parametrize("digest", ["sha256:" + "A" * 64, "sha256:abc", "md5:" + "0" * 32, ""])
def test_the_crd_refuses_a_malformed_digest(cluster: LiveCluster, crd: None, digest: str) -> None:
    body = {
        "apiVersion": "testapp.dev/v1",
        "kind": "TestAppRelease",
        "metadata": {"name": unique()},
        "spec": {"env": "dev", "image": IMAGE, "tag": "1.0.0", "digest": digest},
    }

    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False
    )

    assert result.returncode != 0
    assert "spec.digest" in result.stderr
