"""Fixtures shared by every test: the live local control plane (started once per session).

The session's control plane lives in its own state directory (`TEST_CLUSTER_DIR`, .cluster-test/
unless TESTAPP_CLUSTER_DIR names another), never the one `make demo` leaves running in .cluster/:
an operator left running there would reconcile the tests' releases beside the tests' own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from testapp_dev import (
    TEST_CLUSTER_DIR,
    LiveCluster,
    OperatorProcess,
    localcluster,
    service_account_kubeconfig,
)

REPO = Path(__file__).resolve().parent.parent
# Helper processes the tests start (the launcher, kubectl plugins) find the same control plane.
os.environ["TESTAPP_CLUSTER_DIR"] = str(TEST_CLUSTER_DIR)


def pytest_report_header() -> str:
    return f"control plane for cluster tests: {TEST_CLUSTER_DIR} (not the demo's)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the control plane is a `cluster` test, marked or not: `make test-unit`
    (-m 'not cluster') then never starts one."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LiveCluster]:
    """The local control plane: reused if one runs in TEST_CLUSTER_DIR, else started here."""
    with localcluster.running(
        TEST_CLUSTER_DIR, log=lambda line: print(line, file=sys.stderr)
    ) as running:
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
        [sys.executable, "-m", "testapp_operator.delivery.install", "crd"],
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
