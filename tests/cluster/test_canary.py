"""The canary's step machine through the real operator process and the real API server (kwok
simulates the Pods), judged by a fake Prometheus endpoint: a passing analysis promotes, a failing
one aborts, errors abort, and promote-step/abort work through spec.canaryCommand
(docs/canary.md). The real Prometheus and the real node: tests/node/test_canary.py."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from testapp_dev import LiveCluster, OperatorProcess, manifest, unique, wait_until

pytestmark = pytest.mark.cluster

QUERY = 'sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}"}[1m]))'
ANALYSIS = {"query": QUERY, "successCondition": "result < 0.05", "interval": "2s"}
NAMESPACE_RE = re.compile(r'namespace="([^"]+)"')


class FakePrometheus:
    """/api/v1/query answering, per namespace in the query, a value or an HTTP error; every
    query it was asked is kept."""

    def __init__(self) -> None:
        self.answers: dict[str, float | int] = {}  # namespace -> value, or an HTTP status
        self.errors: set[str] = set()  # namespaces whose queries get a 503
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
                fake.queries.append(query)
                match = NAMESPACE_RE.search(query)
                namespace = match.group(1) if match else ""
                if url.path != "/api/v1/query" or namespace in fake.errors:
                    self.answer(503, {"status": "error", "errorType": "unavailable"})
                elif namespace not in fake.answers:
                    self.answer(200, {"status": "success", "data": vector([])})
                else:
                    sample = {"metric": {}, "value": [time.time(), str(fake.answers[namespace])]}
                    self.answer(200, {"status": "success", "data": vector([sample])})

            def answer(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def vector(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resultType": "vector", "result": result}


@pytest.fixture(scope="module")
def prometheus(operator: OperatorProcess) -> Iterator[FakePrometheus]:
    """The fake, and the session's operator asking it (put back as it was afterwards)."""
    fake = FakePrometheus()
    before = operator.extra_args
    others = tuple(arg for arg in before if not arg.startswith("--prometheus"))
    operator.extra_args = (*others, f"--prometheus={fake.url}")
    operator.restart()
    yield fake
    operator.extra_args = before
    operator.restart()
    fake.close()


def release(cluster: LiveCluster, name: str) -> dict[str, Any]:
    return cluster.get("tar", name)


def patch(cluster: LiveCluster, name: str, spec: dict[str, Any]) -> None:
    cluster.kubectl("patch", "tar", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def canary_phase(cluster: LiveCluster, name: str, phase: str, timeout: float = 90) -> dict:
    def reached() -> dict | None:
        body = release(cluster, name)
        canary = (body.get("status") or {}).get("canary") or {}
        return body if canary.get("revision") == 2 and canary.get("phase") == phase else None

    return wait_until(reached, timeout=timeout, what=f"{name}: canary of revision 2 {phase}")


def canaried(cluster: LiveCluster, steps: list[dict[str, Any]], name: str | None = None) -> str:
    """A release with the strategy, Ready at revision 1 (4 replicas), then tag 2.0.0; `name`
    chosen first where the fake's answer is keyed by it."""
    name = name or unique("canary")
    strategy = {"canary": {"steps": steps}}
    body = manifest(name, tag="1.0.0", replicas=4, strategy=strategy)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    wait_until(
        lambda: (release(cluster, name).get("status") or {}).get("phase") == "Ready",
        timeout=60,
        what=f"{name} Ready at revision 1",
    )
    patch(cluster, name, {"tag": "2.0.0"})
    return name


def judged(cluster: LiveCluster, prometheus: FakePrometheus, answer: float) -> str:
    """A canary of 25 % then one analysis, which the fake answers with `answer`."""
    name = unique("canary")
    prometheus.answers[name] = answer
    return canaried(cluster, [{"setWeight": 25}, {"analysis": ANALYSIS}], name)


def deployment(cluster: LiveCluster, name: str, suffix: str = "") -> dict[str, Any]:
    return cluster.get("deployment", name + suffix, "-n", name)


def revision_of(body: dict[str, Any]) -> str:
    return body["spec"]["template"]["metadata"]["labels"]["testapp.dev/revision"]


def event_reasons(cluster: LiveCluster, name: str) -> set[str]:
    items = cluster.get(
        "events", "-n", "default", "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return {item["reason"] for item in items}


def test_a_passing_analysis_promotes_the_canary(
    cluster: LiveCluster, prometheus: FakePrometheus
) -> None:
    name = judged(cluster, prometheus, 0.01)

    body = canary_phase(cluster, name, "Promoted")

    assert f'namespace="{name}",track="canary"' in " ".join(prometheus.queries)
    assert body["status"]["canary"]["steps"] == 2
    assert revision_of(deployment(cluster, name)) == "2"
    wait_until(
        lambda: deployment(cluster, name, "-canary")["spec"]["replicas"] == 0,
        timeout=30,
        what="the canary Deployment at 0 replicas",
    )
    history = {r["revision"]: r["outcome"] for r in release(cluster, name)["status"]["history"]}
    assert history[2] == "Ready"
    assert {"CanaryWeight", "AnalysisMeasured", "CanaryPromoted"} <= event_reasons(cluster, name)


def test_a_failing_analysis_aborts_marks_the_revision_failed_and_keeps_stable(
    cluster: LiveCluster, prometheus: FakePrometheus
) -> None:
    name = judged(cluster, prometheus, 0.9)

    body = canary_phase(cluster, name, "Aborted")

    status = body["status"]
    assert status["canary"]["analysis"]["lastValue"] == "0.9"
    wait_until(
        lambda: release(cluster, name)["status"]["phase"] == "Degraded",
        timeout=30,
        what=f"{name} Degraded",
    )
    status = release(cluster, name)["status"]
    assert {r["revision"]: r["outcome"] for r in status["history"]}[2] == "Failed"
    entry = status["deployments"][0]
    assert (entry["action"], entry["revision"], entry["by"]) == (
        "AbortCanary",
        1,
        "testapp-operator",
    )
    assert "(measured 0.9)" in entry["cause"]
    assert revision_of(deployment(cluster, name)) == "1"
    cr = cluster.get("controllerrevision", f"{name}-2", "-n", name)
    assert cr["metadata"]["annotations"]["testapp.dev/outcome"] == "Failed"


def test_prometheus_errors_beyond_the_limit_abort(
    cluster: LiveCluster, prometheus: FakePrometheus
) -> None:
    name = unique("canary")
    prometheus.errors.add(name)
    steps = [{"setWeight": 25}, {"analysis": {**ANALYSIS, "consecutiveErrorLimit": 1}}]
    name = canaried(cluster, steps, name)

    body = canary_phase(cluster, name, "Aborted")

    assert body["status"]["canary"]["message"].startswith("AnalysisError")


def test_promote_step_and_abort_through_the_spec(
    cluster: LiveCluster, prometheus: FakePrometheus
) -> None:
    name = canaried(cluster, [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
    paused = canary_phase(cluster, name, "Paused")["status"]["canary"]
    assert (paused["step"], paused["pauseReason"]) == (1, "PauseStep")

    patch(cluster, name, {"canaryCommand": {"revision": 2, "promoteStep": 1}})
    wait_until(
        lambda: release(cluster, name)["status"]["canary"]["step"] == 3,
        timeout=60,
        what="the canary at its second pause",
    )
    assert release(cluster, name)["status"]["canary"]["weight"] == 50

    patch(cluster, name, {"canaryCommand": {"revision": 2, "promoteStep": 1, "abort": True}})
    canary_phase(cluster, name, "Aborted")
    assert revision_of(deployment(cluster, name)) == "1"
    wait_until(
        lambda: (
            deployment(cluster, name)["spec"]["replicas"] == 4
            and deployment(cluster, name, "-canary")["spec"]["replicas"] == 0
        ),
        timeout=30,
        what="stable at 4 replicas and the canary at 0",
    )
    assert release(cluster, name)["status"]["deployments"][0]["action"] == "AbortCanary"
