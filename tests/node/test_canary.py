"""End to end on the real node with the real Prometheus (docs/canary.md): a canary of a good build
goes 25 -> 50 -> 100 % and is promoted; a build whose `/` answers 500 (appimages.FAULT_TAG, the
same app built with TESTAPP_FAULT=500) is aborted at its first analysis, while the Service never
fails more than about the canary's share of requests and stable keeps serving.

The Prometheus is the one `cluster-up` starts with the real node (clusterprometheus.py); the
operator asks it (--prometheus). Each test prints how long each step took.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testapp_dev import LiveCluster, OperatorProcess, localcluster, wait_until
from testapp_dev.node import LoadLoop, NodeReleases, appimages, get_json

pytestmark = pytest.mark.cluster

REPLICAS = 4
# The 5xx share of the canary's requests to `/` over the last 30 s (5 s scrapes: six samples).
# `or vector(0)`: a good build has no 5xx series at all, which is a ratio of 0, not "no data".
FIVE_XX_RATIO = (
    '(sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}",route="/",'
    'status=~"5.."}[30s])) or vector(0))'
    ' / sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}",route="/"}[30s]))'
)
ANALYSIS = {
    "query": FIVE_XX_RATIO,
    "successCondition": "result < 0.05",
    # The canary Pod's series need two scrapes (5 s apart) after its first request; on a machine
    # running make test's three lanes 20 s once found none yet (no data).
    "interval": "30s",
    "count": 1,
    # A canary that got no request in 30 s says nothing: a human looks (the test fails then).
    "onNoData": "pause",
}
STEPS = [{"setWeight": 25}, {"analysis": ANALYSIS}, {"setWeight": 50}, {"analysis": ANALYSIS}]
# The canary's share of the Pods at 25 % of 4 replicas is 1 of 4; connections are spread by
# kube-proxy at random, so a window of a few hundred requests is allowed a margin above it.
CANARY_SHARE = 0.25
SHARE_MARGIN = 0.15
CANARY_TIMEOUT = 240  # the whole canary of the good build: two Pods, two analyses, a promotion
# Between two requests of a load thread: a minute and more of new connections must stay below
# what TIME_WAIT leaves of the local ports (LoadLoop).
PACE = 0.01


@pytest.fixture(scope="module")
def prometheus_url(cluster: LiveCluster, real_node: str) -> str:
    running = localcluster.read_state(Path(cluster.state_dir))
    assert running is not None
    url = localcluster.clusterprometheus.url(running)
    if url is None:
        pytest.skip("no Prometheus beside the real node (see the cluster's log of cluster-up)")
    return url


@pytest.fixture(scope="module")
def judged_operator(operator: OperatorProcess, prometheus_url: str) -> OperatorProcess:
    """The session's operator, asking the cluster's Prometheus (restarted once with the flag: it
    starts before the real node, whose Prometheus it did not know yet)."""
    flag = f"--prometheus={prometheus_url}"
    if flag not in operator.extra_args:
        operator.extra_args = (
            *(arg for arg in operator.extra_args if not arg.startswith("--prometheus")),
            flag,
        )
        operator.restart()
    return operator


@pytest.fixture(scope="module")
def canaried(
    cluster: LiveCluster,
    judged_operator: OperatorProcess,
    app_images: appimages.AppImages,
) -> Iterator[tuple[NodeReleases, str]]:
    """One release with the canary strategy, Ready at revision 1 (the first revision has nothing
    to be a canary beside: it rolls out as usual)."""
    made = NodeReleases(cluster, app_images.repository)
    name = made.create(
        "1.0.0", replicas=REPLICAS, prefix="canary", strategy={"canary": {"steps": STEPS}}
    )
    made.wait_ready(name, revision=1, timeout=180)
    yield made, name
    made.delete_all()


@dataclass(frozen=True)
class Seen:
    """One state of status.canary, when the test first saw it."""

    at: float  # time.monotonic()
    revision: int
    step: int
    phase: str
    weight: int
    step_started_at: str


def canary_of(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("status") or {}).get("canary") or {}


def follow_canary(
    releases: NodeReleases, name: str, revision: int, until: set[str], timeout: float
) -> tuple[dict[str, Any], list[Seen]]:
    """Polls the release until its canary of `revision` reaches a phase of `until`; returns the
    last body and every state seen on the way. A pause (no data, inconclusive) fails at once."""
    seen: list[Seen] = []
    deadline = time.monotonic() + timeout
    while True:
        body = releases.get(name)
        canary = canary_of(body)
        if canary.get("revision") == revision:
            state = Seen(
                time.monotonic(),
                revision,
                int(canary.get("step", -1)),
                str(canary.get("phase", "")),
                int(canary.get("weight", 0)),
                str(canary.get("stepStartedAt", "")),
            )
            if not seen or (state.step, state.phase, state.weight) != (
                seen[-1].step,
                seen[-1].phase,
                seen[-1].weight,
            ):
                seen.append(state)
            if state.phase in until:
                return body, seen
            assert state.phase != "Paused", f"the canary paused: {json.dumps(canary)}"
        assert time.monotonic() < deadline, (
            f"canary of revision {revision} not {sorted(until)} in {timeout:.0f} s; "
            f"status.canary: {json.dumps(canary)}; seen: {seen}"
        )
        time.sleep(0.5)


def report_steps(what: str, seen: list[Seen]) -> list[tuple[str, float]]:
    """How long each state lasted (by the test's clock), printed for the closing note."""
    durations = [
        (f"step {a.step} {a.phase} weight {a.weight}", round(b.at - a.at, 1))
        for a, b in itertools.pairwise(seen)
    ]
    line = "; ".join(f"{label}: {took} s" for label, took in durations)
    print(f"{what}: {line}", file=sys.stderr)
    return durations


def deployment(cluster: LiveCluster, name: str, deployment_name: str) -> dict[str, Any]:
    return cluster.get("deployment", deployment_name, "-n", name)


def revision_of_deployment(body: dict[str, Any]) -> str:
    labels = body["spec"]["template"]["metadata"].get("labels") or {}
    return labels.get("testapp.dev/revision", "")


def test_a_good_build_goes_25_50_100_and_is_promoted_without_a_failed_request(
    cluster: LiveCluster, canaried: tuple[NodeReleases, str]
) -> None:
    releases, name = canaried
    url = releases.url(name)

    with LoadLoop(url, 2, CANARY_TIMEOUT + 30, path="/", interval=PACE) as load:
        releases.patch(name, {"tag": "1.1.0"})
        body, seen = follow_canary(releases, name, 2, {"Promoted", "Aborted"}, CANARY_TIMEOUT)
        releases.wait_ready(name, revision=2)
    result = load.result

    durations = report_steps("good build", seen)
    print(f"good build, requests to /: {result.summary()}", file=sys.stderr)
    canary = canary_of(body)
    assert canary["phase"] == "Promoted", canary
    assert [s.weight for s in seen if s.phase == "Progressing"][:1] == [25]
    assert {s.weight for s in seen} >= {25, 50}
    stable = deployment(cluster, name, name)
    assert revision_of_deployment(stable) == "2"
    assert deployment(cluster, name, f"{name}-canary")["spec"]["replicas"] == 0
    history = {r["revision"]: r["outcome"] for r in releases.get(name)["status"]["history"]}
    assert history[2] == "Ready"
    assert result.sent > 0 and result.failed == 0, result.summary()
    assert durations


def test_a_build_answering_500_is_aborted_at_the_first_analysis_and_stable_keeps_serving(
    cluster: LiveCluster, canaried: tuple[NodeReleases, str]
) -> None:
    releases, name = canaried
    before = releases.wait_ready(name, revision=releases.get(name)["status"]["revision"])
    stable_revision = before["status"]["revision"]
    fault_revision = max(r["revision"] for r in before["status"]["history"]) + 1
    stable_before = deployment(cluster, name, name)
    url = releases.url(name)

    releases.patch(name, {"tag": appimages.FAULT_TAG})
    # The analysis window: from the canary's Pod serving (its step 1, the analysis) to the abort.
    _, seen = follow_canary(releases, name, fault_revision, {"Progressing"}, 60)
    wait_until(
        lambda: (
            canary_of(releases.get(name)).get("step", 0) >= 1
            or canary_of(releases.get(name)).get("phase") == "Aborted"
        ),
        timeout=90,
        what="the fault build's canary at its analysis step",
    )
    with LoadLoop(url, threads=2, max_seconds=90, path="/", interval=PACE) as load:
        body, more = follow_canary(releases, name, fault_revision, {"Aborted", "Promoted"}, 90)
    result = load.result

    report_steps("fault-500 build", seen + more)
    print(f"fault-500 build, requests to / in the analysis: {result.summary()}", file=sys.stderr)
    status = body["status"]
    canary = canary_of(body)
    assert canary["phase"] == "Aborted", canary
    assert canary["step"] == 1  # the first analysis
    assert status["phase"] == "Degraded"
    history = {r["revision"]: r["outcome"] for r in status["history"]}
    assert history[fault_revision] == "Failed"
    aborts = [e for e in status.get("deployments", []) if e["action"] == "AbortCanary"]
    # The entry is what runs after it (stable); its cause names the canary and the value.
    assert aborts and aborts[0]["revision"] == stable_revision, status.get("deployments")
    assert f"canary revision {fault_revision} AnalysisFailed" in aborts[0]["cause"], aborts
    measured = (canary.get("analysis") or {}).get("lastValue") or canary.get("message", "")
    assert measured and f"(measured {measured})" in aborts[0]["cause"], (measured, aborts)
    stable = deployment(cluster, name, name)
    assert revision_of_deployment(stable) == str(stable_revision)
    assert stable["spec"]["template"] == stable_before["spec"]["template"]
    assert result.sent > 0
    assert result.failed <= (CANARY_SHARE + SHARE_MARGIN) * result.sent, result.summary()
    wait_until(
        lambda: deployment(cluster, name, f"{name}-canary")["status"].get("replicas", 0) == 0,
        timeout=60,
        what="the canary scaled to 0",
    )
    answers = [get_json(url, "/")[0] for _ in range(20)]
    assert answers == [200] * 20
