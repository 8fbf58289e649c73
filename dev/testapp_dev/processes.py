"""The operator as a real process, and the free ports it listens on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from testapp_dev.waits import wait_until


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
