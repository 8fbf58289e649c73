"""The chaos tests run against one operator and against two at once (docs/design.md, Two
operators at once): a second standalone operator reconciles the same releases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testapp_dev import LiveCluster, OperatorProcess


@pytest.fixture(params=[1, 2], ids=["one-operator", "two-operators"])
def operators(
    request: pytest.FixtureRequest, cluster: LiveCluster, operator: OperatorProcess
) -> Iterator[list[OperatorProcess]]:
    processes = [operator]
    if request.param == 2:
        log = Path(cluster.state_dir) / "logs" / "operator-2.log"
        processes.append(OperatorProcess(operator.kubeconfig, log))
        processes[1].start()
    yield processes
    for process in processes[1:]:
        process.stop()
