"""Support for the tests and the benchmarks (not shipped with the operator).

- `cluster`: the local control plane (`localcluster`, the launcher; `LiveCluster`; `AuditLog`;
  `TEST_CLUSTER_DIR`, the test session's own state directory).
- `processes`: the operator as a real process (`OperatorProcess`), `free_port`.
- `releases`: TestAppRelease manifests and names for tests (`IMAGE`, `manifest`, `unique`).
- `waits`: `wait_until`, a condition with a deadline.
"""

from testapp_dev.cluster import (
    OPERATOR_AGENTS,
    TEST_CLUSTER_DIR,
    AuditLog,
    LiveCluster,
    localcluster,
    service_account_kubeconfig,
)
from testapp_dev.processes import OperatorProcess, free_port
from testapp_dev.releases import IMAGE, is_ready_at, manifest, unique
from testapp_dev.waits import wait_until

__all__ = [
    "IMAGE",
    "OPERATOR_AGENTS",
    "TEST_CLUSTER_DIR",
    "AuditLog",
    "LiveCluster",
    "OperatorProcess",
    "free_port",
    "is_ready_at",
    "localcluster",
    "manifest",
    "service_account_kubeconfig",
    "unique",
    "wait_until",
]
