"""The test-app image, run with podman as Kubernetes would run it: its own user, a read-only root
filesystem, a port on loopback; probes, version, access log, labels, and a graceful SIGTERM."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from testapp_dev import free_port, wait_until
from testapp_dev.podman import LEFTOVERS_SCRIPT, Podman

from tests.images.conftest import Images

pytestmark = pytest.mark.images

DRAIN_SECONDS = 2
GRACEFUL_TIMEOUT = 10


@dataclass(frozen=True)
class App:
    """A running container of the app image and its URL on loopback."""

    name: str
    url: str

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:  # 4xx/5xx still carry the app's JSON body
            return error.code, json.load(error)

    def answers(self, path: str, expected: tuple[int, Any]) -> bool:
        try:
            return self.get(path) == expected
        except OSError:  # not listening (yet, or any more)
            return False

    def text(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.read().decode()


def run_app(podman: Podman, images: Images, *env: str) -> Iterator[App]:
    name = f"pytest-app-{uuid.uuid4().hex[:8]}"
    port = free_port()
    environment = [f"DRAIN_SECONDS={DRAIN_SECONDS}", f"GRACEFUL_TIMEOUT={GRACEFUL_TIMEOUT}", *env]
    podman(
        "run", "--detach", "--pull=never", "--name", name,
        # As readOnlyRootFilesystem in Kubernetes: no tmpfs on /tmp either.
        "--read-only", "--read-only-tmpfs=false",
        "--publish", f"127.0.0.1:{port}:8000",
        *(f"--env={variable}" for variable in environment),
        images.app,
    )  # fmt: skip
    running = App(name, f"http://127.0.0.1:{port}")
    try:
        wait_until(
            lambda: running.answers("/readyz", (200, {"status": "ready"})),
            timeout=60,
            what="the app container's /readyz",
        )
        yield running
    finally:
        podman("rm", "--force", "--time=0", name, check=False)


@pytest.fixture
def app(podman: Podman, images: Images) -> Iterator[App]:
    yield from run_app(podman, images)


@pytest.fixture
def faulty_app(podman: Podman, images: Images) -> Iterator[App]:
    yield from run_app(podman, images, "TESTAPP_FAULT=500")


def test_it_runs_as_uid_10001_on_a_read_only_root_filesystem(podman: Podman, app: App) -> None:
    status = podman("exec", app.name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    write = podman("exec", app.name, "sh", "-c", "echo x > /tmp/probe", check=False)
    command = podman("exec", app.name, "cat", "/proc/1/cmdline").stdout

    assert uids == ["10001"] * 4
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    assert podman.inspect(app.name)["HostConfig"]["ReadonlyRootfs"] is True
    assert "gunicorn" in command  # PID 1: the process that receives SIGTERM


def test_the_probes_and_version_answer_with_the_build_args(app: App, images: Images) -> None:
    assert app.get("/healthz") == (200, {"status": "ok"})
    assert app.get("/readyz") == (200, {"status": "ready"})
    assert app.get("/version") == (
        200,
        {"app": "test-app", "version": images.app_version, "commit": images.git_sha},
    )


def test_metrics_count_every_worker_s_requests_on_a_read_only_root_filesystem(app: App) -> None:
    for _ in range(6):
        assert app.get("/")[0] == 200

    scrapes = [app.text("/metrics") for _ in range(4)]

    line = 'http_requests_total{method="GET",route="/",status="200"} 6.0'
    assert all(line in scrape for scrape in scrapes)


def test_a_build_with_testapp_fault_answers_500_on_root_and_passes_its_probes(
    faulty_app: App, podman: Podman, images: Images
) -> None:
    status, body = faulty_app.get("/")

    assert (status, body) == (500, {"error": "this build answers 500 (TESTAPP_FAULT)"})
    assert faulty_app.get("/healthz") == (200, {"status": "ok"})
    good_build = json.loads(podman("image", "inspect", images.app).stdout)[0]
    assert "TESTAPP_FAULT=" in good_build["Config"]["Env"]  # empty unless built with the arg


def test_an_unknown_path_is_a_plain_404_without_documentation(app: App) -> None:
    status, body = app.get("/nope")

    assert status == 404
    assert body == {"error": "not found", "path": "/nope"}


def test_each_request_is_one_json_line_on_stdout(podman: Podman, app: App) -> None:
    app.get("/version")

    def logged() -> list[dict[str, Any]] | None:
        lines = podman("logs", app.name).stdout.splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return records if any(r["path"] == "/version" for r in records) else None

    records = wait_until(logged, timeout=10, what="the access log line of /version")
    assert {(r["path"], r["status"], r["env"]) for r in records} >= {("/version", 200, "dev")}


def test_sigterm_drains_then_exits_0_within_drain_plus_graceful_timeout(
    podman: Podman, app: App
) -> None:
    sent = time.monotonic()
    podman("kill", "--signal", "TERM", app.name)

    wait_until(lambda: app.answers("/readyz", (503, {"status": "draining"})), timeout=5, what="503")
    assert app.get("/healthz") == (200, {"status": "ok"})  # still serving while it drains
    exit_code = podman("wait", app.name, timeout=DRAIN_SECONDS + GRACEFUL_TIMEOUT + 10).stdout
    elapsed = time.monotonic() - sent

    assert exit_code.strip() == "0"
    assert DRAIN_SECONDS <= elapsed <= DRAIN_SECONDS + GRACEFUL_TIMEOUT
    log = podman("logs", app.name).stderr
    assert "Shutting down: Master" in log
    assert "Traceback" not in log
    assert "WORKER TIMEOUT" not in log


@pytest.mark.parametrize(
    ("image", "title"), [("app", "test-app"), ("operator", "testapp-operator")]
)
def test_the_oci_labels_name_the_build(
    podman: Podman, images: Images, image: str, title: str
) -> None:
    labels = podman.labels(getattr(images, image))

    assert labels["org.opencontainers.image.title"] == title
    assert labels["org.opencontainers.image.revision"] == images.git_sha
    assert labels["org.opencontainers.image.version"] == images.app_version
    assert "org.opencontainers.image.source" in labels


@pytest.mark.parametrize("image", ["app", "operator"])
def test_the_runtime_image_has_no_test_runner_pip_cache_compiler_or_tests(
    podman: Podman, images: Images, image: str
) -> None:
    assert podman.run_python(getattr(images, image), LEFTOVERS_SCRIPT, user="0") == []
