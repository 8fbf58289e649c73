"""Deployment -> Rollout like `kubectl rollout status`; and the whole release status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testapp_operator.release import Release, Snapshot
from testapp_operator.revisions import Outcome, Revision, plan
from testapp_operator.rollout import Rollout, observe_deployment
from testapp_operator.status import compute_status

P, R, F, S = Outcome.PROGRESSING, Outcome.READY, Outcome.FAILED, Outcome.SUPERSEDED
IMAGE = "registry.example.com/test-app"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
DEADLINE = "ProgressDeadlineExceeded"


def deployment(
    *,
    revision: str | None = "2",
    desired: int = 3,
    generation: int = 5,
    observed: int = 5,
    replicas: int = 3,
    updated: int = 3,
    ready: int = 3,
    available: int = 3,
    progressing_reason: str = "NewReplicaSetAvailable",
) -> dict[str, Any]:
    annotations = {"testapp.dev/revision": revision} if revision is not None else {}
    return {
        "metadata": {"name": "test-app-dev", "generation": generation},
        "spec": {"replicas": desired, "template": {"metadata": {"annotations": annotations}}},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": progressing_reason},
            ],
        },
    }


# --- observe_deployment ----------------------------------------------------------------------


def test_no_deployment_is_an_empty_rollout() -> None:
    assert observe_deployment(None) == Rollout()


def test_a_finished_rollout_is_complete() -> None:
    rollout = observe_deployment(deployment())

    assert rollout == Rollout(
        revision=2,
        exists=True,
        current=True,
        desired=3,
        replicas=3,
        updated=3,
        ready=3,
        available=3,
        deadline_exceeded=False,
        complete=True,
        message="3 of 3 replicas available",
    )


@pytest.mark.parametrize(
    ("fields", "complete", "deadline", "message"),
    [
        ({"observed": 4}, False, False, "waiting for the Deployment controller"),
        ({"observed": 4, "progressing_reason": "ProgressDeadlineExceeded"}, False, False, "wait"),
        ({"progressing_reason": "ProgressDeadlineExceeded"}, False, True, "deadline exceeded"),
        ({"updated": 1}, False, False, "1 of 3 new replicas updated"),
        ({"replicas": 4}, False, False, "1 old replicas pending termination"),
        ({"available": 2}, False, False, "2 of 3 updated replicas available"),
        ({"desired": 0, "replicas": 0, "updated": 0, "ready": 0, "available": 0}, True, False, ""),
    ],
)
def test_rollout_progress_is_decided_like_kubectl_rollout_status(
    fields: dict[str, Any], complete: bool, deadline: bool, message: str
) -> None:
    rollout = observe_deployment(deployment(**fields))

    assert (rollout.complete, rollout.deadline_exceeded) == (complete, deadline)
    assert message in rollout.message


@pytest.mark.parametrize(
    ("annotation", "number"), [("7", 7), (None, None), ("x", None), ("0", None)]
)
def test_the_running_revision_comes_from_the_pod_template(
    annotation: str | None, number: int | None
) -> None:
    assert observe_deployment(deployment(revision=annotation)).revision == number


# --- compute_status --------------------------------------------------------------------------


def release(tag: str = "2", **fields: Any) -> Release:
    digest = fields.pop("digest", None)
    return Release(
        name="test-app-dev",
        uid="u",
        generation=6,
        env="dev",
        snapshot=Snapshot(IMAGE, tag, digest=digest),
        **fields,
    )


def revisions(*outcomes: Outcome) -> list[Revision]:
    return [
        Revision(n, release(str(n)).snapshot, o, f"pipeline {n}", f"2026-01-0{n}T00:00:00Z")
        for n, o in enumerate(outcomes, start=1)
    ]


def status_of(
    spec: Release, history: list[Revision], rollout: Rollout, previous: Any = (), now=NOW
) -> dict[str, Any]:
    return compute_status(spec, plan(spec, history, rollout), rollout, history, previous, now)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


READY_ROLLOUT = observe_deployment(deployment())


def test_a_ready_release_reports_everything_the_design_lists() -> None:
    status = status_of(release(), revisions(R, R), READY_ROLLOUT)

    assert status == {
        "observedGeneration": 6,
        "phase": "Ready",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "RolloutComplete",
                "message": "revision 2: 3 of 3 replicas available",
                "lastTransitionTime": "2026-03-04T05:06:07Z",
                "observedGeneration": 6,
            },
            {
                "type": "Pinned",
                "status": "False",
                "reason": "NotPinned",
                "message": "spec.revision is not set",
                "lastTransitionTime": "2026-03-04T05:06:07Z",
                "observedGeneration": 6,
            },
            {
                "type": "Degraded",
                "status": "False",
                "reason": "AsExpected",
                "message": "no failure",
                "lastTransitionTime": "2026-03-04T05:06:07Z",
                "observedGeneration": 6,
            },
        ],
        "revision": 2,
        "image": f"{IMAGE}:2",
        "tag": "2",
        "replicas": 3,
        "readyReplicas": 3,
        "pinned": False,
        "paused": False,
        "selector": "app=test-app,env=dev",
        "history": [
            {
                "revision": 2,
                "tag": "2",
                "image": IMAGE,
                "created": "2026-01-02T00:00:00Z",
                "changeCause": "pipeline 2",
                "outcome": "Ready",
            },
            {
                "revision": 1,
                "tag": "1",
                "image": IMAGE,
                "created": "2026-01-01T00:00:00Z",
                "changeCause": "pipeline 1",
                "outcome": "Ready",
            },
        ],
    }


def test_an_unchanged_world_gives_an_identical_status_later() -> None:
    first = status_of(release(), revisions(R, R), READY_ROLLOUT)

    again = status_of(release(), revisions(R, R), READY_ROLLOUT, first["conditions"], LATER)

    assert again == first


def test_a_condition_that_flips_gets_a_new_transition_time_and_the_others_keep_theirs() -> None:
    first = status_of(release(), revisions(R, R), READY_ROLLOUT)
    rolling = observe_deployment(deployment(updated=1))

    later = status_of(release(), revisions(R, R), rolling, first["conditions"], LATER)

    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert times == {
        "Ready": "2026-03-04T06:06:07Z",
        "Pinned": "2026-03-04T05:06:07Z",
        "Degraded": "2026-03-04T05:06:07Z",
    }


@pytest.mark.parametrize(
    ("spec", "outcomes", "rollout", "phase", "expected"),
    [
        pytest.param(
            release("3"),
            [R, R],
            READY_ROLLOUT,
            "Progressing",
            {"Ready": ("False", "RolloutInProgress"), "Degraded": ("False", "AsExpected")},
            id="new-revision-deploying",
        ),
        pytest.param(
            release("2"),
            [R, P],
            observe_deployment(deployment(available=1)),
            "Progressing",
            {"Ready": ("False", "RolloutInProgress")},
            id="rolling-out",
        ),
        pytest.param(
            release("2", pin=1),
            [R, R],
            observe_deployment(deployment(revision="1")),
            "Ready",
            {"Ready": ("True", "RolloutComplete"), "Pinned": ("True", "Pinned")},
            id="pinned",
        ),
        pytest.param(
            release("2", pin=9),
            [R, R],
            READY_ROLLOUT,
            "Degraded",
            {"Pinned": ("False", "RevisionNotFound"), "Degraded": ("True", "RevisionNotFound")},
            id="pinned-to-missing",
        ),
        pytest.param(
            release("3"),
            [R, R, P],
            observe_deployment(
                deployment(revision="3", progressing_reason="ProgressDeadlineExceeded")
            ),
            "Degraded",
            {"Ready": ("False", "RolloutInProgress"), "Degraded": ("True", "RolledBack")},
            id="rolling-back",
        ),
        pytest.param(
            release("3"),
            [R, R, F],
            READY_ROLLOUT,
            "Degraded",
            {"Ready": ("True", "RolloutComplete"), "Degraded": ("True", "RolledBack")},
            id="rolled-back",
        ),
        pytest.param(
            release("1"),
            [P],
            observe_deployment(
                deployment(revision="1", progressing_reason="ProgressDeadlineExceeded")
            ),
            "Degraded",
            {
                "Ready": ("False", "ProgressDeadlineExceeded"),
                "Degraded": ("True", "RevisionFailed"),
            },
            id="first-revision-failed",
        ),
        pytest.param(
            release("2"),
            [R, R],
            observe_deployment(deployment(progressing_reason="ProgressDeadlineExceeded")),
            "Degraded",
            {"Degraded": ("True", "ProgressDeadlineExceeded")},
            id="ready-revision-stalls",
        ),
        pytest.param(
            release("3", paused=True),
            [R, R],
            READY_ROLLOUT,
            "Paused",
            {"Ready": ("True", "RolloutComplete"), "Degraded": ("False", "AsExpected")},
            id="paused",
        ),
    ],
)
def test_phase_and_conditions_follow_the_plan_and_the_rollout(
    spec: Release,
    outcomes: list[Outcome],
    rollout: Rollout,
    phase: str,
    expected: dict[str, tuple[str, str]],
) -> None:
    status = status_of(spec, revisions(*outcomes), rollout)

    assert status["phase"] == phase
    assert conditions(status).items() >= expected.items()


def test_a_pin_says_how_to_roll_forward() -> None:
    status = status_of(release(pin=1), revisions(R, R), READY_ROLLOUT)

    (pinned,) = [c for c in status["conditions"] if c["type"] == "Pinned"]
    assert pinned["message"] == "pinned to revision 1; clear spec.revision to roll forward"
    assert status["pinned"] is True


def test_a_missing_pin_lists_the_revisions_that_exist() -> None:
    status = status_of(release(pin=9), revisions(R, R), READY_ROLLOUT)

    (pinned,) = [c for c in status["conditions"] if c["type"] == "Pinned"]
    assert "existing revisions: 1, 2" in pinned["message"]
    assert status["revision"] == 2


def test_history_is_newest_first_with_outcomes_after_the_plan() -> None:
    rollout = observe_deployment(
        deployment(revision="3", progressing_reason="ProgressDeadlineExceeded")
    )

    status = status_of(release("3"), revisions(R, R, P), rollout)

    assert [(h["revision"], h["outcome"]) for h in status["history"]] == [
        (3, "Failed"),
        (2, "Ready"),
        (1, "Ready"),
    ]
    assert status["revision"] == 2


def test_a_revision_born_in_this_reconcile_is_dated_now() -> None:
    status = status_of(release("3"), revisions(R, R), READY_ROLLOUT)

    assert status["history"][0]["revision"] == 3
    assert status["history"][0]["created"] == "2026-03-04T05:06:07Z"
    assert status["revision"] == 3


def test_pruned_revisions_leave_the_history() -> None:
    status = status_of(release("2", history_limit=1), revisions(R, R), READY_ROLLOUT)

    assert [h["revision"] for h in status["history"]] == [2]


def test_nothing_deployed_leaves_revision_and_image_out() -> None:
    status = status_of(release(pin=4), [], Rollout())

    assert "revision" not in status
    assert "image" not in status
    assert status["phase"] == "Degraded"
    assert conditions(status)["Ready"] == ("False", "NothingDeployed")


def test_paused_is_reported() -> None:
    status = status_of(release(paused=True), revisions(R, R), READY_ROLLOUT)

    assert (status["phase"], status["paused"]) == ("Paused", True)


def test_status_and_history_show_the_digest_that_runs() -> None:
    digest = "sha256:" + "d" * 64
    history = [Revision(2, release(digest=digest).snapshot, R, "", "2026-01-02T00:00:00Z")]

    status = status_of(release(digest=digest), history, READY_ROLLOUT)

    assert (status["image"], status["digest"]) == (f"{IMAGE}:2", digest)
    assert status["history"][0]["digest"] == digest


def test_a_release_by_tag_has_no_digest_in_status() -> None:
    status = status_of(release(), revisions(R, R), READY_ROLLOUT)

    assert "digest" not in status
    assert all("digest" not in entry for entry in status["history"])
