"""The revision rules of docs/design.md: birth, pin, roll forward, automatic rollback, pruning."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest
from testapp_operator.release import Release, ReleaseError, Resources, Snapshot
from testapp_operator.revisions import (
    Decision,
    Outcome,
    Revision,
    after,
    outcome_after,
    plan,
)
from testapp_operator.rollout import Rollout

P, R, F, S = Outcome.PROGRESSING, Outcome.READY, Outcome.FAILED, Outcome.SUPERSEDED
IMAGE = "registry.example.com/test-app"
SNAPSHOT_FIELDS = {field.name for field in fields(Snapshot)}


def release(tag: str = "1.0.0", **fields: Any) -> Release:
    return changed(
        Release(
            name="test-app-dev", uid="uid-1", generation=1, env="dev", snapshot=Snapshot(IMAGE, tag)
        ),
        **fields,
    )


def changed(spec: Release, **fields: Any) -> Release:
    """`spec` with some fields changed, the snapshot's among them (labels, digest, ...)."""
    pod_template = {name: fields.pop(name) for name in SNAPSHOT_FIELDS & set(fields)}
    return replace(spec, snapshot=replace(spec.snapshot, **pod_template), **fields)


def snap(tag: str) -> Snapshot:
    return release(tag).snapshot


def history(*outcomes: Outcome, first: int = 1) -> list[Revision]:
    """Revisions first.. with tags 1, 2, 3...; the spec of `release(str(n))` matches number n."""
    return [Revision(n, snap(str(n)), o) for n, o in enumerate(outcomes, start=first)]


def running(
    number: int | None, *, complete: bool = True, deadline: bool = False, current: bool = True
) -> Rollout:
    return Rollout(
        revision=number,
        exists=number is not None,
        current=current,
        complete=complete and current and not deadline,
        deadline_exceeded=deadline and current,
    )


NOTHING = Rollout()


# --- birth of a revision -------------------------------------------------------------------


def test_the_first_reconcile_creates_revision_1_and_deploys_it() -> None:
    result = plan(release("1", change_cause="pipeline 7"), [], NOTHING)

    assert result.decision is Decision.CREATED
    assert result.create == Revision(1, snap("1"), P, "pipeline 7")
    assert result.target == result.create
    assert result.deploy is True
    assert result.message == "revision 1 created: tag 1"


def test_an_unchanged_world_changes_nothing() -> None:
    result = plan(release("2"), history(R, R), running(2))

    assert result.decision is Decision.UNCHANGED
    assert (result.create, result.deploy, result.prune, result.outcomes) == (None, False, (), ())
    assert result.target.number == 2


@pytest.mark.parametrize(
    ("change", "new_revision"),
    [
        ({"tag": "9"}, True),
        ({"image": "registry.example.com/other"}, True),
        ({"digest": "sha256:" + "1" * 64}, True),
        ({"labels": (("team", "web"),)}, True),
        ({"resources": Resources(limits=(("cpu", "2"),))}, True),
        ({"replicas": 5}, False),
        ({"history_limit": 3}, False),
        ({"progress_deadline_seconds": 60}, False),
        ({"change_cause": "a new pipeline"}, False),
        ({"generation": 9}, False),
    ],
)
def test_only_pod_template_inputs_make_a_new_revision(
    change: dict[str, Any], new_revision: bool
) -> None:
    result = plan(changed(release("2"), **change), history(R, R), running(2))

    assert (result.create is not None) == new_revision
    assert result.decision is (Decision.CREATED if new_revision else Decision.UNCHANGED)


def test_a_new_revision_says_what_changed() -> None:
    spec = changed(release("3"), labels=(("team", "web"),))

    result = plan(spec, history(R, R), running(2))

    assert result.message == "revision 3 created: tag 2 -> 3, labels changed"


def test_a_new_digest_for_the_same_tag_is_a_new_revision_and_says_so() -> None:
    # A tag moved to other bytes (a rebuild pushed again): what runs changes, so history does.
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    ran = [Revision(1, replace(snap("1"), digest=old), R)]

    result = plan(changed(release("1"), digest=new), ran, running(1))

    assert result.create.snapshot.digest == new
    assert result.message == f"revision 2 created: digest {old} -> {new}"


def test_a_rollback_runs_the_digest_the_revision_ran() -> None:
    old = "sha256:" + "1" * 64
    ran = [Revision(1, replace(snap("1"), digest=old), R), Revision(2, snap("2"), R)]

    result = plan(replace(release("2"), pin=1), ran, running(2))

    assert result.target.snapshot.reference == f"{IMAGE}:1@{old}"


def test_numbers_are_never_reused_after_pruning() -> None:
    result = plan(release("9"), history(R, R, first=4), running(5))

    assert result.create.number == 6


def test_numbers_are_never_reused_even_if_revisions_were_deleted_by_hand() -> None:
    result = plan(release("9"), [], running(7))

    assert result.create.number == 8


def test_going_back_to_an_old_spec_makes_a_new_revision() -> None:
    result = plan(release("1"), history(R, R), running(2))

    assert result.create == Revision(3, snap("1"), P)


def test_a_restart_with_no_deployment_redeploys_the_latest_without_a_new_revision() -> None:
    result = plan(release("2"), history(R, R), NOTHING)

    assert (result.decision, result.create, result.deploy) == (Decision.ROLLED_FORWARD, None, True)
    assert result.target.number == 2


# --- outcomes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "rollout", "expected"),
    [
        (P, running(1), R),
        (P, running(1, complete=False), P),
        (P, running(1, complete=False, deadline=True), F),
        (P, running(1, current=False), P),
        (R, running(1, complete=False, deadline=True), R),
        (F, running(1), F),
        (S, running(1), S),
    ],
)
def test_only_a_progressing_revision_changes_outcome(
    before: Outcome, rollout: Rollout, expected: Outcome
) -> None:
    assert outcome_after(Revision(1, snap("1"), before), rollout) is expected


def test_a_completed_rollout_marks_the_running_revision_ready() -> None:
    result = plan(release("2"), history(R, P), running(2))

    assert result.outcomes == ((2, R),)
    assert result.decision is Decision.UNCHANGED


def test_a_revision_replaced_before_it_was_ready_is_superseded() -> None:
    result = plan(release("3"), history(R, P), running(2, complete=False))

    assert result.create.number == 3
    assert result.outcomes == ((2, S),)


def test_a_ready_revision_stays_ready_when_replaced() -> None:
    result = plan(release("3"), history(R, R), running(2))

    assert result.outcomes == ()


# --- pinning ---------------------------------------------------------------------------------


def test_setting_revision_pins_the_old_tag() -> None:
    result = plan(release("3", pin=1), history(R, R, R), running(3))

    assert result.decision is Decision.PINNED
    assert result.target.snapshot.tag == "1"
    assert result.deploy is True
    assert result.message == "pinned to revision 1; clear spec.revision to roll forward"


def test_spec_changes_while_pinned_are_kept_but_not_deployed() -> None:
    result = plan(release("4", pin=1), history(R, R, R), running(1))

    assert result.create is None
    assert result.target.number == 1
    assert result.deploy is False


def test_scaling_while_pinned_makes_no_revision() -> None:
    result = plan(release("1", pin=1, replicas=9), history(R, R), running(1))

    assert (result.decision, result.create, result.deploy) == (Decision.PINNED, None, False)


def test_clearing_the_pin_rolls_forward_to_the_current_spec() -> None:
    result = plan(release("2"), history(R, R), running(1))

    assert result.decision is Decision.ROLLED_FORWARD
    assert result.target.number == 2
    assert result.deploy is True


def test_clearing_the_pin_after_a_spec_change_creates_the_revision_then() -> None:
    result = plan(release("7"), history(R, R), running(1))

    assert result.decision is Decision.CREATED
    assert result.create.number == 3


def test_pinning_to_a_missing_revision_changes_nothing_and_lists_the_existing_ones() -> None:
    result = plan(release("9", pin=7, history_limit=1), history(R, R, R, first=2), running(4))

    assert result.decision is Decision.REVISION_NOT_FOUND
    assert result.message == ("revision 7 not found; existing revisions: 2, 3, 4; nothing changes")
    assert result.target.number == 4
    assert (result.create, result.deploy, result.prune) == (None, False, ())


def test_pinning_to_a_missing_revision_before_anything_ran_deploys_nothing() -> None:
    result = plan(release("1", pin=3), [], NOTHING)

    assert result.target is None
    assert result.deploy is False
    assert "existing revisions: none" in result.message


@pytest.mark.parametrize("earlier", [F, S])
def test_deploying_a_failed_or_superseded_revision_again_makes_it_progressing(
    earlier: Outcome,
) -> None:
    revisions = [*history(R), Revision(2, snap("2"), earlier), *history(R, first=3)]

    result = plan(release("3", pin=2), revisions, running(3))

    assert result.outcomes == ((2, P),)


def test_pinning_away_from_a_progressing_revision_supersedes_it() -> None:
    result = plan(release("2", pin=1), history(R, P), running(2, complete=False))

    assert result.outcomes == ((2, S),)


# --- automatic rollback ----------------------------------------------------------------------


def test_a_deadline_exceeded_rolls_back_to_the_newest_ready_revision() -> None:
    result = plan(release("3"), history(R, R, P), running(3, complete=False, deadline=True))

    assert result.decision is Decision.ROLLED_BACK
    assert result.outcomes == ((3, F),)
    assert result.target.number == 2
    assert result.deploy is True
    assert result.message == (
        "revision 3 failed (progress deadline exceeded); rolled back to revision 2; "
        "change the spec or set spec.retryAt (kubectl testapp retry) to try again"
    )


def test_rollback_skips_revisions_that_never_became_ready() -> None:
    revisions = history(R, R, S, F)

    result = plan(release("4"), revisions, running(4, complete=False))

    assert result.target.number == 2


def test_the_failed_spec_is_not_retried_on_resync() -> None:
    result = plan(release("3"), history(R, R, F), running(2))

    assert result.decision is Decision.ROLLED_BACK
    assert (result.create, result.deploy, result.outcomes) == (None, False, ())


def test_a_spec_change_after_a_rollback_is_deployed() -> None:
    result = plan(release("4"), history(R, R, F), running(2))

    assert result.decision is Decision.CREATED
    assert result.create.number == 4


# --- retry (spec.retryAt) ---------------------------------------------------------------------

CREATED_3 = "2025-06-01T10:00:00Z"


def failed_3() -> list[Revision]:
    revisions = history(R, R, F)
    revisions[2] = replace(revisions[2], created=CREATED_3)
    return revisions


def test_a_retry_after_the_failure_records_the_same_snapshot_as_a_new_revision() -> None:
    spec = release("3", retry_at="2025-06-01T10:05:00Z", change_cause="retry job 8")

    result = plan(spec, failed_3(), running(2))

    assert result.decision is Decision.RETRIED
    assert (result.create.number, result.create.snapshot) == (4, snap("3"))
    assert result.create.change_cause == "retry job 8"
    assert (result.target.number, result.deploy) == (4, True)
    assert result.message == "revision 4 created: retry of failed revision 3"


def test_a_retry_asked_before_the_revision_was_made_does_nothing() -> None:
    result = plan(release("3", retry_at="2025-06-01T09:00:00Z"), failed_3(), running(2))

    assert result.decision is Decision.ROLLED_BACK
    assert result.create is None


def test_a_failed_retry_is_rolled_back_not_retried_again() -> None:
    revisions = [*failed_3(), Revision(4, snap("3"), F, created="2025-06-01T10:05:01Z")]

    result = plan(release("3", retry_at="2025-06-01T10:05:00Z"), revisions, running(2))

    assert result.decision is Decision.ROLLED_BACK
    assert result.target.number == 2


def test_retry_at_leaves_a_healthy_latest_revision_alone() -> None:
    result = plan(release("3", retry_at="2025-06-01T10:05:00Z"), history(R, R, R), running(3))

    assert result.decision is Decision.UNCHANGED


def test_a_release_whose_first_revision_fails_stays_on_it() -> None:
    result = plan(release("1"), history(P), running(1, complete=False, deadline=True))

    assert result.decision is Decision.FAILED
    assert result.outcomes == ((1, F),)
    assert result.target.number == 1
    assert result.deploy is False


def test_a_stale_rollout_does_not_fail_a_revision() -> None:
    rollout = running(3, complete=False, deadline=True, current=False)

    result = plan(release("3"), history(R, R, P), rollout)

    assert result.decision is Decision.UNCHANGED
    assert result.outcomes == ()


# --- paused ----------------------------------------------------------------------------------


def test_paused_changes_nothing_even_when_the_spec_changed() -> None:
    spec = release("9", paused=True, pin=1, history_limit=1)

    result = plan(spec, history(R, R, R), running(3))

    assert result.decision is Decision.PAUSED
    assert (result.create, result.deploy, result.prune) == (None, False, ())
    assert result.target.number == 3


def test_paused_still_records_what_the_rollout_showed() -> None:
    result = plan(release("2", paused=True), history(R, P), running(2))

    assert result.outcomes == ((2, R),)


# --- pruning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "limit", "spec", "deployed", "pruned"),
    [
        pytest.param([R] * 12, 10, release("12"), 12, (1, 2), id="oldest-first"),
        pytest.param([R] * 3, 5, release("3"), 3, (), id="under-the-limit"),
        pytest.param([R] * 3, 3, release("3"), 3, (), id="at-the-limit"),
        pytest.param([R] * 3, 1, release("3"), 3, (1, 2), id="limit-one"),
        pytest.param([R] * 10, 10, release("11"), 10, (1,), id="the-new-revision-counts"),
        pytest.param([R, S, P], 1, release("3"), 3, (2,), id="keeps-the-newest-ready"),
        pytest.param([R, R, R], 1, release("3", pin=1), 3, (2,), id="keeps-the-pinned"),
        pytest.param([R, F], 1, release("2"), 1, (), id="keeps-the-failed-latest"),
        pytest.param([R, R, F], 1, release("3"), 2, (1,), id="keeps-the-rollback-target"),
        pytest.param([S, S, P], 1, release("3"), 3, (1, 2), id="no-ready-at-all"),
    ],
)
def test_pruning_keeps_the_deployed_the_latest_and_the_newest_ready(
    outcomes: list[Outcome], limit: int, spec: Release, deployed: int, pruned: tuple[int, ...]
) -> None:
    rollout = running(deployed, complete=False)  # no outcome moves while pruning is checked

    result = plan(replace(spec, history_limit=limit), history(*outcomes), rollout)

    assert result.prune == pruned


def test_after_gives_the_history_once_the_plan_is_carried_out() -> None:
    revisions = history(R, R, P)
    result = plan(release("4", history_limit=2), revisions, running(3, complete=False))

    assert [(r.number, r.outcome) for r in after(result, revisions)] == [(4, P), (3, S), (2, R)]


# --- reading ControllerRevisions -------------------------------------------------------------


def controller_revision(**annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": "test-app-dev-4",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "annotations": annotations,
        },
        "revision": 4,
        "data": snap("4").to_data(),
    }


def test_a_controller_revision_reads_back_as_the_revision_it_stored() -> None:
    obj = controller_revision(
        **{"testapp.dev/outcome": "Ready", "testapp.dev/change-cause": "pipeline 9"}
    )

    assert Revision.from_controller_revision(obj) == Revision(
        4, snap("4"), R, "pipeline 9", "2026-01-02T03:04:05Z"
    )


def test_a_controller_revision_without_outcome_is_progressing() -> None:
    assert Revision.from_controller_revision(controller_revision()).outcome is P


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o["metadata"]["annotations"].update({"testapp.dev/outcome": "Meh"}), "outcome"),
        (lambda o: o.update(revision=0), "revision"),
        (lambda o: o.update(revision="4"), "revision"),
        (lambda o: o["data"].pop("tag"), "data.tag"),
    ],
)
def test_a_corrupt_controller_revision_names_the_field(mutate: Any, field: str) -> None:
    obj = controller_revision()
    mutate(obj)

    with pytest.raises(ReleaseError) as error:
        Revision.from_controller_revision(obj)

    assert field in error.value.field


def test_a_running_spec_without_its_record_is_recorded_under_the_number_it_runs_with() -> None:
    rollout = replace(running(3), snapshot=snap("3").fingerprint)

    result = plan(release("3"), history(R, R), rollout)

    assert result.decision is Decision.CREATED
    assert result.create == result.target == Revision(3, snap("3"), P)
    assert result.deploy is False


def test_a_deployment_running_another_snapshot_is_not_taken_as_the_specs_record() -> None:
    rollout = replace(running(3), snapshot=snap("9").fingerprint)

    result = plan(release("3"), history(R, R), rollout)

    assert result.create.number == 4
