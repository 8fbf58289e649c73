"""A canaried release through the reconciler and a recording fake API server: the two
Deployments, status.canary, commands, the analysis against a stub Prometheus, the abort's audit
trail, the fast rollback (docs/canary.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from testapp_operator import CHANGED_BY_ANNOTATION, OUTCOME_ANNOTATION, metrics
from testapp_operator.canary import REVISION_LABEL, TRACK_LABEL, QueryOutcome, Values
from testapp_operator.events import EventRecorder
from testapp_operator.reconciler import Reconciler

from tests.unit.fake_kube import FakeKube

NAME = "test-app-dev"
CANARY = f"{NAME}-canary"
QUERY = 'sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}"}[1m]))'
PAUSED_STRATEGY = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]}}


def analysed_strategy(**analysis: Any) -> dict[str, Any]:
    step = {"query": QUERY, "successCondition": "result < 0.05", "interval": 1, **analysis}
    return {"canary": {"steps": [{"setWeight": 25}, {"analysis": step}]}}


class Harness:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.queries: list[str] = []
        self.answer: QueryOutcome = Values((0.0,))
        self.reconciler = self.operator()

    def operator(self) -> Reconciler:
        return Reconciler(self.kube, self.kube.world(), EventRecorder(self.kube.event), self.query)

    async def query(self, promql: str) -> QueryOutcome:
        self.queries.append(promql)
        return self.answer

    async def reconcile(self) -> None:
        await self.reconciler.reconcile(NAME)
        await self.reconciler.events.flush()

    async def settled(self, strategy: dict[str, Any]) -> None:
        """Revision 1 Ready with the strategy, 4 replicas; writes and events cleared."""
        self.kube.create_release(NAME, tag="1", replicas=4, strategy=strategy)
        await self.reconcile()
        self.kube.finish_rollout(NAME)
        await self.reconcile()
        self.kube.take_writes()
        self.kube.events.clear()

    async def paused_at_first_pause(self) -> None:
        """PAUSED_STRATEGY's canary of revision 2, its Pod ready, waiting at its pause step."""
        await self.settled(PAUSED_STRATEGY)
        await self.new_tag()
        self.kube.finish_rollout(CANARY)
        await self.reconcile()

    async def new_tag(self, tag: str = "2") -> None:
        self.kube.change_spec(NAME, tag=tag)
        await self.reconcile()

    async def command(self, user: str = "alice", **command: Any) -> None:
        """What `kubectl testapp promote-step` / `abort` write, stamped by the admission policy."""
        body = self.kube.objects[("TestAppRelease", NAME)]
        body["metadata"].setdefault("annotations", {})[CHANGED_BY_ANNOTATION] = user
        self.kube.change_spec(NAME, canaryCommand={"revision": 2, **command})
        await self.reconcile()

    def deployment(self, name: str = NAME) -> dict[str, Any]:
        return self.kube.objects[("Deployment", name)]

    def tracks(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """(revision, replicas) of stable and of the canary."""

        def one(body: dict[str, Any]) -> tuple[str, int]:
            labels = body["spec"]["template"]["metadata"]["labels"]
            return labels[REVISION_LABEL], body["spec"]["replicas"]

        return one(self.deployment()), one(self.deployment(CANARY))

    def canary(self) -> dict[str, Any]:
        return self.kube.status(NAME)["canary"]


def scenario(test: Callable[[Harness], Awaitable[None]]) -> Callable[[], None]:
    def run() -> None:
        asyncio.run(test(Harness()))

    run.__name__ = test.__name__
    return run


def reasons(kube: FakeKube) -> list[str]:
    return [reason for _, reason, _ in kube.events]


@scenario
async def test_a_strategy_gives_stable_its_track_and_an_empty_canary_deployment(h: Harness) -> None:
    await h.settled(PAUSED_STRATEGY)

    stable = h.deployment()["spec"]["template"]["metadata"]
    assert stable["labels"][TRACK_LABEL] == "stable"
    assert stable["annotations"]["prometheus.io/scrape"] == "true"
    assert h.tracks() == (("1", 4), ("1", 0))
    assert "canary" not in h.kube.status(NAME)  # the first revision goes straight in
    assert h.kube.status(NAME)["phase"] == "Ready"


@scenario
async def test_a_new_tag_adds_a_canary_pod_and_stable_keeps_its_pods_until_it_is_ready(
    h: Harness,
) -> None:
    await h.settled(PAUSED_STRATEGY)

    await h.new_tag()

    assert h.tracks() == (("1", 4), ("2", 1))
    assert h.deployment(CANARY)["spec"]["selector"]["matchLabels"][TRACK_LABEL] == "canary"
    canary = h.canary()
    assert (canary["revision"], canary["stableRevision"], canary["step"]) == (2, 1, 0)
    assert (canary["phase"], canary["weight"], canary["steps"]) == ("Progressing", 25, 3)
    status = h.kube.status(NAME)
    assert status["phase"] == "Progressing"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "CanaryInProgress" and "step 1/3, weight 25%" in ready["message"]
    assert "CanaryWeight" in reasons(h.kube)

    h.kube.finish_rollout(CANARY)
    await h.reconcile()

    assert h.tracks() == (("1", 3), ("2", 1))  # one of each track, the total never below 4
    assert (h.canary()["step"], h.canary()["phase"]) == (1, "Paused")
    assert h.canary()["pauseReason"] == "PauseStep"


@scenario
async def test_promote_step_then_the_last_step_then_stable_takes_the_canary_revision(
    h: Harness,
) -> None:
    await h.paused_at_first_pause()

    await h.command(promoteStep=1)
    assert h.tracks() == (("1", 3), ("2", 2))  # weight 50: stable waits for the second canary
    h.kube.finish_rollout(CANARY)
    await h.reconcile()
    assert h.tracks() == (("1", 2), ("2", 2))
    h.kube.finish_rollout(NAME)  # the Deployment controller saw stable's new replicas
    await h.reconcile()

    assert h.canary()["phase"] == "Promoting"
    assert h.tracks() == (("2", 4), ("2", 2))  # the canary keeps its share meanwhile
    h.kube.finish_rollout(NAME)
    await h.reconcile()
    await h.reconcile()

    assert h.canary()["phase"] == "Promoted"
    assert h.tracks() == (("2", 4), ("2", 0))
    status = h.kube.status(NAME)
    assert (status["phase"], status["revision"]) == ("Ready", 2)
    assert status["history"][0]["outcome"] == "Ready"
    assert {"CanaryStepPromoted", "CanaryPromoting", "CanaryPromoted"} <= set(reasons(h.kube))
    h.kube.take_writes()
    await h.reconcile()
    assert h.kube.take_writes() == []  # an ended canary is steady: nothing to write


@scenario
async def test_abort_by_hand_marks_the_revision_failed_logs_who_and_keeps_stable(
    h: Harness,
) -> None:
    await h.paused_at_first_pause()

    await h.command(abort=True)

    assert h.tracks() == (("1", 4), ("2", 0))
    assert h.canary()["phase"] == "Aborted"
    assert h.kube.revisions(NAME)[2]["metadata"]["annotations"][OUTCOME_ANNOTATION] == "Failed"
    status = h.kube.status(NAME)
    assert (status["phase"], status["revision"]) == ("Degraded", 1)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "revision 2 aborted as a canary" in degraded["message"]
    entry = status["deployments"][0]
    assert (entry["action"], entry["revision"], entry["by"]) == ("AbortCanary", 1, "alice")
    assert entry["cause"].startswith("canary revision 2 AbortedByUser")
    assert status["deployments"][1]["outcome"] == "Failed"
    assert "AbortCanary" in reasons(h.kube)

    h.kube.take_writes()
    await h.reconcile()
    assert h.kube.take_writes() == []  # the aborted revision is not tried again


@scenario
async def test_a_failed_analysis_aborts_with_the_measured_value(h: Harness) -> None:
    await h.settled(analysed_strategy())
    await h.new_tag()
    h.kube.finish_rollout(CANARY)
    await h.reconcile()
    assert h.canary()["step"] == 1 and h.queries == []  # the first measurement is an interval on
    before = metrics.ANALYSES.labels(result="Failed")._value.get()
    h.answer = Values((0.5,))

    await asyncio.sleep(1.1)
    await h.reconcile()

    assert h.queries == [
        'sum(rate(http_requests_total{namespace="test-app-dev",track="canary"}[1m]))'
    ]
    assert h.canary()["phase"] == "Aborted"
    assert h.canary()["analysis"]["lastValue"] == "0.5"
    assert h.tracks() == (("1", 4), ("2", 0))
    entry = h.kube.status(NAME)["deployments"][0]
    assert (entry["action"], entry["by"]) == ("AbortCanary", "testapp-operator")
    assert entry["cause"].startswith("canary revision 2 AnalysisFailed")
    assert "(measured 0.5)" in entry["cause"]
    assert metrics.ANALYSES.labels(result="Failed")._value.get() == before + 1


@scenario
async def test_a_passing_analysis_promotes(h: Harness) -> None:
    await h.settled(analysed_strategy())
    await h.new_tag()
    h.kube.finish_rollout(CANARY)
    await h.reconcile()
    h.answer = Values((0.01,))

    await asyncio.sleep(1.1)
    await h.reconcile()

    assert h.canary()["phase"] == "Promoting" and len(h.queries) == 1
    assert h.reconciler.canary_weights() == [(NAME, 25)]


@scenario
async def test_without_a_prometheus_the_analysis_counts_errors_until_it_aborts(
    h: Harness,
) -> None:
    h.reconciler = Reconciler(h.kube, h.kube.world(), EventRecorder(h.kube.event))
    await h.settled(analysed_strategy(consecutiveErrorLimit=0))
    await h.new_tag()
    h.kube.finish_rollout(CANARY)
    await h.reconcile()

    await asyncio.sleep(1.1)
    await h.reconcile()

    assert h.canary()["phase"] == "Aborted"
    assert "--prometheus" in h.canary()["analysis"]["lastMessage"]


@scenario
async def test_a_canary_whose_pods_never_become_ready_is_aborted(h: Harness) -> None:
    await h.settled(PAUSED_STRATEGY)
    await h.new_tag()

    h.kube.finish_rollout(CANARY, deadline_exceeded=True)
    await h.reconcile()

    assert h.canary()["phase"] == "Aborted"
    assert h.tracks() == (("1", 4), ("2", 0))
    assert "CanaryFailed: the canary Deployment" in h.kube.status(NAME)["deployments"][0]["cause"]


@scenario
async def test_a_restarted_operator_resumes_the_same_step_and_writes_nothing(h: Harness) -> None:
    await h.paused_at_first_pause()
    h.kube.take_writes()
    paused = h.canary()

    h.reconciler = h.operator()  # a new process: nothing in memory, only the status
    await h.reconcile()

    assert h.kube.take_writes() == [] and h.canary() == paused


@scenario
async def test_a_rollback_to_a_ready_revision_skips_the_steps(h: Harness) -> None:
    await h.paused_at_first_pause()
    await h.command(promoteStep=1)
    for deployment in (CANARY, NAME, NAME):
        h.kube.finish_rollout(deployment)
        await h.reconcile()
    assert h.canary()["phase"] == "Promoted"

    h.kube.change_spec(NAME, revision=1)
    await h.reconcile()

    assert h.tracks() == (("1", 4), ("2", 0))  # straight back, no canary of revision 1
    assert h.canary()["revision"] == 2 and h.canary()["phase"] == "Promoted"


@scenario
async def test_a_new_tag_during_a_canary_supersedes_it(h: Harness) -> None:
    await h.settled(PAUSED_STRATEGY)
    await h.new_tag("2")
    h.kube.finish_rollout(CANARY)
    await h.reconcile()

    await h.new_tag("3")

    canary = h.canary()
    assert (canary["revision"], canary["stableRevision"], canary["phase"]) == (3, 1, "Progressing")
    assert h.tracks() == (("1", 4), ("3", 1))


@scenario
async def test_dropping_the_strategy_removes_the_canary_deployment(h: Harness) -> None:
    await h.settled(PAUSED_STRATEGY)

    h.kube.change_spec(NAME, strategy=None)
    await h.reconcile()

    assert ("Deployment", CANARY) not in h.kube.objects
    assert "canary" not in h.kube.status(NAME)
