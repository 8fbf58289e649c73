"""Stopping the real node puts the machine back as it was (runs after the other node tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, localcluster
from testapp_dev.node import NodeReleases

from tests.node.conftest import started_by_us

realnode = localcluster.realnode

pytestmark = pytest.mark.cluster


def test_stopping_the_node_leaves_nothing_behind(
    cluster: LiveCluster, releases: NodeReleases, real_node: str
) -> None:
    state = Path(cluster.state_dir)
    paths = realnode.NodePaths(state)
    running = localcluster.read_state(state)
    assert running is not None
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    assert realnode.stop(paths) == []
    clean = realnode.footprint(paths)
    try:
        assert localcluster.start_real_node(running, started_by_us(cluster), log)
        name = releases.create("1.0.0")
        releases.wait_ready(name, revision=1)
        during = realnode.footprint(paths)

        left = realnode.stop(paths)

        after = realnode.footprint(paths)
    finally:
        localcluster.start_real_node(running, started_by_us(cluster), log)
    assert clean.differences(during), "the node changed nothing: this test would prove nothing"
    # The NetworkPolicy engine's share: its jumps, its chains for the release's Pod and policies,
    # the ipsets its rules match on.
    assert len(during.iptables_jumps) == len(realnode.BUILTIN_CHAINS)
    assert any(chain.endswith(" KUBE-ROUTER-FORWARD") for chain in during.nft_chains)
    assert any(" KUBE-POD-FW-" in chain for chain in during.nft_chains)
    assert during.ipsets
    assert left == []
    assert clean.differences(after) == []
