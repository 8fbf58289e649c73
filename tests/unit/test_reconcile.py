"""One reconcile against a recording fake API server: which writes, in which order, and none
when nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from testapp_operator.decide import STALE_GRACE
from testapp_operator.events import EventRecorder
from testapp_operator.queue import Result
from testapp_operator.reconciler import CONFLICT_RETRY, Cache, Reconciler
from testapp_operator.status import ERROR_MESSAGE_LIMIT

from tests.unit.fake_kube import CREATED, FakeKube

NAME = "test-app-dev"
IMAGE = "registry.example.com/test-app"


class Harness:
    def __init__(self) -> None:
        self.kube = FakeKube()
        self.reconciler = Reconciler(self.kube, self.kube.world(), EventRecorder(self.kube.event))

    async def reconcile(self) -> Result:
        try:
            return await self.reconciler.reconcile(NAME)
        finally:
            await self.reconciler.events.flush()

    async def settled(self, tag: str = "1", **spec: Any) -> None:
        """A release Ready at revision 1 (tag `tag`), writes and events cleared."""
        self.kube.create_release(NAME, tag=tag, **spec)
        await self.reconcile()
        self.kube.finish_rollout(NAME)
        await self.reconcile()
        self.kube.take_writes()
        self.kube.events.clear()

    async def deploy(self, tag: str) -> None:
        """Change the tag and let the rollout finish."""
        self.kube.change_spec(NAME, tag=tag)
        await self.reconcile()
        self.kube.finish_rollout(NAME)
        await self.reconcile()
        self.kube.take_writes()
        self.kube.events.clear()


def scenario(test: Callable[[Harness], Awaitable[None]]) -> Callable[[], None]:
    """A test body that runs in its own event loop against a fresh fake API server."""

    def run() -> None:
        asyncio.run(test(Harness()))

    run.__name__ = test.__name__
    return run


async def fails_once(h: Harness, verb: str, kind: str) -> None:
    """A reconcile during which every `verb` of `kind` fails; the next ones succeed."""
    h.kube.failing[(verb, kind)] = ApiException(status=500, reason=f"injected: {verb} {kind}")
    with pytest.raises(ApiException):
        await h.reconcile()
    h.kube.failing.clear()


def reasons(kube: FakeKube) -> list[str]:
    return [reason for _, reason, _ in kube.events]


@scenario
async def test_a_new_release_writes_namespace_deployment_then_service_and_revision_then_status(
    h: Harness,
) -> None:
    h.kube.create_release(NAME, tag="1")

    result = await h.reconcile()

    assert h.kube.take_writes() == [
        ("apply", "Namespace", NAME),
        ("apply", "Deployment", NAME),
        ("apply", "Service", NAME),
        ("apply", "NetworkPolicy", f"{NAME}-default-deny"),
        ("apply", "NetworkPolicy", f"{NAME}-allow-http"),
        ("apply", "ControllerRevision", f"{NAME}-1"),
        ("patch", "TestAppRelease/status", NAME),
    ]
    assert result == Result()
    assert reasons(h.kube) == ["RevisionCreated"]
    status = h.kube.status(NAME)
    assert (status["phase"], status["revision"]) == ("Progressing", 1)
    # The history shows the server's creation time at once: no second write for it.
    assert status["history"][0]["created"] == CREATED


@scenario
async def test_a_completed_rollout_writes_only_the_status(h: Harness) -> None:
    h.kube.create_release(NAME, tag="1")
    await h.reconcile()
    h.kube.take_writes()
    h.kube.finish_rollout(NAME)

    await h.reconcile()

    assert h.kube.take_writes() == [("patch", "TestAppRelease/status", NAME)]
    assert h.kube.status(NAME)["phase"] == "Ready"
    assert h.kube.status(NAME)["history"][0]["outcome"] == "Ready"


@scenario
async def test_an_unchanged_world_writes_nothing(h: Harness) -> None:
    await h.settled()

    for _ in range(3):
        assert await h.reconcile() == Result()

    assert h.kube.take_writes() == []
    assert h.kube.events == []


@scenario
async def test_a_tag_change_applies_the_deployment_first_then_records_the_revision(
    h: Harness,
) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")

    await h.reconcile()

    # The Namespace, Service and policies do not change with the tag: no write for them.
    assert h.kube.take_writes() == [
        ("apply", "Deployment", NAME),
        ("apply", "ControllerRevision", f"{NAME}-2"),
        ("patch", "TestAppRelease/status", NAME),
    ]
    assert sorted(h.kube.revisions(NAME)) == [1, 2]


@scenario
async def test_the_revision_created_event_says_what_changed(h: Harness) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2", variables=[{"name": "LOG_LEVEL", "value": "debug"}])

    await h.reconcile()

    assert h.kube.events == [
        (
            "Normal",
            "RevisionCreated",
            f"revision 2 created: tag 1 -> 2, variables changed ({IMAGE}:2)",
        )
    ]


@scenario
async def test_a_failed_deployment_write_records_nothing_and_the_retry_records_once(
    h: Harness,
) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")

    await fails_once(h, "apply", "Deployment")

    assert h.kube.take_writes() == []
    assert sorted(h.kube.revisions(NAME)) == [1]
    assert h.kube.events == []
    await h.reconcile()
    await h.reconcile()
    assert sorted(h.kube.revisions(NAME)) == [1, 2]
    assert reasons(h.kube) == ["RevisionCreated"]


@scenario
async def test_a_failed_revision_write_is_recorded_by_the_next_reconcile_under_the_same_number(
    h: Harness,
) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")

    await fails_once(h, "apply", "ControllerRevision")

    await h.reconcile()
    revisions = h.kube.revisions(NAME)
    assert sorted(revisions) == [1, 2]
    assert revisions[2]["data"]["tag"] == "2"
    assert h.kube.status(NAME)["revision"] == 2


@scenario
async def test_a_stale_watch_does_not_record_the_same_snapshot_twice(h: Harness) -> None:
    await h.settled()
    lagging = h.kube.world()
    h.kube.change_spec(NAME, tag="2")
    await h.reconcile()
    # The watch has not delivered revision 2 yet: our own write stands in for it.
    h.reconciler.world = replace(
        lagging,
        revisions=lambda name: [r for r in lagging.revisions(name) if r["revision"] != 2],
    )

    await h.reconcile()

    assert sorted(h.kube.revisions(NAME)) == [1, 2]


@scenario
async def test_pinning_deploys_the_old_revision_and_says_rolled_back(h: Harness) -> None:
    await h.settled()
    await h.deploy("2")
    h.kube.change_spec(NAME, revision=1)

    await h.reconcile()

    assert ("apply", "Deployment", NAME) in h.kube.take_writes()
    assert h.kube.status(NAME)["revision"] == 1
    assert reasons(h.kube) == ["RolledBack", "Pinned"]
    deployment = h.kube.objects[("Deployment", NAME)]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1"


@scenario
async def test_a_stalled_rollout_marks_the_revision_failed_and_rolls_back(h: Harness) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")
    await h.reconcile()
    h.kube.take_writes()
    h.kube.events.clear()
    h.kube.finish_rollout(NAME, deadline_exceeded=True)

    await h.reconcile()

    assert h.kube.take_writes()[:2] == [
        ("annotate", "ControllerRevision", f"{NAME}-2"),
        ("apply", "Deployment", NAME),
    ]
    assert reasons(h.kube) == ["AutoRolledBack"]
    status = h.kube.status(NAME)
    assert (status["phase"], status["revision"]) == ("Degraded", 1)
    annotations = h.kube.revisions(NAME)[2]["metadata"]["annotations"]
    assert annotations["testapp.dev/outcome"] == "Failed"


@scenario
async def test_pruning_deletes_the_oldest_revision_with_one_event(h: Harness) -> None:
    await h.settled(revisionHistoryLimit=2)
    await h.deploy("2")
    h.kube.change_spec(NAME, tag="3")

    await h.reconcile()

    assert ("delete", "ControllerRevision", f"{NAME}-1") in h.kube.take_writes()
    assert sorted(h.kube.revisions(NAME)) == [2, 3]
    assert reasons(h.kube) == ["RevisionCreated", "Pruned"]


@scenario
async def test_a_revision_another_operator_pruned_first_gets_no_second_event(h: Harness) -> None:
    await h.settled(revisionHistoryLimit=2)
    await h.deploy("2")
    h.kube.change_spec(NAME, tag="3")
    # Another operator pruned revision 1; this one's watch has not seen it go yet.
    stale = h.kube.objects.pop(("ControllerRevision", f"{NAME}-1"))
    world = h.reconciler.world
    h.reconciler.world = replace(world, revisions=lambda name: [*world.revisions(name), stale])

    await h.reconcile()

    assert sorted(h.kube.revisions(NAME)) == [2, 3]
    assert reasons(h.kube) == ["RevisionCreated"]


@scenario
async def test_progress_alone_is_written_at_most_every_interval_and_requeued(h: Harness) -> None:
    h.kube.create_release(NAME, tag="1", replicas=3)
    await h.reconcile()
    h.kube.take_writes()
    deployment = h.kube.objects[("Deployment", NAME)]
    deployment["status"] = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 1,
        "availableReplicas": 1,
    }

    result = await h.reconcile()

    assert h.kube.take_writes() == []
    assert result.requeue_after is not None and 0 < result.requeue_after <= 30


@scenario
async def test_an_invalid_spec_is_reported_once_and_changes_nothing_running(h: Harness) -> None:
    await h.settled()
    body = h.kube.objects[("TestAppRelease", NAME)]
    body["spec"]["tag"] = "not a tag"  # past an older CRD

    await h.reconcile()
    await h.reconcile()

    assert h.kube.take_writes() == [("patch", "TestAppRelease/status", NAME)]
    status = h.kube.status(NAME)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == ("Degraded", "InvalidSpec")
    assert "spec.tag" in ready["message"]
    assert reasons(h.kube) == ["InvalidSpec"]


@scenario
async def test_a_deleted_release_is_forgotten_and_writes_nothing(h: Harness) -> None:
    await h.settled()
    h.kube.objects.pop(("TestAppRelease", NAME))
    h.reconciler.forget(NAME)  # what the watch's DELETED event does

    assert await h.reconcile() == Result()

    assert h.kube.take_writes() == []
    assert h.reconciler.phases() == []


# --- two operators at once (docs/design.md, Two operators at once) -----------------------------


def second_operator(h: Harness, world: Cache) -> Reconciler:
    return Reconciler(h.kube, world, EventRecorder(h.kube.event))


@scenario
async def test_an_operator_that_sees_an_older_spec_than_what_runs_writes_nothing(
    h: Harness,
) -> None:
    await h.settled()
    lagging = h.kube.world(frozen=True)
    h.kube.change_spec(NAME, tag="2")
    await h.reconcile()
    h.kube.take_writes()
    # The other operator's release watch lags; its Deployment watch does not.
    other = second_operator(h, replace(h.kube.world(), release=lagging.release))

    result = await other.reconcile(NAME)

    assert h.kube.take_writes() == []
    assert result.requeue_after is not None
    assert sorted(h.kube.revisions(NAME)) == [1, 2]


@scenario
async def test_a_generation_label_edited_by_hand_holds_the_operator_back_only_briefly(
    h: Harness,
) -> None:
    await h.settled()
    deployment = h.kube.objects[("Deployment", NAME)]
    deployment["metadata"]["labels"]["testapp.dev/generation"] = "999"
    await h.reconcile()
    assert h.kube.take_writes() == []
    state = h.reconciler._releases[NAME]
    state.memory = replace(state.memory, stale_since=state.memory.stale_since - STALE_GRACE)

    await h.reconcile()

    assert h.kube.take_writes()[0] == ("apply", "Deployment", NAME)
    assert deployment is not h.kube.objects[("Deployment", NAME)]


@scenario
async def test_an_operator_that_decided_from_an_old_deployment_version_cannot_apply_it(
    h: Harness,
) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")
    lagging = h.kube.world(frozen=True)  # the new spec, the Deployment before anyone acted
    await h.reconcile()
    h.kube.change_spec(NAME, tag="3")
    h.kube.take_writes()
    other = second_operator(
        h,
        replace(lagging, release=h.kube.world().release),  # sees tag 3, not revision 2
    )

    result = await other.reconcile(NAME)

    assert h.kube.take_writes() == [("apply", "Deployment", NAME)]  # answered 409
    assert result == Result(CONFLICT_RETRY)
    assert sorted(h.kube.revisions(NAME)) == [1, 2]


@scenario
async def test_an_operator_that_has_not_seen_the_new_revision_records_it_under_the_same_number(
    h: Harness,
) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")
    await h.reconcile()
    h.kube.take_writes()
    h.kube.events.clear()
    world = h.kube.world()
    other = second_operator(
        h,
        replace(
            world,
            revisions=lambda name: [r for r in world.revisions(name) if r["revision"] != 2],
        ),
    )

    await other.reconcile(NAME)
    await other.events.flush()

    revisions = h.kube.revisions(NAME)
    assert sorted(revisions) == [1, 2]
    assert revisions[2]["data"]["tag"] == "2"
    assert ("apply", "Deployment", NAME) not in h.kube.take_writes()
    assert reasons(h.kube) == []  # the one that created it said so


# --- errors a retry will not fix reach the release ---------------------------------------------

FORBIDDEN_BODY = (
    '{"kind":"Status","message":"deployments.apps \\"test-app-dev\\" is forbidden: '
    'User \\"system:serviceaccount:testapp-system:testapp-operator\\" cannot patch"}'
)


def forbidden() -> ApiException:
    error = ApiException(status=403, reason="Forbidden")
    error.body = FORBIDDEN_BODY
    return error


def ready_condition(h: Harness) -> dict[str, Any]:
    return next(c for c in h.kube.status(NAME)["conditions"] if c["type"] == "Ready")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (forbidden(), 'HTTP 403 Forbidden: deployments.apps "test-app-dev" is forbidden'),
        (ApiException(status=422, reason="Unprocessable Entity"), "HTTP 422 Unprocessable"),
        (KeyError("spec"), "internal error: KeyError: 'spec'"),
    ],
)
def test_a_lasting_write_error_turns_ready_false_with_its_message_and_one_event(
    error: Exception, says: str
) -> None:
    @scenario
    async def run(h: Harness) -> None:
        await h.settled()
        h.kube.change_spec(NAME, tag="2")
        h.kube.failing[("apply", "Deployment")] = error

        for _ in range(3):
            with pytest.raises(type(error)):
                await h.reconcile()

        ready = ready_condition(h)
        assert (ready["status"], ready["reason"]) == ("False", "ReconcileError")
        assert ready["message"].startswith(says)
        assert [e for e in h.kube.events if e[1] == "ReconcileError"] == [
            ("Warning", "ReconcileError", ready["message"])
        ]
        # The retries write nothing more: the status says so already.
        assert h.kube.take_writes().count(("patch", "TestAppRelease/status", NAME)) == 1

    run()


@scenario
async def test_the_error_clears_when_a_reconcile_succeeds(h: Harness) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")
    h.kube.failing[("apply", "Deployment")] = forbidden()
    with pytest.raises(ApiException):
        await h.reconcile()

    h.kube.failing.clear()
    await h.reconcile()

    assert ready_condition(h)["reason"] == "RolloutInProgress"
    h.kube.finish_rollout(NAME)
    await h.reconcile()
    assert ready_condition(h)["reason"] == "RolloutComplete"


@scenario
async def test_a_second_distinct_error_gets_its_own_event(h: Harness) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")
    for error in (forbidden(), forbidden(), KeyError("x")):
        h.kube.failing[("apply", "Deployment")] = error
        with pytest.raises(type(error)):
            await h.reconcile()
    assert reasons(h.kube).count("ReconcileError") == 2
    assert "KeyError" in ready_condition(h)["message"]


@pytest.mark.parametrize(
    "error",
    [ApiException(status=500, reason="x"), ApiException(status=429), ConnectionResetError()],
)
def test_a_transient_error_is_retried_without_touching_the_status(error: Exception) -> None:
    @scenario
    async def run(h: Harness) -> None:
        await h.settled()
        h.kube.change_spec(NAME, tag="2")
        h.kube.failing[("apply", "Deployment")] = error
        with pytest.raises(type(error)):
            await h.reconcile()
        assert h.kube.take_writes() == []
        assert "ReconcileError" not in reasons(h.kube)

    run()


@scenario
async def test_a_long_error_message_is_cut(h: Harness) -> None:
    await h.settled()
    h.kube.change_spec(NAME, tag="2")
    h.kube.failing[("apply", "Deployment")] = KeyError("x" * 5000)
    with pytest.raises(KeyError):
        await h.reconcile()
    assert len(ready_condition(h)["message"]) == ERROR_MESSAGE_LIMIT
