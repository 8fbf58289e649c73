"""Where the real node cannot run, a cluster carries on with kwok and says why in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, localcluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def test_a_second_cluster_on_the_machine_runs_kwok_and_says_why(
    cluster: LiveCluster, real_node: str, tmp_path: Path
) -> None:
    lines: list[str] = []

    with localcluster.running(tmp_path, log=lines.append, real_node=True) as other:
        kwok_ready = localcluster.node_ready(other.server, localcluster.admin_context(tmp_path))
        told = subprocess.run(
            [sys.executable, str(REPO / "hack" / "cluster" / "localcluster.py"), "node"],
            env={**os.environ, "TESTAPP_CLUSTER_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
        )

    reason = (
        f"the real node of this machine belongs to the cluster in {cluster.state_dir} "
        "(one per machine: stopping that cluster frees it)"
    )
    assert kwok_ready
    assert f"Real node not started, Pods run on kwok only: {reason}" in lines
    assert (told.returncode, told.stdout) == (1, reason + "\n")
