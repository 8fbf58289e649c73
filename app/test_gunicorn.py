"""test-app under its real server: gunicorn with gunicorn.conf.py and two worker processes, on a
loopback port. /metrics must count every request whichever worker answered it, and whichever
worker answers the scrape."""

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).resolve().parent
WORKERS = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> tuple[int, str]:
    """One request on a connection of its own, so the kernel may hand it to any worker."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def root_requests(exposition: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "http_requests_total" and sample.labels.get("route") == "/":
                return sample.value
    return 0.0


def worker_pids(metrics_dir: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}


def root_requests_by_worker(metrics_dir: Path, scratch: Path) -> dict[str, float]:
    """What each worker counted alone: its counter file read on its own."""
    counted = {}
    for pid in worker_pids(metrics_dir):
        alone = scratch / pid
        alone.mkdir(exist_ok=True)
        (alone / f"counter_{pid}.db").write_bytes((metrics_dir / f"counter_{pid}.db").read_bytes())
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counted[pid] = root_requests(generate_latest(registry).decode())
    return counted


def serve(environ: dict[str, str]) -> Iterator[int]:
    """gunicorn with gunicorn.conf.py on a free loopback port, until the generator closes."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:__hug_wsgi__"],
        cwd=HERE,
        env={
            **environ,
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(WORKERS),
            "DRAIN_SECONDS": "0",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert process.poll() is None, f"gunicorn exited with {process.returncode}"
            assert time.monotonic() < deadline, "gunicorn did not become ready within 30 s"
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """One server for the module: starting and stopping gunicorn takes seconds."""
    metrics_dir = tmp_path_factory.mktemp("metrics")
    (metrics_dir / "counter_1.db").write_bytes(b"")  # a dead server's: must not be counted
    for port in serve({**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}):
        yield port, metrics_dir


def test_every_scrape_counts_the_requests_of_every_worker(
    server: tuple[int, Path], tmp_path: Path
) -> None:
    port, metrics_dir = server
    sent = 0
    # Until every worker has answered some, so a scrape answered by any must add them all up.
    deadline = time.monotonic() + 20
    while True:
        by_worker = root_requests_by_worker(metrics_dir, tmp_path)
        if sent >= 20 and len(by_worker) == WORKERS and all(by_worker.values()):
            break
        assert time.monotonic() < deadline, f"not every worker answered: {by_worker}"
        assert get(port, "/")[0] == 200
        sent += 1

    scrapes = [get(port, "/metrics") for _ in range(10)]

    assert {status for status, _ in scrapes} == {200}
    assert [root_requests(text) for _, text in scrapes] == [sent] * len(scrapes)


def test_a_server_start_empties_the_metrics_directory(server: tuple[int, Path]) -> None:
    _, metrics_dir = server

    assert "1" not in worker_pids(metrics_dir)


def test_a_server_removes_the_metrics_directory_it_made_when_it_exits() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    before = set(Path("/dev/shm").glob("test-app-metrics-*"))
    running = serve(environ)
    port = next(running)
    assert get(port, "/metrics")[0] == 200
    made = set(Path("/dev/shm").glob("test-app-metrics-*")) - before

    running.close()

    assert len(made) == 1
    assert not next(iter(made)).exists()
