"""The pure half of `kubectl testapp`: names, patches, rollback choice, wait verdicts, output."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from testapp_operator.cli import client, commands, core, views
from testapp_operator.cli.core import CliError, Exit, Goal, State, Verdict
from testapp_operator.release import DEFAULT_RESOURCES, Snapshot

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)  # noqa: UP017 (the plugin runs on 3.10)


def entry(revision: int, tag: str, outcome: str, **extra: Any) -> dict[str, Any]:
    return {
        "revision": revision,
        "tag": tag,
        "image": "registry.local/test-app",
        "created": f"2025-06-01T10:0{revision}:00Z",
        "changeCause": f"cause {revision}",
        "outcome": outcome,
        **extra,
    }


def condition(kind: str, status: str, reason: str, message: str = "", generation: int = 1):
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def release(
    env: str = "dev",
    *,
    generation: int = 1,
    observed: int | None = None,
    phase: str = "Ready",
    revision: int | None = 3,
    tag: str = "v3",
    history: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    pinned: bool = False,
    **status_extra: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": generation if observed is None else observed,
        "phase": phase,
        "readyReplicas": 1,
        "pinned": pinned,
        "conditions": conditions or [],
        "history": history if history is not None else [entry(3, "v3", "Ready")],
        **status_extra,
    }
    if revision is not None:
        status["revision"] = revision
        status.setdefault("image", f"registry.local/test-app:{tag}")
    return {
        "metadata": {
            "name": f"test-app-{env}",
            "generation": generation,
            "creationTimestamp": "2025-06-01T11:55:00Z",
        },
        "spec": {"env": env, "image": "registry.local/test-app", "tag": tag, "replicas": 2},
        "status": status,
    }


# --- names, causes, patches ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "name"),
    [("dev", "test-app-dev"), ("prd", "test-app-prd"), ("test-app-stg", "test-app-stg")],
)
def test_an_env_or_a_full_name_names_the_release(given: str, name: str) -> None:
    assert core.release_name(given) == name


def test_env_of_strips_the_release_prefix() -> None:
    assert core.env_of("test-app-ppd") == "ppd"


def test_default_cause_outside_ci_names_the_user() -> None:
    assert core.default_cause({"USER": "alice"}, "v2") == "kubectl-testapp deploy v2 by alice"


def test_default_cause_without_any_user_says_unknown() -> None:
    assert core.default_cause({}, "v2") == "kubectl-testapp deploy v2 by unknown"


def test_default_cause_in_gitlab_names_commit_user_and_pipeline() -> None:
    environ = {
        "CI_COMMIT_SHORT_SHA": "1a2b3c4d",
        "CI_COMMIT_SHA": "1a2b3c4d" + "0" * 32,
        "GITLAB_USER_LOGIN": "bob",
        "CI_PIPELINE_URL": "https://gitlab.example/g/p/-/pipelines/42",
        "USER": "runner",
    }
    assert core.default_cause(environ, "v2") == (
        "commit 1a2b3c4d by bob, pipeline https://gitlab.example/g/p/-/pipelines/42"
    )


def test_default_cause_falls_back_to_the_full_sha_without_the_short_one() -> None:
    assert core.default_cause({"CI_COMMIT_SHA": "f" * 40}, "v2") == f"commit {'f' * 40}"


def test_default_cause_in_a_gitlab_job_names_the_job_so_a_retried_job_differs() -> None:
    environ = {"CI_COMMIT_SHORT_SHA": "1a2b", "CI_PIPELINE_URL": "https://ci/p/3", "CI_JOB_ID": "7"}
    assert core.default_cause(environ, "v2") == "commit 1a2b, pipeline https://ci/p/3, job 7"


def test_default_cause_with_only_a_pipeline_url() -> None:
    assert (
        core.default_cause({"CI_PIPELINE_URL": "https://ci/1"}, "v2")
        == "deploy, pipeline https://ci/1"
    )


def test_deploy_patch_sets_tag_clears_pin_and_digest_and_records_cause_in_one_patch() -> None:
    assert core.deploy_patch("v4", "why") == {
        "metadata": {"annotations": {"testapp.dev/change-cause": "why"}},
        "spec": {"tag": "v4", "digest": None, "revision": None},
    }


def test_deploy_patch_sets_the_image_only_when_given() -> None:
    patch = core.deploy_patch("v4", "why", image="other.local/test-app")
    assert patch["spec"] == {
        "tag": "v4",
        "digest": None,
        "revision": None,
        "image": "other.local/test-app",
    }


def test_deploy_patch_records_the_digest_with_the_tag() -> None:
    digest = "sha256:" + "e" * 64
    assert core.deploy_patch("v4", "why", digest=digest)["spec"]["digest"] == digest


def test_promote_carries_the_digest_that_ran() -> None:
    digest = "sha256:" + "e" * 64
    history = [entry(2, "v2", "Ready", digest=digest)]
    assert core.promote_source(release(revision=2, history=history)).digest == digest


def test_pin_patch_pins_and_unpins() -> None:
    assert core.pin_patch(2) == {"spec": {"revision": 2}}
    assert core.pin_patch(None) == {"spec": {"revision": None}}
    # JSON null is what makes a merge patch delete the field.
    assert json.dumps(core.pin_patch(None)) == '{"spec": {"revision": null}}'


@pytest.mark.parametrize(
    ("ref", "split"),
    [
        ("registry.local/test-app:v1", ("registry.local/test-app", "v1")),
        ("registry.local:5000/test-app:v1", ("registry.local:5000/test-app", "v1")),
        ("registry.local:5000/test-app", ("registry.local:5000/test-app", None)),
        ("test-app", ("test-app", None)),
    ],
)
def test_split_image_tells_a_tag_from_a_registry_port(ref: str, split: tuple) -> None:
    assert core.split_image(ref) == split


# --- rollback and promote choices ------------------------------------------------------------


def test_rollback_picks_the_newest_ready_revision_older_than_the_running_one() -> None:
    history = [entry(5, "v5", "Ready"), entry(4, "v4", "Failed"), entry(3, "v3", "Ready")]
    assert core.rollback_target(release(revision=5, history=history)) == 3


def test_a_second_rollback_goes_further_back_never_forward() -> None:
    history = [entry(5, "v5", "Ready"), entry(4, "v4", "Ready"), entry(3, "v3", "Ready")]
    first = core.rollback_target(release(revision=5, history=history))
    second = core.rollback_target(release(revision=first, history=history, pinned=True))
    assert (first, second) == (4, 3)


def test_rollback_from_the_oldest_ready_revision_has_nowhere_to_go() -> None:
    history = [entry(5, "v5", "Ready"), entry(4, "v4", "Ready")]
    with pytest.raises(CliError) as raised:
        core.rollback_target(release(revision=4, history=history, pinned=True))
    assert raised.value.code is Exit.NOT_FOUND
    assert "older than the running revision 4" in str(raised.value)


def test_rollback_skips_failed_and_superseded_revisions() -> None:
    history = [
        entry(6, "v6", "Progressing"),
        entry(5, "v5", "Superseded"),
        entry(4, "v4", "Failed"),
        entry(2, "v2", "Ready"),
    ]
    assert core.rollback_target(release(revision=6, history=history)) == 2


def test_rollback_reads_history_by_revision_number_not_by_order() -> None:
    history = [entry(2, "v2", "Ready"), entry(4, "v4", "Ready"), entry(5, "v5", "Ready")]
    assert core.rollback_target(release(revision=5, history=history)) == 4


def test_rollback_from_an_auto_rolled_back_release_goes_further_back() -> None:
    # Revision 5 failed and the operator runs 4 again: "rollback" means the one before 4.
    history = [entry(5, "v5", "Failed"), entry(4, "v4", "Ready"), entry(3, "v3", "Ready")]
    assert core.rollback_target(release(revision=4, history=history)) == 3


def test_rollback_without_a_ready_alternative_names_the_release_and_history() -> None:
    history = [entry(2, "v2", "Ready"), entry(1, "v1", "Failed")]
    with pytest.raises(CliError) as raised:
        core.rollback_target(release("stg", revision=2, history=history))
    message = str(raised.value)
    assert "testapprelease test-app-stg" in message
    assert "older than the running revision 2" in message
    assert "2 (Ready), 1 (Failed)" in message


def test_rollback_to_a_revision_in_history_pins_it_whatever_its_outcome() -> None:
    history = [entry(3, "v3", "Ready"), entry(2, "v2", "Failed")]
    assert core.rollback_target(release(history=history), to_revision=2) == 2


def test_rollback_to_a_revision_not_in_history_lists_what_exists() -> None:
    history = [entry(3, "v3", "Ready"), entry(2, "v2", "Ready")]
    with pytest.raises(CliError) as raised:
        core.rollback_target(release(history=history), to_revision=9)
    assert str(raised.value) == (
        "testapprelease test-app-dev has no revision 9 in its history "
        "(revisions: 3 (Ready), 2 (Ready))"
    )


def test_rollback_with_empty_history_says_none() -> None:
    with pytest.raises(CliError, match=r"revisions: none"):
        core.rollback_target(release(revision=None, history=[]))


def test_promote_takes_the_deployed_revision_not_spec_tag() -> None:
    # Pinned to 2 while spec.tag says v3: what runs is v2.
    history = [entry(3, "v3", "Superseded"), entry(2, "v2", "Ready")]
    body = release(revision=2, tag="v3", history=history, image="registry.local/test-app:v2")
    assert core.promote_source(body) == core.Source(
        revision=2, image="registry.local/test-app", tag="v2"
    )


def test_promote_strips_a_tag_from_the_history_image() -> None:
    history = [entry(3, "v3", "Ready", image="registry.local:5000/test-app:v3")]
    assert core.promote_source(release(history=history)).image == "registry.local:5000/test-app"


def test_promote_refuses_a_revision_that_was_never_ready() -> None:
    history = [entry(3, "v3", "Progressing")]
    with pytest.raises(CliError, match=r"test-app-dev revision 3 is Progressing, not Ready"):
        core.promote_source(release(phase="Progressing", history=history))


def test_promote_refuses_a_release_with_nothing_deployed() -> None:
    with pytest.raises(CliError, match=r"testapprelease test-app-dev has no deployed revision"):
        core.promote_source(release(revision=None, history=[]))


# --- wait verdicts -------------------------------------------------------------------------


def test_a_write_not_yet_observed_waits_even_if_the_old_status_looks_final() -> None:
    body = release(generation=5, observed=4, phase="Degraded", tag="v4")
    verdict = core.judge(body, Goal(5, tag="v4"))
    assert verdict == Verdict(State.WAITING, "waiting for the operator to observe generation 5")


def test_deploy_succeeds_when_observed_ready_and_running_the_tag() -> None:
    body = release(generation=5, revision=4, tag="v4", history=[entry(4, "v4", "Ready")])
    verdict = core.judge(body, Goal(5, tag="v4"))
    assert verdict == Verdict(
        State.SUCCEEDED, "revision 4 is Ready, image registry.local/test-app:v4"
    )


def test_deploy_waits_while_ready_on_another_tag() -> None:
    body = release(generation=5, tag="v3")
    assert core.judge(body, Goal(5, tag="v4")).state is State.WAITING


def test_deploy_waits_while_progressing() -> None:
    body = release(generation=5, phase="Progressing", tag="v4")
    assert core.judge(body, Goal(5, tag="v4")).state is State.WAITING


def test_a_tag_match_needs_the_whole_tag() -> None:
    body = release(generation=5, tag="v14")
    assert core.judge(body, Goal(5, tag="4")).state is State.WAITING


def test_degraded_phase_fails_with_the_ready_message() -> None:
    conditions = [condition("Ready", "False", "RolloutInProgress", "1 of 2 updated", 5)]
    body = release(generation=5, phase="Degraded", tag="v4", conditions=conditions)
    assert core.judge(body, Goal(5, tag="v4")) == Verdict(State.FAILED, "1 of 2 updated")


def test_degraded_condition_fails_with_its_message() -> None:
    conditions = [condition("Degraded", "True", "RolledBack", "revision 4 failed, 3 runs", 5)]
    body = release(generation=5, phase="Degraded", conditions=conditions)
    assert core.judge(body, Goal(5, tag="v4")) == Verdict(State.FAILED, "revision 4 failed, 3 runs")


def test_progress_deadline_on_the_ready_condition_fails() -> None:
    conditions = [condition("Ready", "False", "ProgressDeadlineExceeded", "deadline hit", 5)]
    body = release(generation=5, phase="Progressing", tag="v4", conditions=conditions)
    assert core.judge(body, Goal(5, tag="v4")) == Verdict(State.FAILED, "deadline hit")


def test_conditions_from_an_older_generation_do_not_fail_a_new_write() -> None:
    conditions = [condition("Degraded", "True", "RolledBack", "old failure", generation=4)]
    body = release(generation=5, phase="Progressing", tag="v4", conditions=conditions)
    assert core.judge(body, Goal(5, tag="v4")).state is State.WAITING


def test_a_missing_pinned_revision_fails() -> None:
    conditions = [condition("Pinned", "False", "RevisionNotFound", "no revision 9", 5)]
    body = release(generation=5, conditions=conditions)
    assert core.judge(body, Goal(5, revision=9)) == Verdict(State.FAILED, "no revision 9")


def test_a_paused_release_fails_instead_of_waiting_forever() -> None:
    body = release(generation=5, phase="Paused", tag="v3")
    verdict = core.judge(body, Goal(5, tag="v4"))
    assert verdict.state is State.FAILED
    assert "spec.paused" in verdict.message


def test_a_failed_revision_of_the_tag_fails_even_when_the_old_one_is_ready() -> None:
    history = [entry(4, "v4", "Failed"), entry(3, "v3", "Ready")]
    body = release(generation=5, revision=3, tag="v3", history=history)
    verdict = core.judge(body, Goal(5, tag="v4"))
    assert verdict == Verdict(
        State.FAILED,
        "revision 4 (tag v4) failed; running revision 3 (registry.local/test-app:v3)",
    )


def test_rollback_succeeds_when_the_pinned_revision_is_ready() -> None:
    body = release(generation=6, revision=2, tag="v2", pinned=True)
    assert core.judge(body, Goal(6, revision=2)).state is State.SUCCEEDED


def test_rollback_waits_while_another_revision_runs() -> None:
    body = release(generation=6, revision=3, pinned=True)
    assert core.judge(body, Goal(6, revision=2)).state is State.WAITING


def test_unpin_succeeds_once_ready_and_not_pinned() -> None:
    assert core.judge(release(generation=7), Goal(7)).state is State.SUCCEEDED
    assert core.judge(release(generation=7, pinned=True), Goal(7)).state is State.WAITING


def test_progress_line_shows_phase_revision_replicas_image_and_message() -> None:
    conditions = [condition("Ready", "False", "RolloutInProgress", "deploying revision 4")]
    body = release(phase="Progressing", revision=4, tag="v4", conditions=conditions)
    assert core.progress_line(body) == (
        "phase Progressing, revision 4, ready 1/2, image registry.local/test-app:v4: "
        "deploying revision 4"
    )


def test_progress_line_of_a_release_without_status() -> None:
    body = {"metadata": {"name": "test-app-dev"}, "spec": {}}
    assert core.progress_line(body) == "phase -, revision -, ready 0/-, image -"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def run_wait(bodies: list[Any], goal: Goal, timeout: float = 10) -> tuple[Verdict, list[str]]:
    """wait_for over a scripted sequence of reads; the last one repeats."""
    clock, lines = FakeClock(), []

    def read() -> Any:
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        if isinstance(body, Exception):
            raise body
        return body

    verdict = core.wait_for(read, goal, timeout, lines.append, clock=clock, sleep=clock.sleep)
    return verdict, lines


def test_wait_emits_one_line_per_change_and_returns_success() -> None:
    progressing = release(generation=2, phase="Progressing", tag="v4")
    bodies = [
        release(generation=2, observed=1),
        release(generation=2, observed=1),
        progressing,
        progressing,
        progressing,
        release(generation=2, tag="v4"),
    ]
    verdict, lines = run_wait(bodies, Goal(2, tag="v4"))
    assert verdict.state is State.SUCCEEDED
    assert lines == [
        "waiting for the operator to observe generation 2",
        "phase Progressing, revision 3, ready 1/2, image registry.local/test-app:v4",
    ]


def test_wait_times_out_with_the_last_phase_and_message() -> None:
    conditions = [condition("Ready", "False", "RolloutInProgress", "0 of 2 ready", 2)]
    body = release(generation=2, phase="Progressing", tag="v4", conditions=conditions)
    verdict, _ = run_wait([body], Goal(2, tag="v4"), timeout=3)
    assert verdict == Verdict(
        State.TIMED_OUT,
        "timed out after 3s; last seen: phase Progressing, revision 3, ready 1/2, "
        "image registry.local/test-app:v4: 0 of 2 ready",
    )


def test_wait_never_sleeps_past_its_deadline() -> None:
    clock = FakeClock()
    body = release(generation=2, phase="Progressing")
    core.wait_for(lambda: body, Goal(2), 2.5, lambda _: None, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1.0, 1.0, 0.5]


def test_wait_retries_transient_errors_until_the_release_is_ready() -> None:
    bodies = [core.TransientError("503 Service Unavailable"), release(generation=2, tag="v4")]
    verdict, lines = run_wait(bodies, Goal(2, tag="v4"))
    assert verdict.state is State.SUCCEEDED
    assert lines == ["retrying: 503 Service Unavailable"]


def test_wait_returns_a_failure_at_once() -> None:
    conditions = [condition("Degraded", "True", "ProgressDeadlineExceeded", "rev 4 stuck", 2)]
    verdict, lines = run_wait(
        [release(generation=2, phase="Degraded", conditions=conditions)], Goal(2, tag="v4")
    )
    assert verdict == Verdict(State.FAILED, "rev 4 stuck")
    assert lines == []


# --- output --------------------------------------------------------------------------------


def test_table_aligns_columns_kubectl_style() -> None:
    table = views.format_table(("A", "LONGER"), [("xx", None), ("y", 3)])
    assert table.splitlines() == ["A    LONGER", "xx   -", "y    3"]


@pytest.mark.parametrize(
    ("ago", "age"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=3, seconds=20), "3m20s"),
        (timedelta(minutes=4), "4m"),
        (timedelta(minutes=42), "42m"),
        (timedelta(hours=5, minutes=7), "5h7m"),
        (timedelta(hours=5), "5h"),
        (timedelta(hours=30), "30h"),
        (timedelta(days=3, hours=2), "3d2h"),
        (timedelta(days=3), "3d"),
        (timedelta(days=100), "100d"),
        (timedelta(days=800), "2y"),
        (timedelta(seconds=-5), "0s"),
    ],
)
def test_age_reads_like_kubectl(ago: timedelta, age: str) -> None:
    created = (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert views.human_age(created, NOW) == age


def test_age_of_nothing_is_a_dash() -> None:
    assert views.human_age(None, NOW) == "-"


def test_status_lists_environments_in_pipeline_order_with_what_runs() -> None:
    pinned = release("stg", revision=2, tag="v2", pinned=True, phase="Ready")
    pinned["spec"]["tag"] = "v3"  # spec moved on, the pin keeps v2 running
    fresh = release("prd", revision=None, phase="Progressing", readyReplicas=0)
    records = views.status_records([fresh, release("dev"), pinned])
    assert [r["env"] for r in records] == ["dev", "stg", "prd"]
    assert records[1] == {
        "name": "test-app-stg",
        "env": "stg",
        "tag": "v2",
        "wantedTag": "v3",
        "image": "registry.local/test-app:v2",
        "revision": 2,
        "readyReplicas": 1,
        "desiredReplicas": 2,
        "pinned": True,
        "paused": False,
        "phase": "Ready",
        "message": None,
        "created": "2025-06-01T11:55:00Z",
    }
    assert views.status_table(records, NOW).splitlines() == [
        "ENV   TAG   REVISION   READY   PINNED   PHASE         AGE",
        "dev   v3    3          1/2     false    Ready         5m",
        "stg   v2    2          1/2     true     Ready         5m",
        "prd   -     -          0/2     false    Progressing   5m",
    ]


def test_status_puts_unknown_environments_last_by_name() -> None:
    odd = release("qa")
    odd["spec"]["env"] = "qa"
    records = views.status_records([odd, release("prd"), release("dev")])
    assert [r["name"] for r in records] == ["test-app-dev", "test-app-prd", "test-app-qa"]


def test_history_marks_the_deployed_revision() -> None:
    history = [entry(3, "v3", "Ready"), entry(4, "v4", "Failed"), entry(2, "v2", "Superseded")]
    record = views.history_record(release(revision=3, history=history))
    revisions = record["revisions"]
    assert [(r["revision"], r["deployed"]) for r in revisions] == [
        (4, False),
        (3, True),
        (2, False),
    ]
    assert views.history_table(record).splitlines()[:4] == [
        "    REVISION   TAG   CREATED                CAUSE     OUTCOME",
        "    4          v4    2025-06-01T10:04:00Z   cause 4   Failed",
        "*   3          v3    2025-06-01T10:03:00Z   cause 3   Ready",
        "    2          v2    2025-06-01T10:02:00Z   cause 2   Superseded",
    ]


def test_history_shows_the_deployment_log_newest_first() -> None:
    log = [
        {
            "at": "2025-06-01T10:03:00Z",
            "action": "Deploy",
            "revision": 3,
            "tag": "v3",
            "by": "alice",
            "cause": "commit abc",
            "outcome": "Ready",
        },
        {
            "at": "2025-06-01T10:05:00Z",
            "action": "AutoRollback",
            "revision": 3,
            "tag": "v3",
            "by": "testapp-operator",
            "cause": "revision 4 failed",
            "outcome": "Ready",
        },
    ]
    record = views.history_record(release(deployments=log))
    assert [e["action"] for e in record["deployments"]] == ["AutoRollback", "Deploy"]
    lines = views.history_table(record).splitlines()
    start = lines.index("DEPLOYMENTS (newest first)")
    assert lines[start + 1].split() == [
        "WHEN",
        "ACTION",
        "REVISION",
        "TAG",
        "BY",
        "CAUSE",
        "OUTCOME",
    ]
    assert lines[start + 3].split()[:5] == ["2025-06-01T10:03:00Z", "Deploy", "3", "v3", "alice"]


def test_render_gives_json_yaml_or_the_table() -> None:
    data = [{"revision": 1, "deployed": True}]
    table = lambda wide: "wide" if wide else "table"  # noqa: E731
    assert json.loads(views.format_output(data, "json", table)) == data
    assert yaml.safe_load(views.format_output(data, "yaml", table)) == data
    assert views.format_output(data, "table", table) == "table"
    assert views.format_output(data, "wide", table) == "wide"


def test_diff_shows_what_changed_between_two_snapshots() -> None:
    before = {"image": "r/test-app", "tag": "v1", "labels": {}, "resources": {}}
    after = {**before, "tag": "v2", "labels": {"team": "web"}}
    assert views.revision_diff("test-app-dev-1", "test-app-dev-2", before, after) == (
        "--- test-app-dev-1\n"
        "+++ test-app-dev-2\n"
        "@@ -1,4 +1,5 @@\n"
        " image: r/test-app\n"
        "-labels: {}\n"
        "+labels:\n"
        "+  team: web\n"
        " resources: {}\n"
        "-tag: v1\n"
        "+tag: v2\n"
    )


def test_diff_of_identical_snapshots_is_empty() -> None:
    snapshot = {"image": "r/test-app", "tag": "v1"}
    assert views.revision_diff("a", "b", snapshot, dict(snapshot)) == ""


# --- errors --------------------------------------------------------------------------------


def api_exception(status: int, reason: str, body: str) -> ApiException:
    return ApiException(status=status, reason=reason, body=body)


def status_body(message: str, reason: str, name: str = "test-app-qa") -> str:
    details = {"name": name, "group": "testapp.dev", "kind": "testappreleases"}
    return json.dumps({"kind": "Status", "message": message, "reason": reason, "details": details})


def test_a_missing_release_is_named() -> None:
    error = api_exception(404, "Not Found", status_body("not found", "NotFound"))
    assert str(client.api_error(error, "testapprelease test-app-qa")) == (
        "testapprelease test-app-qa not found"
    )


def test_a_404_without_a_status_body_means_the_crd_is_missing() -> None:
    error = api_exception(404, "Not Found", "404 page not found\n")
    message = str(client.api_error(error, "testapprelease test-app-dev"))
    assert message.startswith("testapprelease test-app-dev: the CRD testappreleases.testapp.dev")
    assert "not installed" in message


def test_forbidden_carries_the_server_reason() -> None:
    text = 'testappreleases.testapp.dev "test-app-dev" is forbidden: User "ci" cannot patch'
    error = api_exception(403, "Forbidden", status_body(text, "Forbidden"))
    assert str(client.api_error(error, "testapprelease test-app-dev")) == (
        f"testapprelease test-app-dev: forbidden: {text}"
    )


def test_unauthorized_points_at_the_credentials() -> None:
    error = api_exception(401, "Unauthorized", status_body("Unauthorized", "Unauthorized"))
    assert "unauthorized" in str(client.api_error(error, "testapprelease list"))


def test_an_invalid_patch_is_rejected_with_the_validation_message() -> None:
    text = 'TestAppRelease.testapp.dev "test-app-dev" is invalid: spec.tag: Invalid value'
    error = api_exception(422, "Unprocessable Entity", status_body(text, "Invalid"))
    rejected = client.api_error(error, "testapprelease test-app-dev")
    assert str(rejected) == f"testapprelease test-app-dev: rejected: {text}"
    assert rejected.code is Exit.USAGE


def test_no_kubeconfig_is_an_error_exit_that_says_what_to_do(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope")
    assert commands.main(["--kubeconfig", missing, "status"]) == Exit.UNREACHABLE
    error = capsys.readouterr().err
    assert f"no usable kubeconfig at {missing}" in error
    assert "--kubeconfig" in error


def test_other_api_errors_show_status_code_and_message() -> None:
    error = api_exception(409, "Conflict", status_body("the object has been modified", "Conflict"))
    assert str(client.api_error(error, "testapprelease test-app-dev")) == (
        "testapprelease test-app-dev: 409 Conflict: the object has been modified"
    )


# --- command line --------------------------------------------------------------------------


def test_connection_flags_work_before_and_after_the_command() -> None:
    parser = commands.build_parser()
    before = parser.parse_args(["--kubeconfig", "k", "--context", "c", "status"])
    after = parser.parse_args(["history", "dev", "--kubeconfig", "k", "--context", "c"])
    assert (before.kubeconfig, before.context) == ("k", "c")
    assert (after.kubeconfig, after.context) == ("k", "c")


def test_deploy_flags_and_defaults() -> None:
    args = commands.build_parser().parse_args(["deploy", "dev", "--tag", "v4"])
    assert (args.env, args.tag, args.image, args.cause) == ("dev", "v4", None, None)
    assert (args.timeout, args.no_wait, args.dry_run) == (300, False, "none")


def test_deploy_requires_a_tag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        commands.build_parser().parse_args(["deploy", "dev"])
    assert exited.value.code == 2
    assert "--tag" in capsys.readouterr().err


def test_rollback_diff_and_promote_arguments() -> None:
    parser = commands.build_parser()
    assert parser.parse_args(["rollback", "prd", "--to-revision", "3"]).to_revision == 3
    diff = parser.parse_args(["diff", "dev", "1", "2"])
    assert (diff.env, diff.rev_a, diff.rev_b) == ("dev", 1, 2)
    promote = parser.parse_args(["promote", "dev", "stg", "--no-wait"])
    assert (promote.from_env, promote.to_env, promote.no_wait) == ("dev", "stg", True)


def test_output_format_is_checked() -> None:
    with pytest.raises(SystemExit):
        commands.build_parser().parse_args(["status", "-o", "xml"])


def test_wide_status_shows_the_held_back_tag_image_and_message() -> None:
    pinned = release("stg", revision=2, tag="v2", pinned=True)
    pinned["spec"]["tag"] = "v3"
    pinned["status"]["conditions"] = [condition("Ready", "True", "RolloutComplete", "all good")]
    lines = views.status_table(views.status_records([pinned, release("dev")]), NOW, wide=True)
    assert lines.splitlines()[0].split()[-3:] == ["WANTED", "IMAGE", "MESSAGE"]
    assert lines.splitlines()[2].split()[7:] == ["v3", "registry.local/test-app:v2", "all", "good"]
    assert lines.splitlines()[1].split()[7] == "-"  # dev runs what it asks for


# --- durations, exit codes, input checked before any API call --------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("1m30s", 90),
        ("45", 45),
        ("2.5", 2.5),
        ("0", None),
        ("0s", None),
    ],
)
def test_timeouts_read_like_kubectl_durations(text: str, seconds: float | None) -> None:
    assert core.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "-3", "5 m", "nan", "1d"])
def test_a_bad_duration_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="use 90s, 5m, 1h30m"):
        core.parse_duration(text)


def test_a_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        commands.build_parser().parse_args(["deploy", "dev", "--tag", "v1", "--timeout", "5x"])
    assert exited.value.code == Exit.USAGE
    assert "--timeout" in capsys.readouterr().err


def test_timeout_zero_waits_until_the_verdict() -> None:
    progressing = release(generation=2, phase="Progressing", tag="v4")
    verdict, _ = run_wait(
        [progressing] * 50 + [release(generation=2, tag="v4")], Goal(2, "v4"), None
    )
    assert verdict.state is State.SUCCEEDED


@pytest.mark.parametrize(
    ("state", "code"),
    [(State.SUCCEEDED, Exit.OK), (State.FAILED, Exit.FAILED), (State.TIMED_OUT, Exit.TIMEOUT)],
)
def test_each_verdict_has_its_exit_code(state: State, code: Exit) -> None:
    assert Verdict(state, "").exit_code is code


def test_exit_codes_are_distinct_and_documented() -> None:
    assert [int(c) for c in Exit] == [0, 1, 2, 3, 4, 5]
    epilog = commands.build_parser().epilog
    assert all(str(int(c)) in epilog for c in Exit)


def test_a_bad_environment_is_refused_before_any_api_call(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No kubeconfig is read: the exit code is USAGE, not UNREACHABLE.
    assert commands.main(["--kubeconfig", "/nonexistent", "history", "Dev!"]) == Exit.USAGE
    assert "ENV: 'Dev!' is neither an environment" in capsys.readouterr().err


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.main([]) == Exit.USAGE


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert commands.main(["--version"]) == Exit.OK
    assert capsys.readouterr().out.startswith("kubectl-testapp ")


def test_a_missing_revision_or_release_is_exit_4() -> None:
    error = api_exception(404, "Not Found", status_body("not found", "NotFound"))
    assert client.api_error(error, "testapprelease x").code is Exit.NOT_FOUND
    forbidden = api_exception(403, "Forbidden", status_body("no", "Forbidden"))
    assert client.api_error(forbidden, "testapprelease x").code is Exit.NOT_FOUND


# --- retry, promote stages, dry run and the other verbs ---------------------------------------


def test_retry_targets_the_latest_revision_only_when_it_failed() -> None:
    failed = [entry(4, "v4", "Failed"), entry(3, "v3", "Ready")]
    assert core.retry_target(release(revision=3, history=failed))["revision"] == 4
    with pytest.raises(CliError, match="nothing to retry"):
        core.retry_target(release(revision=3, history=[entry(3, "v3", "Ready")]))


def test_deploy_of_a_failed_tag_is_a_retry_only_while_the_spec_asks_for_it() -> None:
    body = release(
        revision=3, tag="v4", history=[entry(4, "v4", "Failed"), entry(3, "v3", "Ready")]
    )
    assert core.failed_revision_of(body, "v4")["revision"] == 4
    assert core.failed_revision_of(body, "v5") is None
    rebuilt = "sha256:" + "e" * 64  # the same tag, new bytes: a plain deploy, a new revision
    assert core.failed_revision_of(body, "v4", rebuilt) is None
    body["spec"]["revision"] = 3  # pinned: a deploy clears the pin, which is a change already
    assert core.failed_revision_of(body, "v4") is None


def test_retry_and_restart_set_a_time_stamp_and_only_their_own_cause() -> None:
    assert core.stamp_patch("retryAt", "2025-06-01T12:00:00Z", None) == {
        "spec": {"retryAt": "2025-06-01T12:00:00Z"}
    }
    patch = core.stamp_patch("restartAt", "2025-06-01T12:00:00Z", "leak")
    assert patch["metadata"] == {"annotations": {"testapp.dev/change-cause": "leak"}}


def test_promote_goes_one_stage_at_a_time_unless_told() -> None:
    core.check_promotion("dev", "stg", skip_stages=False)
    core.check_promotion("dev", "prd", skip_stages=True)
    with pytest.raises(CliError, match=r"TO: dev promotes to stg, not prd") as raised:
        core.check_promotion("dev", "prd", skip_stages=False)
    assert raised.value.code is Exit.USAGE
    with pytest.raises(CliError, match="itself"):
        core.check_promotion("stg", "stg", skip_stages=True)
    with pytest.raises(CliError, match="prd promotes to nothing"):
        core.check_promotion("prd", "dev", skip_stages=False)


def test_promote_records_where_it_came_from() -> None:
    patch = core.deploy_patch("v2", "why", "r/app", promoted_from="dev/3")
    assert patch["metadata"]["annotations"]["testapp.dev/promoted-from"] == "dev/3"


def test_every_write_takes_dry_run_timeout_and_no_wait() -> None:
    parser = commands.build_parser()
    for argv in (
        ["deploy", "dev", "--tag", "v1"],
        ["rollback", "dev"],
        ["retry", "dev"],
        ["unpin", "dev"],
        ["pause", "dev"],
        ["resume", "dev"],
        ["restart", "dev"],
        ["promote", "dev", "stg"],
        ["promote-step", "dev"],
        ["abort", "dev"],
    ):
        args = parser.parse_args([*argv, "--dry-run=server", "--timeout", "5m", "--no-wait"])
        assert (args.dry_run, args.timeout, args.no_wait) == ("server", 300, True), argv


def test_every_read_takes_every_output_format() -> None:
    parser = commands.build_parser()
    for argv in (["status"], ["status", "dev"], ["history", "dev"]):
        for output in views.OUTPUTS:
            assert parser.parse_args([*argv, "-o", output]).output == output


def test_status_watch_and_wait_flags() -> None:
    args = commands.build_parser().parse_args(["status", "dev", "--wait", "--timeout", "0"])
    assert (args.env, args.wait, args.timeout) == ("dev", True, None)
    assert commands.build_parser().parse_args(["status", "-w"]).watch


def test_diff_defaults_and_deploy_preview() -> None:
    parser = commands.build_parser()
    assert (parser.parse_args(["diff", "dev"]).rev_a, parser.parse_args(["diff", "dev"]).tag) == (
        None,
        None,
    )
    assert parser.parse_args(["diff", "dev", "--tag", "v9"]).tag == "v9"


def test_the_spec_snapshot_is_the_snapshots_one_serialization() -> None:
    spec = {"image": "r/app", "tag": "v2", "labels": {"team": "web"}}

    assert views.spec_snapshot(spec) == Snapshot.from_spec(spec).to_data()
    assert views.spec_snapshot(spec)["resources"] == DEFAULT_RESOURCES.to_data()


# --- shell completion (kubectl_complete-testapp) -----------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            [""],
            [
                "status",
                "history",
                "deploy",
                "rollback",
                "retry",
                "unpin",
                "pause",
                "resume",
                "restart",
                "diff",
                "promote",
                "promote-step",
                "abort",
            ],
        ),
        (["re"], ["retry", "resume", "restart"]),
        (["promote"], ["promote", "promote-step"]),
        (["abort", "s"], ["stg"]),
        (["promote-step", "dev", "--c"], ["--cause", "--context"]),
        (["deploy", ""], ["dev", "stg", "ppd", "prd"]),
        (["promote", "dev", "s"], ["stg"]),
        (["history", "dev", "-o", "j"], ["json"]),
        (["rollback", "dev", "--to"], ["--to-revision"]),
        (["--vers"], ["--version"]),
    ],
)
def test_completion_offers_commands_environments_and_flags(words, expected) -> None:
    assert commands.completions(commands.build_parser(), words) == expected


def test_completion_ends_with_the_no_file_directive(capsys: pytest.CaptureFixture[str]) -> None:
    commands.complete(["st"])
    assert capsys.readouterr().out.splitlines() == ["status", ":4"]


def test_help_loads_neither_kopf_nor_the_kubernetes_client() -> None:
    code = (
        "import sys\n"
        "from testapp_operator.cli import commands\n"
        "commands.build_parser().format_help()\n"
        "commands.completions(commands.build_parser(), ['deploy', ''])\n"
        "print(sorted(m for m in ('kopf', 'kubernetes', 'yaml') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def pod(ready: bool, waiting: str | None = None, deleting: bool = False) -> dict[str, Any]:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    metadata: dict[str, Any] = {"name": "p"}
    if deleting:
        metadata["deletionTimestamp"] = "2025-06-01T12:00:00Z"
    return {
        "metadata": metadata,
        "status": {
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "containerStatuses": [{"state": state}],
        },
    }


def test_pod_problems_count_the_kubelets_reasons_for_pods_that_are_not_ready() -> None:
    pods = [
        pod(True),
        pod(False, "CrashLoopBackOff"),
        pod(False, "CrashLoopBackOff"),
        pod(False),
        pod(False, "ImagePullBackOff", deleting=True),
    ]

    assert views.pod_problems(pods) == "2 CrashLoopBackOff, 1 not Ready"
    assert views.pod_problems([pod(True)]) is None


def test_the_wide_status_shows_what_the_kubelet_says_of_the_pods() -> None:
    records = views.status_records([release("stg")], lambda name: [pod(False, "CrashLoopBackOff")])

    lines = views.status_table(records, NOW, wide=True).splitlines()

    assert lines[0].split()[-4:] == ["PODS", "WANTED", "IMAGE", "MESSAGE"]
    assert "1 CrashLoopBackOff" in lines[1]
    assert "PODS" not in views.status_table(records, NOW)


# --- canary: promote-step, abort (spec.canaryCommand from status.canary) ----------------------

STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "60s"}},
    {"setWeight": 50},
    {"analysis": {"query": "q", "successCondition": "result < 0.05"}},
    {"pause": {}},
]


def canary_status(
    step: int = 2, phase: str = "Progressing", revision: int = 7, **extra: Any
) -> dict[str, Any]:
    return {
        "revision": revision,
        "stableRevision": 6,
        "step": step,
        "steps": len(STEPS),
        "phase": phase,
        "weight": 25,
        "stepStartedAt": "2025-06-01T12:00:10Z",
        "message": "",
        **extra,
    }


def canaried(env: str = "stg", command: dict[str, Any] | None = None, **canary: Any) -> Any:
    """A release running revision 6 with a canary of revision 7 (status.canary from `canary`;
    `canary=None`: none)."""
    body = release(env, generation=3, revision=6, tag="v6")
    body["spec"]["strategy"] = {"canary": {"steps": STEPS}}
    if command is not None:
        body["spec"]["canaryCommand"] = command
    if canary.get("canary", True) is not None:
        body["status"]["canary"] = canary_status(**canary)
    return body


def test_promote_step_writes_the_current_step_of_the_canary_revision() -> None:
    state = core.promote_step_target(canaried(step=2))
    assert core.promote_step_patch(state) == {
        "spec": {"canaryCommand": {"revision": 7, "promoteStep": 2, "abort": False}}
    }


def test_a_canary_command_carries_only_its_own_cause() -> None:
    state = core.promote_step_target(canaried())
    patch = core.promote_step_patch(state, "looks fine on the dashboard")
    assert patch["metadata"] == {
        "annotations": {"testapp.dev/change-cause": "looks fine on the dashboard"}
    }


def test_promote_step_and_abort_without_a_canary_are_refused() -> None:
    body = canaried(canary=None)
    with pytest.raises(CliError, match=r"test-app-stg: no canary in flight \(no status.canary\)"):
        core.promote_step_target(body)
    with pytest.raises(CliError, match="no canary in flight") as raised:
        core.canary_in_flight(body, "abort")
    assert raised.value.code is Exit.FAILED


@pytest.mark.parametrize("phase", ["Promoted", "Aborted"])
def test_a_canary_that_ended_is_not_in_flight(phase: str) -> None:
    with pytest.raises(CliError) as raised:
        core.promote_step_target(canaried(phase=phase, step=5))
    assert str(raised.value) == (
        f"testapprelease test-app-stg: no canary in flight: the canary of revision 7 is {phase}"
    )
    assert raised.value.code is Exit.FAILED
    with pytest.raises(CliError, match=f"revision 7 is {phase}"):
        core.canary_in_flight(canaried(phase=phase), "abort")


def test_promote_step_while_promoting_has_nothing_to_promote() -> None:
    with pytest.raises(CliError, match=r"test-app-stg: nothing to promote: every step") as raised:
        core.promote_step_target(canaried(phase="Promoting", step=5))
    assert raised.value.code is Exit.FAILED
    # Abort still applies while stable takes the canary's revision.
    assert core.canary_in_flight(canaried(phase="Promoting", step=5), "abort").revision == 7


def test_a_damaged_status_canary_is_refused_naming_the_field() -> None:
    with pytest.raises(CliError, match=r"status.canary.phase: must be one of Progressing"):
        core.promote_step_target(canaried(phase="Sideways"))


def test_abort_keeps_a_promote_step_of_the_same_canary() -> None:
    body = canaried(command={"revision": 7, "promoteStep": 1, "abort": False})
    patch = core.abort_patch(body, core.canary_in_flight(body, "abort"))
    assert patch == {"spec": {"canaryCommand": {"revision": 7, "promoteStep": 1, "abort": True}}}


def test_abort_drops_a_promote_step_of_another_canary() -> None:
    body = canaried(command={"revision": 5, "promoteStep": 3, "abort": False})
    patch = core.abort_patch(body, core.canary_in_flight(body, "abort"))
    # null: the merge patch removes it, so step 3 of revision 5 never applies to revision 7.
    assert json.dumps(patch["spec"]["canaryCommand"]) == (
        '{"revision": 7, "promoteStep": null, "abort": true}'
    )
    assert core.abort_patch(canaried(), core.canary_in_flight(canaried(), "abort")) == {
        "spec": {"canaryCommand": {"revision": 7, "promoteStep": None, "abort": True}}
    }


@pytest.mark.parametrize(
    ("index", "described"),
    [(0, "setWeight 25"), (1, "pause 60s"), (3, "analysis"), (4, "pause (until promote-step)")],
)
def test_each_step_is_described_in_a_few_words(index: int, described: str) -> None:
    assert core.describe_step(canaried(), index) == described


def test_a_step_the_spec_no_longer_has_is_a_question_mark() -> None:
    assert core.describe_step(canaried(), 9) == "?"


def observed(body: Any, generation: int = 4, **canary: Any) -> Any:
    """`body` as the operator left it after seeing generation `generation`."""
    body = json.loads(json.dumps(body))
    body["metadata"]["generation"] = generation
    body["status"]["observedGeneration"] = generation
    body["status"]["canary"] |= canary
    return body


def test_promote_step_waits_for_the_operator_then_for_the_step_to_pass() -> None:
    goal = core.CanaryGoal(4, revision=7, step=2)
    assert core.judge(canaried(), goal) == Verdict(
        State.WAITING, "waiting for the operator to observe generation 4"
    )
    assert core.judge(observed(canaried()), goal) == Verdict(
        State.WAITING,
        "canary revision 7: step 3/5 (setWeight 50), phase Progressing, weight 25%",
    )
    assert core.judge(observed(canaried(), step=3, weight=50), goal) == Verdict(
        State.SUCCEEDED, "step 3/5 passed: setWeight 50; now step 4/5 (analysis)"
    )


def test_promote_step_of_the_last_step_ends_in_promoting() -> None:
    goal = core.CanaryGoal(4, revision=7, step=4)
    body = observed(canaried(step=4), step=5, phase="Promoting")
    assert core.judge(body, goal) == Verdict(
        State.SUCCEEDED, "step 5/5 passed: pause (until promote-step); promoting revision 7"
    )


def test_promote_step_succeeds_when_the_canary_was_promoted() -> None:
    body = observed(canaried(), step=5, phase="Promoted", message="promoted: stable runs 7")
    verdict = core.judge(body, core.CanaryGoal(4, revision=7, step=2))
    assert verdict == Verdict(
        State.SUCCEEDED, "the canary of revision 7 is Promoted: promoted: stable runs 7"
    )


def test_promote_step_fails_when_the_canary_aborted() -> None:
    message = "AnalysisFailed: 0.3: result < 0.05 does not hold"
    body = observed(canaried(), step=3, phase="Aborted", message=message)
    verdict = core.judge(body, core.CanaryGoal(4, revision=7, step=2))
    assert verdict == Verdict(State.FAILED, f"the canary of revision 7 is Aborted: {message}")
    assert verdict.exit_code is Exit.FAILED


def test_a_paused_step_shows_its_reason_while_waiting() -> None:
    body = observed(canaried(step=3), phase="Paused", pauseReason="NoData", message="no data")
    assert core.judge(body, core.CanaryGoal(4, revision=7, step=3)).message == (
        "canary revision 7: step 4/5 (analysis), phase Paused (NoData), weight 25%: no data"
    )


def test_abort_waits_until_the_canary_is_aborted() -> None:
    goal = core.CanaryGoal(4, revision=7, abort=True)
    assert core.judge(observed(canaried()), goal).state is State.WAITING
    message = "AbortedByUser: aborted by kubectl testapp abort"
    body = observed(canaried(), phase="Aborted", message=message, weight=0)
    assert core.judge(body, goal) == Verdict(
        State.SUCCEEDED, f"the canary of revision 7 is Aborted: {message}; stable runs revision 6"
    )


def test_abort_fails_when_the_canary_was_promoted_first() -> None:
    body = observed(canaried(), phase="Promoted", message="promoted")
    verdict = core.judge(body, core.CanaryGoal(4, revision=7, abort=True))
    assert verdict == Verdict(
        State.FAILED, "the canary of revision 7 is Promoted: promoted (promoted before the abort)"
    )


def test_a_canary_command_fails_when_another_canary_replaced_it() -> None:
    body = observed(canaried(), revision=8, step=0)
    verdict = core.judge(body, core.CanaryGoal(4, revision=7, step=2))
    assert verdict == Verdict(
        State.FAILED, "revision 7 is no longer the canary (status.canary is about revision 8)"
    )


def test_a_canary_command_fails_when_the_release_is_paused() -> None:
    body = observed(canaried())
    body["status"]["phase"] = "Paused"
    verdict = core.judge(body, core.CanaryGoal(4, revision=7, abort=True))
    assert verdict.state is State.FAILED
    assert "spec.paused" in verdict.message


def test_a_canary_command_times_out_with_the_canary_line() -> None:
    body = observed(canaried(), phase="Paused", pauseReason="PauseStep")
    verdict, lines = run_wait([canaried(), body], core.CanaryGoal(4, revision=7, abort=True), 2)
    assert verdict.state is State.TIMED_OUT
    assert lines == [
        "waiting for the operator to observe generation 4",
        "canary revision 7: step 3/5 (setWeight 50), phase Paused (PauseStep), weight 25%",
    ]


class FakeReleases:
    """The ReleaseClient calls the write commands make, on one release in memory; the
    operator's answer to each patch is `react(body)`."""

    def __init__(self, body: Any, react: Any = None) -> None:
        self.body = body
        self.patches: list[Any] = []
        self.react = react

    def get_release(self, name: str) -> Any:
        assert name == self.body["metadata"]["name"]
        return json.loads(json.dumps(self.body))

    read_release_retrying = get_release

    def patch_release(self, name: str, patch: Any, dry_run: bool = False) -> Any:
        assert not dry_run
        self.patches.append(patch)
        self.body["metadata"]["generation"] += 1
        self.body["spec"] |= patch["spec"]
        if self.react is not None:
            self.react(self.body)
        return self.get_release(name)


def run_command(kube: FakeReleases, *argv: str) -> int:
    args = commands.build_parser().parse_args(list(argv))
    return args.handler(kube, args)


def test_the_promote_step_command_patches_and_reports_the_step_that_passed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def operator(body: Any) -> None:
        body["status"]["observedGeneration"] = body["metadata"]["generation"]
        body["status"]["canary"] |= {"step": 3, "weight": 50}

    kube = FakeReleases(canaried(), operator)
    assert run_command(kube, "promote-step", "stg", "--timeout", "5s") == Exit.OK
    assert kube.patches == [
        {"spec": {"canaryCommand": {"revision": 7, "promoteStep": 2, "abort": False}}}
    ]
    printed = capsys.readouterr()
    assert printed.out == ("test-app-stg: step 3/5 passed: setWeight 50; now step 4/5 (analysis)\n")
    assert "test-app-stg: promoting step 3/5 (setWeight 50) of the canary of revision 7" in (
        printed.err
    )


def test_the_abort_command_without_waiting_only_patches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kube = FakeReleases(canaried(step=1))
    assert run_command(kube, "abort", "stg", "--no-wait", "--cause", "error rate") == Exit.OK
    assert kube.patches == [
        {
            "metadata": {"annotations": {"testapp.dev/change-cause": "error rate"}},
            "spec": {"canaryCommand": {"revision": 7, "promoteStep": None, "abort": True}},
        }
    ]
    assert "not waiting" in capsys.readouterr().out


def test_the_canary_commands_refuse_without_writing(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("promote-step", "stg"), ("abort", "stg")):
        kube = FakeReleases(canaried(phase="Aborted"))
        with pytest.raises(CliError, match="no canary in flight"):
            run_command(kube, *argv)
        assert kube.patches == []


# --- canary: status -o wide and -o json ------------------------------------------------------


def test_the_wide_status_adds_the_canary_columns_after_the_others() -> None:
    analysis = {
        "nextMeasurementAt": "2025-06-01T12:01:10Z",
        "successful": 1,
        "failed": 0,
        "errors": 0,
        "consecutiveErrors": 0,
        "inconclusive": 0,
        "lastResult": "Successful",
        "lastValue": "0.01",
        "lastMeasuredAt": "2025-06-01T12:00:40Z",
        "lastMessage": "0.01: result < 0.05",
    }
    stg = canaried(step=3, analysis=analysis)
    records = views.status_records([stg, release("dev")])

    lines = views.status_table(records, NOW, wide=True).splitlines()

    assert lines[0].split() == [
        *["ENV", "TAG", "REVISION", "READY", "PINNED", "PHASE", "AGE", "WANTED", "IMAGE"],
        *["MESSAGE", "STEP", "WEIGHT", "ANALYSIS", "CANARY"],
    ]
    assert lines[1].split()[-4:] == ["-", "-", "-", "-"]  # dev has no canary
    assert lines[2].split()[-5:] == ["4/5", "25%", "0.01", "Successful", "Progressing"]
    assert "STEP" not in views.status_table(records, NOW)


def test_the_canary_column_shows_why_it_is_paused_and_a_step_without_a_measurement() -> None:
    paused = canaried(step=4, phase="Paused", pauseReason="PauseStep", weight=50)
    (cells,) = [views.canary_cells(r.get("canary")) for r in views.status_records([paused])]
    assert cells == ["5/5", "50%", None, "Paused:PauseStep"]
    # Once every step passed the index is the number of steps: shown as the last one.
    assert views.canary_cells(canary_status(step=5, phase="Promoting"))[0] == "5/5"


def test_without_any_canary_the_wide_status_is_unchanged() -> None:
    records = views.status_records([release("dev"), release("stg")])
    assert views.status_table(records, NOW, wide=True).splitlines()[0].split() == [
        *["ENV", "TAG", "REVISION", "READY", "PINNED", "PHASE", "AGE", "WANTED", "IMAGE"],
        "MESSAGE",
    ]
    assert all("canary" not in r for r in records)


def test_the_status_record_carries_status_canary_as_written() -> None:
    (record,) = views.status_records([canaried()])
    assert record["canary"] == canary_status()
    assert json.loads(views.format_output([record], "json", str))[0]["canary"]["revision"] == 7
