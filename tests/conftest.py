"""Fixtures shared by every test: the live local control plane (started once per session)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LiveCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack" / "cluster"))

import localcluster


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
