"""test-app under gunicorn, started with the exact CMD of Dockerfile.app in the project's
virtualenv, with the image's environment, on a free loopback port. No Docker engine needed."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.images.dockerfile import ROOT, expand, load

BUILD_ARGS = {"GIT_SHA": "0123abcd", "APP_VERSION": "1.4.0", "SOURCE_URL": ""}
DRAIN_SECONDS = 2.0
T = TypeVar("T")


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:  # 4xx/5xx still carry our JSON body
            return error.code, json.load(error)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """Poll `check` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except OSError:  # not listening yet
            pass
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    runtime = load("Dockerfile.app").final
    command = runtime.last("CMD").words
    # The image's ENV with the build args filled in; PATH is the image's, so the venv's here.
    image_env = {k: expand(v, BUILD_ARGS) for k, v in runtime.env().items() if k != "PATH"}
    port = free_loopback_port()
    env = {
        **os.environ,
        **image_env,
        "BIND": f"127.0.0.1:{port}",
        "DRAIN_SECONDS": str(DRAIN_SECONDS),
        "GRACEFUL_TIMEOUT": "10",
    }
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / command[0]), *command[1:]],
            cwd=ROOT / "app",  # the image's WORKDIR /app holds exactly these modules
            env=env,
            stdout=out,
            stderr=err,
        )
    server = Server(process, f"http://127.0.0.1:{port}", stdout, stderr)
    try:
        wait_for(lambda: server.get("/readyz")[0] == 200, "gunicorn to become ready")
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # gunicorn's quick stop, workers included
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_probes_and_version_answer_over_http(server: Server) -> None:
    assert server.get("/healthz") == (200, {"status": "ok"})
    assert server.get("/readyz") == (200, {"status": "ready"})
    # GIT_SHA and APP_VERSION travel build arg -> Dockerfile ENV -> the app.
    assert server.get("/version") == (
        200,
        {"app": "test-app", "version": "1.4.0", "commit": "0123abcd"},
    )
    assert server.get("/nope") == (404, {"error": "not found", "path": "/nope"})


def test_each_request_is_logged_as_one_json_line_on_stdout(server: Server) -> None:
    server.get("/healthz")
    server.get("/version")

    def logged() -> list[dict[str, Any]] | None:
        records = [json.loads(line) for line in server.stdout.read_text().splitlines()]
        paths = [r["path"] for r in records]
        return records if "/version" in paths and "/healthz" in paths else None

    records = wait_for(logged, "the access log lines")
    assert {(r["path"], r["status"], r["env"]) for r in records} >= {
        ("/healthz", 200, "dev"),
        ("/version", 200, "dev"),
    }


def test_sigterm_turns_readiness_off_keeps_serving_for_the_drain_then_exits_cleanly(
    server: Server,
) -> None:
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)

    wait_for(lambda: server.get("/readyz") == (503, {"status": "draining"}), "readyz 503")
    assert server.get("/healthz") == (200, {"status": "ok"})
    assert server.get("/")[0] == 200
    assert server.process.wait(timeout=DRAIN_SECONDS + 10) == 0
    assert time.monotonic() - sent >= DRAIN_SECONDS

    log = server.stderr.read_text()
    assert "Shutting down: Master" in log
    for bad in ("Traceback", "WORKER TIMEOUT", "SIGKILL", "was sent SIGKILL"):
        assert bad not in log
