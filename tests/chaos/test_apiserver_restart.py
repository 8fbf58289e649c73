"""kube-apiserver dies mid-rollout and comes back: the operator, never restarted, reconnects its
watches and reconciles a change within 30 s."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from testapp_dev import IMAGE, LiveCluster, OperatorProcess, manifest, unique, wait_until

from tests.chaos.helpers import deployment, image_of, restart_component, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]


def test_operator_recovers_from_an_api_server_restart_without_being_restarted(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("apirestart")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest(name, tag="v1")))
    try:
        wait_ready(cluster, name, "v1")
        assert operator.process is not None
        pid = operator.process.pid

        # Mid-run: a rollout in flight when the API server goes away.
        cluster.kubectl("patch", "tar", name, "--type=merge", "-p", '{"spec":{"tag":"v2"}}')
        restart_component(Path(cluster.state_dir), "kube-apiserver")

        # A change made after the restart must be reconciled within 30 s.
        patched = time.monotonic()
        wait_until(
            lambda: (
                cluster.kubectl(
                    "patch", "tar", name, "--type=merge", "-p", '{"spec":{"tag":"v3"}}', check=False
                ).returncode
                == 0
            ),
            timeout=30,
            what="the API server to accept a patch again",
        )
        wait_ready(cluster, name, "v3", timeout=30 - (time.monotonic() - patched))
        assert image_of(deployment(cluster, name)) == f"{IMAGE}:v3"
        assert operator.process is not None and operator.process.pid == pid
        assert operator.process.poll() is None, "the operator exited"
    finally:
        cluster.kubectl("delete", "tar", name, "--ignore-not-found", "--wait=false", check=False)
