"""hack/cluster/prometheus.py: the real Prometheus (built once, or taken from the cache) scrapes
test-app under gunicorn, answers the queries a canary analysis asks, and finds Pods through the
API server by their annotations, with the labels the analysis selects on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from testapp_dev import LiveCluster, scripts
from testapp_operator import canary

prometheus = scripts.load("prometheus", "hack/cluster/prometheus.py")

pytestmark = pytest.mark.cluster  # a Go build, the first time: never in `make test-unit`
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.5)


def api(address: str, path: str, **params: str) -> tuple[int, bytes]:
    url = f"http://{address}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def query(address: str, promql: str) -> canary.QueryOutcome:
    return canary.parse_query_response(*api(address, "/api/v1/query", query=promql))


@pytest.fixture(scope="module")
def binary() -> Path:
    return prometheus.ensure_prometheus(
        prometheus.CACHE_DIR, lambda line: print(line, file=sys.stderr)
    )


@pytest.fixture
def start(binary: Path, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts Prometheus with a config; returns its address. Stopped after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def run(config: str) -> str:
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(config)
        address = prometheus.free_address()
        processes.append(
            prometheus.start(
                binary, config_file, tmp_path / "data", address, tmp_path / "prometheus.log"
            )
        )
        return address

    yield run
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def app() -> Iterator[str]:
    """test-app under gunicorn (two workers) on loopback; yields its host:port."""
    address = prometheus.free_address()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:__hug_wsgi__"],
        cwd=REPO / "app",
        env={**os.environ, "BIND": address, "WEB_CONCURRENCY": "2", "DRAIN_SECONDS": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready() -> bool | None:
        try:
            return api(address, "/readyz")[0] == 200 or None
        except OSError:
            return None

    try:
        eventually(ready, "test-app answers /readyz", timeout=30)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_binary_is_the_pinned_version_with_kubernetes_discovery(binary: Path) -> None:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)

    assert "version 3.16.0" in result.stdout
    assert "enable_kubernetes_sd" in result.stdout


def test_prometheus_scrapes_the_app_and_answers_the_analysis_queries(
    start: Callable[[str], str], app: str
) -> None:
    labels = {"track": "canary", "revision": "7", "namespace": "test-app-dev"}
    config = prometheus.prometheus_config(
        static=[prometheus.StaticTarget(app, labels)], scrape_interval_seconds=1
    )
    address = start(config)
    for _ in range(12):
        api(app, "/")
    api(app, "/no/such/page")

    served = eventually(
        lambda: (
            outcome
            if isinstance(
                outcome := query(
                    address, 'sum(http_requests_total{track="canary",route="/",status="200"})'
                ),
                canary.Values,
            )
            and outcome.values == (12.0,)
            else None
        ),
        "Prometheus has scraped the 12 requests to /",
    )
    ratio = query(
        address,
        'sum(http_requests_total{track="canary",status=~"5.."} or vector(0))'
        ' / sum(http_requests_total{track="canary"})',
    )
    missing = query(address, 'http_requests_total{track="no-such-track"}')
    broken = query(address, "sum(http_requests_total{")
    ranged = query(address, "http_requests_total[1m]")

    assert served == canary.Values((12.0,))
    assert isinstance(ratio, canary.Values) and ratio.values == (0.0,)
    assert missing == canary.NoData("the query matched no series")
    assert isinstance(broken, canary.QueryFailed) and "bad_data" in broken.message
    assert isinstance(ranged, canary.QueryFailed) and "matrix" in ranged.message


def test_a_template_rendered_for_the_canary_selects_its_series(
    start: Callable[[str], str], app: str
) -> None:
    labels = {"track": "canary", "revision": "7", "namespace": "test-app-dev"}
    address = start(
        prometheus.prometheus_config(
            static=[prometheus.StaticTarget(app, labels)], scrape_interval_seconds=1
        )
    )
    api(app, "/")
    template = (
        'sum(http_requests_total{namespace="{{namespace}}",track="{{track}}",'
        'revision="{{revision}}",route="/"})'
    )
    rendered = canary.render_query(template, canary.QueryContext("test-app-dev", "test-app-dev", 7))

    outcome = eventually(
        lambda: result if isinstance(result := query(address, rendered), canary.Values) else None,
        "the rendered query finds the canary's series",
    )

    assert outcome == canary.Values((1.0,))


# --- discovery through the API server ---------------------------------------------------------

READER_RBAC = prometheus.reader_rbac(
    # Not the cluster's own Prometheus's binding (clusterprometheus.py): this one replaced it once,
    # and the real node's canaries then found no data.
    {"kind": "ServiceAccount", "name": "prometheus", "namespace": "default"},
    "testapp-prometheus-test",
)


def pod(name: str, namespace: str, annotations: dict[str, str], **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": annotations,
            "labels": labels,
        },
        "spec": {
            "nodeName": "kwok-node-0",
            "containers": [
                {"name": "app", "image": "test-app", "ports": [{"containerPort": 8000}]}
            ],
        },
    }


def targets(address: str) -> list[dict[str, Any]]:
    status, body = api(address, "/api/v1/targets", state="active")
    assert status == 200, body
    return json.loads(body)["data"]["activeTargets"]


def test_pods_are_found_by_their_annotations_with_namespace_pod_release_track_and_revision(
    cluster: LiveCluster, namespace: str, start: Callable[[str], str], tmp_path: Path
) -> None:
    for manifest in READER_RBAC:
        assert cluster.apply(manifest).returncode == 0
    cluster.kubectl("create", "serviceaccount", "prometheus", "-n", "default", check=False)
    token = cluster.kubectl("create", "token", "prometheus", "-n", "default").stdout.strip()
    (tmp_path / "token").write_text(token)
    scraped = {"prometheus.io/scrape": "true", "prometheus.io/port": "9102"}
    on_its_path = {**scraped, "prometheus.io/path": "/custom/metrics"}
    labelled = {
        "app.kubernetes.io/instance": "test-app-dev",
        canary.TRACK_LABEL: canary.CANARY,
        canary.REVISION_LABEL: "7",
    }
    for manifest in (
        pod("canary-pod", namespace, scraped, **labelled),
        pod("own-path", namespace, on_its_path),
        pod("unannotated", namespace, {}),
        pod("opted-out", namespace, {"prometheus.io/scrape": "false"}),
    ):
        assert cluster.apply(manifest).returncode == 0, manifest["metadata"]["name"]
    access = prometheus.KubernetesAccess(
        server=cluster.server,
        ca_file=Path(cluster.state_dir) / "pki" / "ca.crt",
        token_file=tmp_path / "token",
        node_name="kwok-node-0",
    )
    address = start(prometheus.prometheus_config(access, scrape_interval_seconds=1))

    def ours() -> dict[str, dict[str, Any]] | None:
        found = {
            target["labels"]["pod"]: target
            for target in targets(address)
            if target["labels"].get("namespace") == namespace
        }
        return found if {"canary-pod", "own-path"} <= set(found) else None

    found = eventually(ours, "Prometheus lists the annotated Pods as targets")

    assert sorted(found) == ["canary-pod", "own-path"]
    labels = found["canary-pod"]["labels"]
    keys = ("namespace", "pod", "release", "track", "revision")
    assert {key: labels.get(key) for key in keys} == {
        "namespace": namespace,
        "pod": "canary-pod",
        "release": "test-app-dev",
        "track": "canary",
        "revision": "7",
    }
    assert found["canary-pod"]["scrapeUrl"].endswith(":9102/metrics")
    assert found["own-path"]["scrapeUrl"].endswith(":9102/custom/metrics")
    assert "track" not in found["own-path"]["labels"]
