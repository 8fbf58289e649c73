"""Releases on the real node (hack/cluster/realnode.py), and a bounded HTTP load loop through a
Service: for the end-to-end tests (tests/node/) and the zero-downtime bench."""

from __future__ import annotations

import errno
import http.client
import json
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testapp_operator import REVISION_ANNOTATION

from testapp_dev import scripts
from testapp_dev.cluster import LiveCluster, localcluster
from testapp_dev.releases import manifest, unique
from testapp_dev.waits import wait_until

appimages = scripts.load("appimages", "hack/cluster/appimages.py")


class NodeReleases:
    """TestAppReleases whose namespaces send their Pods to the real node."""

    def __init__(self, cluster: LiveCluster, repository: str) -> None:
        self.cluster = cluster
        self.repository = repository
        self.names: list[str] = []

    def create(self, tag: str, replicas: int = 1, prefix: str = "node", **spec: Any) -> str:
        name = unique(prefix)
        self.names.append(name)
        running = localcluster.read_state(Path(self.cluster.state_dir))
        assert running is not None
        localcluster.place_on_real_node(running, name)
        body = manifest(name, tag, image=self.repository, replicas=replicas, **spec)
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
        return name

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        body = json.dumps({"spec": spec})
        self.cluster.kubectl("patch", "tar", name, "--type=merge", "-p", body)

    def get(self, name: str) -> dict[str, Any]:
        return self.cluster.get("tar", name)

    def wait_ready(self, name: str, revision: int, timeout: float = 120) -> dict[str, Any]:
        """Ready at `revision`, and every Pod of the namespace Ready at it (no old one left)."""

        def ready() -> dict[str, Any] | None:
            body = self.get(name)
            status = body.get("status") or {}
            if status.get("observedGeneration") != body["metadata"]["generation"]:
                return None
            if (status.get("phase"), status.get("revision")) != ("Ready", revision):
                return None
            pods = self.pods(name)
            settled = pods and all(
                pod_ready(p)
                and revision_of(p) == revision
                and "deletionTimestamp" not in p["metadata"]
                for p in pods
            )
            return body if settled else None

        return wait_until(ready, timeout=timeout, what=f"{name} Ready at revision {revision}")

    def pods(self, name: str) -> list[dict[str, Any]]:
        return self.cluster.get("pods", "-n", name)["items"]

    def url(self, name: str) -> str:
        service = self.cluster.get("service", name, "-n", name)
        return f"http://{service['spec']['clusterIP']}:80"

    def delete_all(self) -> None:
        for name in self.names:
            self.cluster.kubectl("delete", "tar", name, "--wait=false", check=False)
            self.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def revision_of(pod: dict[str, Any]) -> int:
    return int(pod["metadata"]["annotations"].get(REVISION_ANNOTATION, 0))


def get_json(url: str, path: str, timeout: float = 2) -> tuple[int, dict[str, Any]]:
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def version(url: str) -> str | None:
    try:
        status, body = get_json(url, "/version")
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return body.get("version") if status == 200 else None


def wait_version(url: str, expected: str, timeout: float = 60) -> None:
    wait_until(
        lambda: version(url) == expected, timeout=timeout, what=f"{url}/version = {expected}"
    )


@dataclass
class LoadResult:
    sent: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms) or [0.0]
        return {
            "sent": self.sent,
            "failed": self.failed,
            "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
            "versions_seen": dict(self.versions),
            "errors": dict(self.errors),
        }


class LoadLoop:
    """GET `path` (/version) through a Service from a few threads, one new connection per request
    (each is routed afresh by kube-proxy), until stopped or bounded by `max_seconds`/
    `max_requests`."""

    def __init__(
        self,
        url: str,
        threads: int = 4,
        max_seconds: float = 180,
        max_requests: int = 50_000,
        path: str = "/version",
        interval: float = 0.0,
    ) -> None:
        """`interval`: seconds each thread waits between requests. A loop longer than a minute
        needs one: every request is a new connection, and a closed one holds its local port in
        TIME_WAIT for 60 s, so more than ~28 000 in a minute exhaust the ports (EADDRNOTAVAIL)."""
        self.url = url
        self.path = path
        self.interval = interval
        self.threads = threads
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> LoadLoop:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        return self.result

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            with self._lock:
                if self.result.sent >= self.max_requests:
                    return
                self.result.sent += 1
            started = time.perf_counter()
            error = None
            try:
                status, body = get_json(self.url, self.path)
                if status != 200:
                    error = f"HTTP {status}"
            except (OSError, ValueError, http.client.HTTPException) as failure:
                error = type(failure).__name__
                if isinstance(failure, OSError) and failure.errno in errno.errorcode:
                    error += f" {errno.errorcode[failure.errno]}"
            elapsed = (time.perf_counter() - started) * 1000
            with self._lock:
                if error:
                    self.result.failed += 1
                    self.result.errors[error] += 1
                else:
                    self.result.latencies_ms.append(elapsed)
                    self.result.versions[body.get("version", "?")] += 1
            if self.interval:
                self._stop.wait(self.interval)
