"""Fixtures shared by every test: the live local control plane (started once per session)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveCluster, OperatorProcess, service_account_kubeconfig

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack" / "cluster"))

import localcluster  # noqa: E402 (hack/cluster is not a package)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LiveCluster]:
    """The local control plane: reused if `make cluster-up` started one, else started here."""
    with localcluster.running(log=lambda line: print(line, file=sys.stderr)) as running:
        yield LiveCluster(
            kubeconfig=running.kubeconfig, server=running.server, state_dir=running.state_dir
        )


@pytest.fixture
def namespace(cluster: LiveCluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--operator-identity",
        choices=["admin", "serviceaccount"],
        default="admin",
        help="serviceaccount: run the operator with only the RBAC of k8s/operator/",
    )


@pytest.fixture(scope="session")
def crd(cluster: LiveCluster) -> None:
    """The TestAppRelease CRD installed and served, as `make install-crd` installs it."""
    subprocess.run(
        [sys.executable, "-m", "testapp_operator.install", "crd"],
        cwd=REPO,
        env=cluster.env,
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def operator(
    cluster: LiveCluster, crd: None, request: pytest.FixtureRequest
) -> Iterator[OperatorProcess]:
    """The operator running as a process against the cluster, with the CRD installed."""
    state = Path(cluster.state_dir)
    kubeconfig = cluster.kubeconfig
    if request.config.getoption("--operator-identity") == "serviceaccount":
        for manifest in ("namespace.yaml", "rbac.yaml"):
            cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / manifest))
        kubeconfig = service_account_kubeconfig(
            cluster, "testapp-system", "testapp-operator", state / "operator.kubeconfig"
        )
    process = OperatorProcess(kubeconfig, state / "logs" / "operator.log")
    process.start()
    yield process
    process.stop()
