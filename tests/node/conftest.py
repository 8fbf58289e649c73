"""Fixtures for the end-to-end tests on the real node: the node itself, the pushed images."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, OperatorProcess, localcluster
from testapp_dev.node import NodeReleases, appimages

realnode = localcluster.realnode


def started_by_us(cluster: LiveCluster) -> bool:
    """Whether this test process started the cluster (then the node dies with it too)."""
    running = localcluster.read_state(Path(cluster.state_dir))
    assert running is not None
    stat = Path(f"/proc/{running.pgid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


@pytest.fixture(scope="session")
def real_node(cluster: LiveCluster) -> str:
    """The real node's name; skips (saying why in one line) where it cannot run: the other
    suites still run on kwok."""
    state = Path(cluster.state_dir)
    take_the_node_from_the_demo(state)
    if not localcluster.node_running(state):
        running = localcluster.read_state(state)
        assert running is not None
        localcluster.start_real_node(
            running, started_by_us(cluster), lambda line: print(line, file=sys.stderr)
        )
    reason = localcluster.real_node_unavailable(state)
    if reason:
        WHY_NO_REAL_NODE.append(reason)
        pytest.skip(f"no real node here, kwok only: {reason}")
    return realnode.node_name()


def take_the_node_from_the_demo(state: Path) -> None:
    """`make demo` then `make test` in one checkout: the demo's cluster (.cluster) holds the one
    real node of the machine. The tests stop that node, saying so; the demo's control plane and
    operator keep running, its releases' Pods wait for a node."""
    demo = Path(__file__).resolve().parents[2] / ".cluster"
    if realnode.lock_owner() == str(demo) and demo != state:
        TOOK_THE_NODE.append(
            f"the real node of the demo's cluster in {demo} was stopped for these tests (one real "
            "node per machine); the demo's control plane keeps running"
        )
        print(TOOK_THE_NODE[0], file=sys.stderr)
        realnode.stop(realnode.NodePaths(demo))


TOOK_THE_NODE: list[str] = []


# Filled by the real_node fixture; every node test is skipped for the same reason.
WHY_NO_REAL_NODE: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Why the real-node tests were skipped, or whose node they took, once at the end."""
    for line in TOOK_THE_NODE:
        terminalreporter.write_line(line)
    if WHY_NO_REAL_NODE:
        terminalreporter.write_line(
            f"real-node tests skipped, the cluster ran kwok only: {WHY_NO_REAL_NODE[0]}"
        )


@pytest.fixture(scope="session")
def app_images(cluster: LiveCluster, real_node: str) -> appimages.AppImages:
    """test-app built with podman and pushed to the cluster's loopback registry, with its
    broken builds and the TESTAPP_FAULT=500 one (the canary's test)."""
    registry = localcluster.ensure_registry(Path(cluster.state_dir))
    return appimages.push(
        registry, ["1.0.0", "1.1.0"], log=lambda line: print(line, file=sys.stderr), fault=True
    )


@pytest.fixture
def releases(
    cluster: LiveCluster, operator: OperatorProcess, app_images: appimages.AppImages
) -> NodeReleases:
    made = NodeReleases(cluster, app_images.repository)
    yield made
    made.delete_all()
