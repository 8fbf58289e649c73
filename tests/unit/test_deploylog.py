"""The deployment log: one entry per change of what runs, who and why, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from testapp_operator.deploylog import (
    FIELD_LIMIT,
    LIMIT,
    Abort,
    Action,
    Entry,
    Request,
    log_after,
    next_log,
    read_log,
    request_of,
)
from testapp_operator.release import Snapshot
from testapp_operator.revisions import Decision, Outcome, Plan, Revision
from testapp_operator.status import Rollout

NOW = "2025-06-01T12:00:00Z"
ALICE = Request(by="alice", client="kubectl-testapp", cause="commit abc")


def revision(number: int, tag: str | None = None) -> Revision:
    return Revision(number, Snapshot("r/app", tag or f"v{number}"), Outcome.READY)


def entry(number: int, action: Action = Action.DEPLOY, **kw: str) -> Entry:
    fields = {"at": f"2025-06-01T10:{number:02d}:00Z", "outcome": "Ready", **kw}
    return Entry(action=action, revision=number, tag=f"v{number}", image="r/app", **fields)


def test_a_new_revision_deployed_is_an_entry_with_who_why_and_what() -> None:
    log = next_log([], Decision.CREATED, revision(1), "Progressing", ALICE, False, NOW)
    assert log == (
        Entry(
            at=NOW,
            action=Action.DEPLOY,
            revision=1,
            tag="v1",
            image="r/app",
            by="alice",
            client="kubectl-testapp",
            cause="commit abc",
            outcome="Progressing",
        ),
    )


def test_nothing_new_runs_no_new_entry_but_the_outcome_catches_up() -> None:
    log = (Entry(NOW, Action.DEPLOY, 1, "v1", "r/app", outcome="Progressing"),)
    after = next_log(log, Decision.UNCHANGED, revision(1), "Ready", ALICE, False, NOW)
    assert [(e.revision, e.outcome) for e in after] == [(1, "Ready")]


def test_a_settled_outcome_never_changes_again() -> None:
    log = (entry(1),)
    after = next_log(log, Decision.UNCHANGED, revision(1), "Failed", ALICE, False, NOW)
    assert after[0].outcome == "Ready"


def test_each_kind_of_change_is_named() -> None:
    cases = [
        (Decision.CREATED, Request(), False, Action.DEPLOY),
        (Decision.CREATED, Request(promoted_from="dev/3"), False, Action.PROMOTE),
        (Decision.PINNED, Request(), False, Action.ROLLBACK),
        (Decision.ROLLED_FORWARD, Request(), True, Action.UNPIN),
        (Decision.ROLLED_FORWARD, Request(), False, Action.DEPLOY),
        (Decision.CREATED, Request(), True, Action.UNPIN),
        (Decision.ROLLED_BACK, Request(), False, Action.AUTO_ROLLBACK),
        (Decision.RETRIED, Request(), False, Action.RETRY),
    ]
    for decision, request, was_pinned, action in cases:
        log = next_log([entry(1)], decision, revision(2), "Progressing", request, was_pinned, NOW)
        assert log[0].action is action, decision


def test_an_automatic_rollback_is_the_operators_with_its_own_cause() -> None:
    log = next_log([entry(2)], Decision.ROLLED_BACK, revision(1), "Progressing", ALICE, False, NOW)
    assert (log[0].by, log[0].client) == ("testapp-operator", "")
    assert "failed its progress deadline" in log[0].cause
    assert "commit abc" not in log[0].cause


def test_a_cause_belongs_only_to_the_change_it_came_with() -> None:
    # The admission policy removed the earlier cause: the pin has none of its own.
    first = next_log([], Decision.CREATED, revision(1), "Ready", ALICE, False, NOW)
    second = next_log(first, Decision.PINNED, revision(1), "Ready", Request(by="bob"), False, NOW)
    assert second == first  # same revision: no change of what runs
    edit = Request(by="bob", client="kubectl-edit")
    third = next_log(first, Decision.CREATED, revision(2), "Progressing", edit, False, NOW)
    assert (third[0].by, third[0].client, third[0].cause) == ("bob", "kubectl-edit", "")
    assert third[1].cause == "commit abc"


def test_a_replaced_rollout_still_in_progress_is_superseded() -> None:
    log = (Entry(NOW, Action.DEPLOY, 1, "v1", "r/app", outcome="Progressing"),)
    after = next_log(log, Decision.CREATED, revision(2), "Progressing", ALICE, False, NOW)
    assert [(e.revision, e.outcome) for e in after] == [(2, "Progressing"), (1, "Superseded")]


def test_a_rollout_replaced_because_it_failed_is_failed_not_superseded() -> None:
    log = (Entry(NOW, Action.DEPLOY, 2, "v2", "r/app", outcome="Progressing"),)
    after = next_log(
        log, Decision.ROLLED_BACK, revision(1), "Progressing", ALICE, False, NOW, frozenset({2})
    )
    assert [(e.action, e.outcome) for e in after] == [
        (Action.AUTO_ROLLBACK, "Progressing"),
        (Action.DEPLOY, "Failed"),
    ]


def test_an_aborted_canary_is_logged_with_who_why_and_the_measured_value() -> None:
    canary = (Entry(NOW, Action.DEPLOY, 2, "v2", "r/app", outcome="Progressing"),)
    analysis = Abort(2, "AnalysisFailed", "1 failed measurement(s), 0 tolerated", "0.5")
    by_hand = Abort(2, "AbortedByUser", "aborted by kubectl testapp abort")

    def aborted(abort: Abort) -> tuple[Entry, ...]:
        return next_log(
            canary,
            Decision.ROLLED_BACK,
            revision(1),
            "Ready",
            ALICE,
            False,
            NOW,
            frozenset({2}),
            abort,
        )

    judged, asked = aborted(analysis), aborted(by_hand)
    assert [(e.action, e.revision, e.outcome) for e in judged] == [
        (Action.ABORT_CANARY, 1, "Ready"),
        (Action.DEPLOY, 2, "Failed"),
    ]
    assert (judged[0].by, judged[0].client) == ("testapp-operator", "")
    assert judged[0].cause == (
        "canary revision 2 AnalysisFailed: 1 failed measurement(s), 0 tolerated (measured 0.5)"
    )
    assert (asked[0].by, asked[0].client) == ("alice", "kubectl-testapp")
    assert asked[0].cause == "canary revision 2 AbortedByUser: aborted by kubectl testapp abort"


def test_a_restart_is_an_entry_once_per_request_and_makes_no_revision() -> None:
    restart = Request(by="carol", restart_at="2025-06-01T11:59:00Z")
    log = next_log([entry(1)], Decision.UNCHANGED, revision(1), "Progressing", restart, False, NOW)
    assert [(e.action, e.revision, e.by) for e in log] == [
        (Action.RESTART, 1, "carol"),
        (Action.DEPLOY, 1, ""),
    ]
    again = next_log(log, Decision.UNCHANGED, revision(1), "Ready", restart, False, NOW)
    assert len(again) == 2
    assert again[0].outcome == "Ready"


def test_a_restart_asked_while_paused_is_logged_when_carried_out_on_resume() -> None:
    restart = Request(by="carol", restart_at="2025-06-01T11:59:00Z")
    paused = next_log([entry(1)], Decision.PAUSED, revision(1), "Ready", restart, False, NOW)
    resumed = next_log(paused, Decision.UNCHANGED, revision(1), "Ready", restart, False, NOW)
    assert [e.action for e in paused] == [Action.DEPLOY]
    assert [e.action for e in resumed] == [Action.RESTART, Action.DEPLOY]


def test_a_restart_asked_with_a_new_revision_is_carried_out_by_its_rollout() -> None:
    both = Request(by="carol", restart_at="2025-06-01T11:59:00Z")
    log = next_log([entry(1)], Decision.CREATED, revision(2), "Progressing", both, False, NOW)
    again = next_log(log, Decision.UNCHANGED, revision(2), "Ready", both, False, NOW)
    assert [e.action for e in again] == [Action.DEPLOY, Action.DEPLOY]


def test_the_log_is_bounded_newest_first() -> None:
    log: tuple[Entry, ...] = ()
    for number in range(1, LIMIT + 11):
        log = next_log(log, Decision.CREATED, revision(number), "Ready", ALICE, False, NOW)
    assert len(log) == LIMIT
    assert (log[0].revision, log[-1].revision) == (LIMIT + 10, 11)


def test_a_restart_older_than_a_full_log_is_not_carried_out_again() -> None:
    full = tuple(entry(n) for n in range(59, 59 - LIMIT, -1))
    old = Request(restart_at="2025-06-01T09:00:00Z")
    assert next_log(full, Decision.UNCHANGED, revision(59), "Ready", old, False, NOW) == full


def test_free_text_is_bounded() -> None:
    long = Request(by="x" * 1000, cause="y" * 1000)
    log = next_log([], Decision.CREATED, revision(1), "Ready", long, False, NOW)
    assert len(log[0].by) == len(log[0].cause) == FIELD_LIMIT


def test_entries_round_trip_and_unreadable_ones_are_dropped() -> None:
    stored = [entry(2, cause="why").to_data(), {"at": NOW}, entry(1).to_data()]
    assert read_log({"deployments": stored}) == (entry(2, cause="why"), entry(1))
    assert "digest" not in entry(1).to_data()  # empty fields are left out


def test_nothing_runs_nothing_is_logged() -> None:
    assert next_log([], Decision.REVISION_NOT_FOUND, None, "Progressing", ALICE, False, NOW) == ()


def test_who_and_why_come_from_the_stamped_annotations() -> None:
    body = {
        "metadata": {
            "annotations": {
                "testapp.dev/changed-by": "system:serviceaccount:ci:deployer",
                "testapp.dev/changed-with": "kubectl-testapp",
                "testapp.dev/change-cause": "commit abc",
                "testapp.dev/promoted-from": "dev/3",
            }
        },
        "spec": {"restartAt": NOW},
    }
    assert request_of(body) == Request(
        by="system:serviceaccount:ci:deployer",
        client="kubectl-testapp",
        cause="commit abc",
        promoted_from="dev/3",
        restart_at=NOW,
    )


def test_log_after_reads_the_stored_log_and_the_rollout() -> None:
    body = {
        "metadata": {"annotations": {"testapp.dev/changed-by": "alice"}},
        "spec": {},
        "status": {"pinned": True, "deployments": [entry(2, Action.ROLLBACK).to_data()]},
    }
    plan = Plan(Decision.ROLLED_FORWARD, "", revision(3), deployed=3)
    rollout = Rollout(revision=3, exists=True, current=True, complete=True)
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    log = log_after(body, plan, rollout, now)
    assert [(e["action"], e["revision"], e["outcome"], e["at"]) for e in log] == [
        ("Unpin", 3, "Ready", NOW),
        ("Rollback", 2, "Ready", "2025-06-01T10:02:00Z"),
    ]
