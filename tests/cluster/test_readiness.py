"""The operator's readiness probe on the real API server: with two peered replicas, the active
one is ready because its watches deliver, the standby because it can take over; when the active
one dies, the standby becomes the active, watching one."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, OperatorProcess, free_port, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


class Replica:
    """An operator process with its readiness endpoint."""

    def __init__(self, cluster: LiveCluster, log: Path, priority: int) -> None:
        self.port = free_port()
        self.process = OperatorProcess(
            cluster.kubeconfig,
            log,
            f"--priority={priority}",
            f"--readiness=http://127.0.0.1:{self.port}/readyz",
            standalone=False,
        )

    def readiness(self) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode().strip()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode().strip()


@pytest.fixture
def peering(cluster: LiveCluster, operator: OperatorProcess) -> Iterator[None]:
    """The peering CRD and object; the session's standalone operator stopped meanwhile."""
    operator.stop()
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / "peering-crd.yaml"))
    cluster.kubectl(
        "wait", "crd/clusterkopfpeerings.kopf.dev", "--for=condition=Established", "--timeout=30s"
    )
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / "peering.yaml"))
    yield
    operator.start()


def test_the_active_replica_is_ready_watching_and_the_standby_ready_to_take_over(
    cluster: LiveCluster, peering: None, tmp_path: Path
) -> None:
    active = Replica(cluster, tmp_path / "active.log", priority=300)
    standby = Replica(cluster, tmp_path / "standby.log", priority=150)
    try:
        active.process.start()
        standby.process.start()
        wait_until(
            lambda: active.readiness() == (200, "active: watching"),
            timeout=60,
            what="the active replica ready",
        )
        wait_until(
            lambda: standby.readiness() == (200, "standby: a live peer, ready to take over"),
            timeout=60,
            what="the standby ready",
        )

        active.process.stop(signal.SIGKILL)

        # Its keep-alive expires (peering lifetime 15 s); Kopf resumes the standby's watches.
        wait_until(
            lambda: standby.readiness() == (200, "active: watching"),
            timeout=60,
            what="the standby to take over and watch",
        )
    finally:
        active.process.stop()
        standby.process.stop()


def test_a_standalone_operator_is_ready_once_started(
    cluster: LiveCluster, operator: OperatorProcess, tmp_path: Path
) -> None:
    port = free_port()
    alone = OperatorProcess(
        cluster.kubeconfig, tmp_path / "alone.log", f"--readiness=http://127.0.0.1:{port}/readyz"
    )
    operator.stop()
    try:
        alone.start()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert (response.status, response.read()) == (200, b"standalone: started\n")
    finally:
        alone.stop()
        operator.start()
