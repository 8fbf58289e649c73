"""What tests use to talk to the live control plane: kubectl with its kubeconfig, and polling."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def wait_until(
    condition: Callable[[], Any], timeout: float = 60, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}: {last!r}")


class OperatorProcess:
    """The operator as a real process (`python -m testapp_operator`) against the live cluster,
    with the identity and kubeconfig the tests chose."""

    def __init__(
        self, kubeconfig: str, log_path: Path, *extra_args: str, standalone: bool = True
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args
        self.standalone = standalone
        self.process: subprocess.Popen[bytes] | None = None
        self.liveness_port = 0
        self.metrics_port = 0

    def start(self) -> None:
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testapp_operator",
                *(["--standalone"] if self.standalone else []),
                "--log-format=json",
                f"--metrics-port={self.metrics_port}",
                f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
                *self.extra_args,
            ],
            env={**os.environ, "KUBECONFIG": self.kubeconfig},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._alive, timeout=60, what="the operator's liveness endpoint")

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited; see {self.log_path}")
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_account_kubeconfig(cluster: LiveCluster, namespace: str, name: str, path: Path) -> str:
    """A kubeconfig that authenticates as the ServiceAccount `namespace/name`, by token only."""
    token = cluster.kubectl(
        "create", "token", name, "-n", namespace, "--duration=4h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority": f"{cluster.state_dir}/pki/ca.crt",
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
        "current-context": name,
    }
    path.write_text(json.dumps(config))
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
        with self.path.open() as log:
            log.seek(mark)
            entries = [json.loads(line) for line in log if line.strip()]
        return [
            entry
            for entry in entries
            if entry.get("stage") == "ResponseComplete"
            and entry.get("userAgent", "").startswith(agents)
        ]
