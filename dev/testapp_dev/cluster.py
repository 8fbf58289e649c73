"""The local control plane for tests and benchmarks: the launcher (hack/cluster/localcluster.py),
kubectl with its kubeconfig, and the API server's audit log.

The launcher is a script, not a package: it is loaded here from its path, once per process,
under the module name `localcluster`.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testapp_dev import scripts

REPO = Path(__file__).resolve().parents[2]
# A test session never shares a control plane with `make demo` or `make cluster-up` (.cluster/):
# the demo's operator would reconcile the tests' releases beside the tests' own operator.
TEST_CLUSTER_DIR = Path(os.environ.get("TESTAPP_CLUSTER_DIR") or REPO / ".cluster-test")


localcluster = scripts.load("localcluster", "hack/cluster/localcluster.py")


@dataclass(frozen=True)
class LiveCluster:
    """A running control plane and the ways tests talk to it."""

    kubeconfig: str
    server: str
    state_dir: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    @property
    def audit(self) -> AuditLog:
        return AuditLog(Path(self.state_dir) / "logs" / "audit.log")

    def apply(self, manifest: dict[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", *flags, "-f", "-", input=json.dumps(manifest), check=False)


def service_account_kubeconfig(cluster: LiveCluster, namespace: str, name: str, path: Path) -> str:
    """A kubeconfig that authenticates as the ServiceAccount `namespace/name`, by token only. The
    CA is inline and the file readable by all, so an image's user (UID 10001) can mount it alone."""
    token = cluster.kubectl(
        "create", "token", name, "-n", namespace, "--duration=4h"
    ).stdout.strip()
    ca = (Path(cluster.state_dir) / "pki" / "ca.crt").read_bytes()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config))
    path.chmod(0o644)
    return str(path)


OPERATOR_AGENTS = ("testapp-operator", "kopf/")


@dataclass(frozen=True)
class AuditLog:
    """The API server's audit log of writes (hack/cluster/audit-policy.yaml)."""

    path: Path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def writes_since(self, mark: int, agents: tuple[str, ...] = OPERATOR_AGENTS) -> list[dict]:
        """Write requests (ResponseComplete) made since `mark` by clients of these agents."""
        with self.path.open("rb") as log:
            # The mark may have been taken halfway through a line: start at the next whole one.
            log.seek(max(mark - 1, 0))
            if mark and log.read(1) != b"\n":
                log.readline()
            # The API server may be halfway through its last line: only whole lines are read.
            entries = [json.loads(line) for line in log if line.endswith(b"\n") and line.strip()]
        return [
            entry
            for entry in entries
            if entry.get("stage") == "ResponseComplete"
            and entry.get("userAgent", "").startswith(agents)
        ]
