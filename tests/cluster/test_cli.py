"""`kubectl testapp` against the real control plane and the running operator, as a subprocess.

Each test makes its own releases named `test-app-t<hex>` (env dev or stg), so tests share one
control plane and one operator without seeing each other's objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from testapp_dev import LiveCluster, service_account_kubeconfig, wait_until

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
PLUGIN = Path(sys.executable).parent / "kubectl-testapp"
IMAGE = "example/test-app"
# kwok never makes Pods of a tag starting with "broken" Ready; 10 s is the shortest deadline.
DEADLINE_SECONDS = 10
CHANGE_CAUSE = "testapp.dev/change-cause"


@dataclass(frozen=True)
class Plugin:
    """Runs `kubectl-testapp --kubeconfig <cluster> ...` the way a shell or the pipeline does."""

    kubeconfig: str

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        # No GitLab variables leak in from a CI run: the default cause is then predictable.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GITLAB_"))}
        return subprocess.run(
            [str(PLUGIN), "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            env={**env, "USER": "tester"},
            timeout=timeout,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self(*args)
        assert result.returncode == 0, f"kubectl testapp {' '.join(args)}:\n{result.stderr}"
        return result


@pytest.fixture
def testapp(cluster: LiveCluster, crd: None) -> Plugin:
    return Plugin(cluster.kubeconfig)


@pytest.fixture
def new_release(cluster: LiveCluster, crd: None) -> Iterator[Callable[..., str]]:
    """Create a TestAppRelease with a unique name; deleted (with all it produced) afterwards."""
    names: list[str] = []

    def create(env: str = "dev", tag: str = "v1", **spec: Any) -> str:
        name = f"test-app-t{uuid.uuid4().hex[:8]}"
        manifest = {
            "apiVersion": "testapp.dev/v1",
            "kind": "TestAppRelease",
            "metadata": {
                "name": name,
                "annotations": {"testapp.dev/change-cause": f"deploy {tag}"},
            },
            "spec": {
                "env": env,
                "image": IMAGE,
                "tag": tag,
                "progressDeadlineSeconds": DEADLINE_SECONDS,
                **spec,
            },
        }
        cluster.kubectl("create", "-f", "-", input=json.dumps(manifest))
        names.append(name)
        return name

    yield create
    for name in names:
        cluster.kubectl("delete", "testapprelease", name, "--wait=false", check=False)


def release(cluster: LiveCluster, name: str) -> dict[str, Any]:
    return cluster.get("testapprelease", name)


def deployed_history(testapp: Plugin, name: str) -> list[dict[str, Any]]:
    return json.loads(testapp.ok("history", name, "-o", "json").stdout)["revisions"]


# --- without the operator: naming, errors and the deploy patch --------------------------------


def test_an_unknown_environment_fails_naming_the_release(testapp: Plugin) -> None:
    env = f"nope{uuid.uuid4().hex[:6]}"
    for args in (("history", env), ("deploy", env, "--tag", "v1"), ("rollback", env)):
        result = testapp(*args)
        assert result.returncode == 4, args
        assert f"error: testapprelease test-app-{env} not found" in result.stderr


def test_deploy_sets_tag_clears_the_pin_and_records_the_cause_in_one_write(
    cluster: LiveCluster, testapp: Plugin, new_release: Callable[..., str]
) -> None:
    name = new_release(tag="v1", revision=1)
    generation = release(cluster, name)["metadata"]["generation"]

    result = testapp.ok("deploy", name, "--tag", "v2", "--image", "example/other", "--no-wait")

    body = release(cluster, name)
    assert body["metadata"]["generation"] == generation + 1
    assert (body["spec"]["tag"], body["spec"]["image"]) == ("v2", "example/other")
    assert "revision" not in body["spec"]
    assert body["metadata"]["annotations"][CHANGE_CAUSE] == ("kubectl-testapp deploy v2 by tester")
    assert "not waiting" in result.stdout


def test_an_invalid_tag_is_rejected_with_the_server_message(
    testapp: Plugin, new_release: Callable[..., str]
) -> None:
    name = new_release()
    result = testapp("deploy", name, "--tag", "not a tag", "--no-wait")
    assert result.returncode == 2
    assert f"testapprelease {name}: rejected:" in result.stderr
    assert "spec.tag" in result.stderr


# --- canary commands: the test writes status.canary itself, as the operator would ------------

STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "60s"}}]


def canary_status(revision: int = 7, step: int = 1, phase: str = "Paused", **extra: Any) -> dict:
    status = {
        "revision": revision,
        "stableRevision": revision - 1,
        "step": step,
        "steps": len(STEPS),
        "phase": phase,
        "weight": 25,
        "stepStartedAt": "2026-12-03T12:00:10Z",
        "message": "waiting for promote-step",
        **extra,
    }
    if phase == "Paused":
        status.setdefault("pauseReason", "PauseStep")
    return status


def write_canary(cluster: LiveCluster, name: str, canary: dict[str, Any] | None) -> None:
    """status.canary as an operator would write it, through the status subresource."""
    patch = json.dumps({"status": {"canary": canary}})
    cluster.kubectl(
        "patch", "testapprelease", name, "--subresource=status", "--type=merge", "-p", patch
    )


@pytest.fixture
def without_operator(operator: Any) -> Iterator[None]:
    """No operator while the test runs: a running one would replace the status the test wrote
    (the session's operator is started again afterwards, once the test's releases are gone)."""
    operator.stop()
    yield
    operator.start()


@pytest.fixture
def canaried(
    without_operator: None, cluster: LiveCluster, new_release: Callable[..., str]
) -> Callable[..., str]:
    """A release with a canary strategy and the given status.canary (None: none)."""

    def make(canary: dict[str, Any] | None = None, env: str = "stg") -> str:
        name = new_release(env=env, strategy={"canary": {"steps": STEPS}})
        if canary is not None:
            write_canary(cluster, name, canary)
        return name

    return make


def test_promote_step_and_abort_write_the_canary_command_of_the_canary_in_status(
    cluster: LiveCluster, testapp: Plugin, canaried: Callable[..., str]
) -> None:
    name = canaried(canary_status(revision=7, step=1))

    dry = testapp.ok("promote-step", name, "--dry-run=server")
    after_dry_run = release(cluster, name)
    promoted = testapp.ok("promote-step", name, "--no-wait", "--cause", "dashboards look fine")
    after_promote = release(cluster, name)
    testapp.ok("abort", name, "--no-wait")
    after_abort = release(cluster, name)["spec"]["canaryCommand"]
    write_canary(cluster, name, canary_status(revision=8, step=0, phase="Progressing"))
    testapp.ok("abort", name, "--no-wait")
    next_canary = release(cluster, name)["spec"]["canaryCommand"]

    assert "server dry run, nothing changed" in dry.stdout
    assert "+  canaryCommand:" in dry.stdout
    assert "canaryCommand" not in after_dry_run["spec"]
    command = after_promote["spec"]["canaryCommand"]
    assert command == {"revision": 7, "promoteStep": 1, "abort": False}
    assert after_promote["metadata"]["annotations"][CHANGE_CAUSE] == "dashboards look fine"
    assert f"{name}: promoting step 2/4 (pause (until promote-step))" in promoted.stderr
    assert "not waiting" in promoted.stdout
    assert after_abort == {"revision": 7, "promoteStep": 1, "abort": True}  # the step stays
    assert next_canary == {"revision": 8, "abort": True}  # step 1 of revision 7 is gone


def test_canary_commands_with_nothing_to_act_on_are_refused_and_write_nothing(
    cluster: LiveCluster, testapp: Plugin, canaried: Callable[..., str]
) -> None:
    cases = [
        ("promote-step", None, "no canary in flight (no status.canary)"),
        ("abort", None, "no canary in flight (no status.canary)"),
        ("promote-step", {"phase": "Promoted", "step": 4}, "revision 7 is Promoted"),
        ("abort", {"phase": "Aborted"}, "revision 7 is Aborted"),
        ("promote-step", {"phase": "Promoting", "step": 4}, "nothing to promote: every step"),
    ]
    for command, canary, refusal in cases:
        name = canaried(None if canary is None else canary_status(**canary))
        generation = release(cluster, name)["metadata"]["generation"]

        result = testapp(command, name, "--no-wait")

        assert result.returncode == 1, (command, canary, result.stderr)
        assert f"error: testapprelease {name}: " in result.stderr
        assert refusal in result.stderr
        body = release(cluster, name)
        assert "canaryCommand" not in body["spec"]
        assert body["metadata"]["generation"] == generation


def test_a_canary_command_waits_for_the_operator_until_its_timeout(
    testapp: Plugin, canaried: Callable[..., str]
) -> None:
    name = canaried(canary_status(revision=7, step=1))

    result = testapp("abort", name, "--timeout", "1s")

    assert result.returncode == 3, result.stderr
    assert f"error: testapprelease {name}: timed out after 1s; last seen: waiting for the " in (
        result.stderr
    )


def test_status_wide_shows_the_canary_and_json_carries_it(
    testapp: Plugin, canaried: Callable[..., str]
) -> None:
    analysis = {
        "nextMeasurementAt": "2026-12-03T12:01:10Z",
        **{"successful": 1, "failed": 0, "errors": 0, "consecutiveErrors": 0, "inconclusive": 0},
        "lastResult": "Successful",
        "lastValue": "0.01",
        "lastMeasuredAt": "2026-12-03T12:00:40Z",
        "lastMessage": "0.01: result < 0.05",
    }
    name = canaried(canary_status(step=2, phase="Progressing", analysis=analysis))
    plain = canaried(env="dev")

    wide = printed_columns(testapp.ok("status", name, "-o", "wide").stdout.splitlines())
    (record,) = json.loads(testapp.ok("status", name, "-o", "json").stdout)
    without = testapp.ok("status", plain, "-o", "wide").stdout.splitlines()

    canary = {k: wide[k] for k in ("STEP", "WEIGHT", "ANALYSIS", "CANARY")}
    assert canary == {
        "STEP": "3/4",
        "WEIGHT": "25%",
        "ANALYSIS": "0.01 Successful",
        "CANARY": "Progressing",
    }
    assert list(wide)[-5:] == ["MESSAGE", "STEP", "WEIGHT", "ANALYSIS", "CANARY"]
    assert (record["canary"]["revision"], record["canary"]["step"]) == (7, 2)
    assert without[0].split()[-1] == "MESSAGE"


# --- with the operator --------------------------------------------------------------------------


@pytest.fixture
def deployed(operator: Any, testapp: Plugin, new_release: Callable[..., str]) -> Callable[..., str]:
    """A release that went through `deploy` for each tag in turn, each one Ready."""

    def make(*tags: str, env: str = "dev") -> str:
        name = new_release(env=env, tag=tags[0])
        for tag in tags:
            testapp.ok("deploy", name, "--tag", tag, "--cause", f"deploy {tag}")
        return name

    return make


def test_deploy_waits_for_the_new_tag_to_be_ready_and_prints_its_revision(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    result = testapp("deploy", name, "--tag", "v2", "--timeout", "120")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name}: revision 2 is Ready, image {IMAGE}:v2"
    status = release(cluster, name)["status"]
    assert (status["phase"], status["revision"], status["image"]) == ("Ready", 2, f"{IMAGE}:v2")
    # Progress goes to stderr, one line per change.
    lines = result.stderr.splitlines()
    assert len(lines) == len(set(lines))


def test_deploy_of_a_tag_that_never_gets_ready_exits_1_with_the_condition_message(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    result = testapp("deploy", name, "--tag", "broken-1", "--timeout", "5m")

    assert result.returncode == 1
    assert f"error: testapprelease {name}: " in result.stderr
    assert "timed out" not in result.stderr
    newest = deployed_history(testapp, name)[0]
    assert (newest["revision"], newest["tag"], newest["outcome"]) == (2, "broken-1", "Failed")


def test_deploy_that_outlasts_its_timeout_exits_3_with_the_last_phase(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    result = testapp("deploy", name, "--tag", "broken-2", "--timeout", "3s")

    assert result.returncode == 3
    assert f"error: testapprelease {name}: timed out after 3s; last seen: " in result.stderr
    assert "Progressing" in result.stderr


def test_rollback_pins_the_previous_ready_revision(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")

    result = testapp("rollback", name)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name}: revision 1 is Ready, image {IMAGE}:v1"
    body = release(cluster, name)
    assert (body["spec"]["revision"], body["status"]["revision"]) == (1, 1)
    assert body["status"]["pinned"] is True


def test_rollback_to_revision_pins_that_revision(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2", "v3")

    testapp.ok("rollback", name, "--to-revision", "1")

    assert release(cluster, name)["status"]["revision"] == 1


def test_rollback_to_a_revision_not_in_history_exits_4_listing_the_revisions(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")

    result = testapp("rollback", name, "--to-revision", "9")

    assert result.returncode == 4
    assert result.stderr.strip() == (
        f"error: testapprelease {name} has no revision 9 in its history "
        "(revisions: 2 (Ready), 1 (Ready))"
    )
    assert "revision" not in release(cluster, name)["spec"]


def test_rollback_with_nothing_to_go_back_to_exits_4(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    result = testapp("rollback", name)

    assert result.returncode == 4
    assert f"testapprelease {name} has no Ready revision older than" in result.stderr


def test_unpin_goes_back_to_the_latest_revision(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")
    testapp.ok("rollback", name)

    testapp.ok("unpin", name)

    body = release(cluster, name)
    assert "revision" not in body["spec"]
    assert (body["status"]["revision"], body["status"]["pinned"]) == (2, False)


def test_history_lists_revisions_newest_first_and_marks_the_deployed_one(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")
    testapp.ok("rollback", name)

    records = deployed_history(testapp, name)
    table = testapp.ok("history", name).stdout.splitlines()

    assert [(r["revision"], r["tag"], r["deployed"]) for r in records] == [
        (2, "v2", False),
        (1, "v1", True),
    ]
    assert [r["changeCause"] for r in records] == ["deploy v2", "deploy v1"]
    assert table[0].split() == ["REVISION", "TAG", "CREATED", "CAUSE", "OUTCOME"]
    assert table[1].split()[:2] == ["2", "v2"]
    assert table[2].split()[:3] == ["*", "1", "v1"]


def test_status_shows_what_runs_in_each_release(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    dev = deployed("v1", "v2")
    stg = deployed("v1", env="stg")
    testapp.ok("rollback", dev)

    records = {r["name"]: r for r in json.loads(testapp.ok("status", "-o", "json").stdout)}
    table = testapp.ok("status").stdout.splitlines()

    assert {k: records[dev][k] for k in ("env", "tag", "revision", "pinned", "phase")} == {
        "env": "dev",
        "tag": "v1",
        "revision": 1,
        "pinned": True,
        "phase": "Ready",
    }
    assert {k: records[stg][k] for k in ("env", "tag", "pinned")} == {
        "env": "stg",
        "tag": "v1",
        "pinned": False,
    }
    assert records[stg]["readyReplicas"] == records[stg]["desiredReplicas"] == 1
    assert table[0].split() == ["ENV", "TAG", "REVISION", "READY", "PINNED", "PHASE", "AGE"]


def test_diff_shows_what_changed_between_two_revisions(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")

    result = testapp.ok("diff", name, "1", "2")

    lines = result.stdout.splitlines()
    assert lines[:2] == [f"--- {name}-1", f"+++ {name}-2"]
    assert "-tag: v1" in lines
    assert "+tag: v2" in lines


def test_diff_with_a_missing_revision_exits_1_listing_what_exists(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")

    result = testapp("diff", name, "1", "9")

    assert result.returncode == 4
    assert f"testapprelease {name} has no revision 9" in result.stderr
    assert "revisions: 1, 2" in result.stderr


def test_promote_deploys_what_runs_in_one_release_to_another(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    source = deployed("v1", "v2")
    testapp.ok("rollback", source)  # pinned: spec.tag says v2, v1 runs
    target = deployed("v0", env="stg")

    result = testapp("promote", source, target)

    assert result.returncode == 0, result.stderr
    body = release(cluster, target)
    assert body["status"]["image"] == f"{IMAGE}:v1"
    assert body["metadata"]["annotations"][CHANGE_CAUSE] == (
        f"promoted from {source.removeprefix('test-app-')} revision 1"
    )
    newest = log_of(testapp, target)[0]
    assert (newest["action"], newest["tag"], newest["outcome"]) == ("Promote", "v1", "Ready")


# --- rollback semantics, retry, restart, pause ---------------------------------------------------


def log_of(testapp: Plugin, name: str) -> list[dict[str, Any]]:
    return json.loads(testapp.ok("history", name, "-o", "json").stdout)["deployments"]


def test_a_second_rollback_goes_further_back_never_forward(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2", "v3")

    testapp.ok("rollback", name)
    first = release(cluster, name)["status"]["revision"]
    testapp.ok("rollback", name)
    second = release(cluster, name)["status"]["revision"]

    assert (first, second) == (2, 1)
    assert [e["action"] for e in log_of(testapp, name)[:2]] == ["Rollback", "Rollback"]


def test_retry_after_an_automatic_rollback_attempts_the_failed_tag_again(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")
    failed = testapp("deploy", name, "--tag", "broken-r", "--timeout", "5m")
    assert failed.returncode == 1  # rolled back to revision 1
    # What a GitLab "Retry job" runs: the same deploy, again.
    same = testapp("deploy", name, "--tag", "broken-r", "--no-wait")
    assert release(cluster, name)["metadata"]["generation"] == 2, same.stderr

    retried = testapp("deploy", name, "--tag", "broken-r", "--retry-failed", "--timeout", "2m")

    assert retried.returncode == 1  # kwok never makes a broken-* Pod Ready: failed once more
    assert "retrying failed revision 2 (tag broken-r)" in retried.stderr
    revisions = deployed_history(testapp, name)
    assert [(r["revision"], r["tag"], r["outcome"]) for r in revisions] == [
        (3, "broken-r", "Failed"),
        (2, "broken-r", "Failed"),
        (1, "v1", "Ready"),
    ]
    # The command returns once the release is Degraded, when the rollback's rollout has begun.
    wait_until(
        lambda: log_of(testapp, name)[0]["outcome"] == "Ready",
        timeout=60,
        what="the automatic rollback's rollout Ready in the deployment log",
    )
    actions = [(e["action"], e["revision"], e["outcome"]) for e in log_of(testapp, name)]
    assert actions[:4] == [
        ("AutoRollback", 1, "Ready"),
        ("Retry", 3, "Failed"),
        ("AutoRollback", 1, "Ready"),
        ("Deploy", 2, "Failed"),
    ]
    assert release(cluster, name)["status"]["revision"] == 1


def test_retry_with_nothing_failed_exits_1(testapp: Plugin, deployed: Callable[..., str]) -> None:
    name = deployed("v1")

    result = testapp("retry", name)

    assert result.returncode == 1
    assert "nothing to retry" in result.stderr


def test_restart_replaces_the_pods_records_it_and_makes_no_revision(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    testapp.ok("restart", name, "--cause", "leaking memory")

    template = cluster.get("deployment", name, "-n", name)["spec"]["template"]["metadata"]
    assert "testapp.dev/restarted-at" in template["annotations"]
    assert [r["revision"] for r in deployed_history(testapp, name)] == [1]
    newest = log_of(testapp, name)[0]
    assert (newest["action"], newest["revision"], newest["cause"]) == (
        "Restart",
        1,
        "leaking memory",
    )
    assert newest["outcome"] == "Ready"


def test_pause_holds_a_deploy_back_until_resume(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")
    testapp.ok("pause", name)

    held = testapp("deploy", name, "--tag", "v2", "--timeout", "30s")

    assert held.returncode == 1
    assert "paused" in held.stderr
    testapp.ok("resume", name)
    assert release(cluster, name)["status"]["image"] == f"{IMAGE}:v2"


def test_dry_run_changes_nothing_and_shows_the_change(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")
    before = release(cluster, name)["metadata"]["generation"]

    result = testapp.ok("deploy", name, "--tag", "v9", "--dry-run=server")

    assert "server dry run" in result.stdout
    assert "+  tag: v9" in result.stdout
    assert release(cluster, name)["metadata"]["generation"] == before


def test_status_wait_and_wide_output(testapp: Plugin, deployed: Callable[..., str]) -> None:
    name = deployed("v1", "v2")
    testapp.ok("rollback", name)

    waited = testapp("status", name, "--wait", "--timeout", "1m")
    wide = testapp.ok("status", name, "-o", "wide").stdout.splitlines()

    assert waited.returncode == 0, waited.stderr
    assert wide[0].split()[-4:] == ["PODS", "WANTED", "IMAGE", "MESSAGE"]
    assert wide[1].split()[1] == "v1"  # TAG: what runs
    assert wide[1].split()[7] == "-"  # PODS: kwok keeps them Ready
    assert wide[1].split()[8] == "v2"  # WANTED: held back by the pin


def test_get_tar_shows_the_running_tag_while_pinned(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")
    testapp.ok("rollback", name)

    table = cluster.kubectl("get", "tar", name).stdout.splitlines()
    wide = cluster.kubectl("get", "tar", name, "-o", "wide").stdout.splitlines()

    columns = printed_columns(table)
    assert (columns["TAG"], columns["REVISION"], columns["PINNED"]) == ("v1", "1", "true")
    wide_columns = printed_columns(wide)
    assert wide_columns["WANTED"] == "v2"
    assert wide_columns["MESSAGE"].startswith("revision 1: ")


def printed_columns(lines: list[str]) -> dict[str, str]:
    """kubectl's table as {HEADER: cell} for the first row, cut where each header starts (cells
    may hold spaces)."""
    header, row = lines[0], lines[1]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    bounds = zip(starts, [*starts[1:], None], strict=True)
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}


def test_diff_previews_a_deploy_against_what_runs(
    testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    result = testapp.ok("diff", name, "--tag", "v7")

    assert "-tag: v1" in result.stdout
    assert "+tag: v7" in result.stdout


# --- the child Deployment: what kubectl rollout does to it -----------------------------------


def test_kubectl_rollout_restart_on_the_child_deployment_is_kept(
    cluster: LiveCluster, deployed: Callable[..., str]
) -> None:
    name = deployed("v1")

    cluster.kubectl("rollout", "restart", f"deployment/{name}", "-n", name)
    cluster.kubectl("rollout", "status", f"deployment/{name}", "-n", name, "--timeout=60s")
    # A spec change makes the operator apply the Deployment again: the restart survives it.
    cluster.kubectl("scale", "tar", name, "--replicas=2")

    def kept() -> bool:
        deployment = cluster.get("deployment", name, "-n", name)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return deployment["spec"]["replicas"] == 2 and (
            "kubectl.kubernetes.io/restartedAt" in annotations
        )

    wait_until(kept, timeout=30, what="the scaled Deployment still carrying the restart")


def test_kubectl_rollout_undo_on_the_child_deployment_is_undone(
    cluster: LiveCluster, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")

    cluster.kubectl("rollout", "undo", f"deployment/{name}", "-n", name)

    def image() -> str:
        deployment = cluster.get("deployment", name, "-n", name)
        return deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    wait_until(lambda: image() == f"{IMAGE}:v2", timeout=30, what="the operator restoring v2")
    assert release(cluster, name)["status"]["revision"] == 2


# --- who: the admission policies, two users, a cause never inherited ---------------------------

POLICIES = REPO / "k8s" / "operator" / "admission.yaml"
SCOPE_LABEL = "testapp.dev/admission-test"


@pytest.fixture
def admission(cluster: LiveCluster, namespace: str) -> Iterator[str]:
    """The shipped policies, bound only to releases labelled SCOPE_LABEL (the shipped bindings
    would change every other test's releases); returns the label value."""
    documents = [d for d in yaml.safe_load_all(POLICIES.read_text()) if d]
    scope = {"objectSelector": {"matchLabels": {SCOPE_LABEL: namespace}}}
    names = []
    for document in documents:
        document["metadata"]["name"] = f"{document['metadata']['name']}-{namespace}"
        if document["kind"].endswith("Binding"):
            document["spec"]["policyName"] = f"{document['spec']['policyName']}-{namespace}"
            document["spec"]["matchResources"] = scope
        names.append((document["kind"].lower(), document["metadata"]["name"]))
        result = cluster.apply(document, "--server-side")
        assert result.returncode == 0, result.stderr
    yield namespace
    for kind, name in names:
        cluster.kubectl("delete", kind, name, "--wait=false", check=False)


def as_service_account(cluster: LiveCluster, namespace: str, account: str) -> Plugin:
    """The plugin authenticated by the token of a ServiceAccount allowed to move releases."""
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    rules = [
        {"apiGroups": ["testapp.dev"], "resources": ["testappreleases"], "verbs": ["get", "patch"]},
        {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": ["get", "list"]},
    ]
    role = f"{namespace}-{account}"
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": rules,
        }
    )
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        role,
        f"--clusterrole={role}",
        f"--serviceaccount={namespace}:{account}",
    )
    state = Path(cluster.state_dir)
    return Plugin(service_account_kubeconfig(cluster, namespace, account, state / f"{role}.kc"))


def policies_in_force(cluster: LiveCluster, name: str) -> None:
    """Wait until the API server enforces the just-bound policies on `name` (bindings take
    effect a moment after they are stored): a server-side dry run is stamped and a forged stamp
    refused."""

    def stamped() -> bool:
        patch = json.dumps({"spec": {"replicas": 2}})
        dry = cluster.kubectl(
            "patch", "tar", name, "--type=merge", "-p", patch, "--dry-run=server", "-o", "json"
        )
        annotations = json.loads(dry.stdout)["metadata"].get("annotations") or {}
        forged = cluster.kubectl(
            "annotate", "tar", name, "testapp.dev/changed-by=x", "--overwrite", "--dry-run=server",
            check=False,
        )  # fmt: skip
        return "testapp.dev/changed-by" in annotations and forged.returncode != 0

    wait_until(stamped, timeout=60, what="the admission policies in force")


def test_who_is_recorded_for_two_users_and_a_cause_is_never_inherited(
    cluster: LiveCluster,
    operator: Any,
    admission: str,
    namespace: str,
    new_release: Callable[..., str],
) -> None:
    ci = as_service_account(cluster, namespace, "ci")
    oncall = as_service_account(cluster, namespace, "oncall")
    name = new_release(tag="v1")
    cluster.kubectl("label", "tar", name, f"{SCOPE_LABEL}={admission}")
    policies_in_force(cluster, name)
    wait_until(lambda: release(cluster, name).get("status", {}).get("phase") == "Ready")

    ci.ok("deploy", name, "--tag", "v2", "--cause", "commit 1a2b")
    oncall.ok("rollback", name)
    # A hand edit by a third user, with no cause of its own.
    cluster.kubectl(
        "patch",
        "tar",
        name,
        "--type=merge",
        "-p",
        '{"spec":{"tag":"v3"}}',
        "--as=carol",
        "--as-group=system:masters",
    )
    oncall.ok("unpin", name)

    log = log_of(Plugin(cluster.kubeconfig), name)
    rows = [(e["action"], e["revision"], e.get("by"), e.get("cause")) for e in log]
    assert rows[:3] == [
        ("Unpin", 3, f"system:serviceaccount:{namespace}:oncall", None),
        ("Rollback", 1, f"system:serviceaccount:{namespace}:oncall", None),
        ("Deploy", 2, f"system:serviceaccount:{namespace}:ci", "commit 1a2b"),
    ]
    assert log[0]["client"] == "kubectl-testapp"
    revisions = {r["revision"]: r for r in deployed_history(Plugin(cluster.kubeconfig), name)}
    assert revisions[3]["changeCause"] == ""  # carol's edit did not inherit "commit 1a2b"
    annotations = release(cluster, name)["metadata"]["annotations"]
    assert annotations["testapp.dev/changed-by"] == f"system:serviceaccount:{namespace}:oncall"


def test_the_stamps_cannot_be_written_by_hand(
    cluster: LiveCluster, admission: str, new_release: Callable[..., str]
) -> None:
    name = new_release(tag="v1")
    cluster.kubectl("label", "tar", name, f"{SCOPE_LABEL}={admission}")
    policies_in_force(cluster, name)

    forged = cluster.kubectl(
        "annotate", "tar", name, "testapp.dev/changed-by=somebody-else", "--overwrite", check=False
    )

    assert forged.returncode != 0
    assert "stamped by the API server" in forged.stderr


def test_the_deployment_log_survives_an_operator_restart(
    cluster: LiveCluster, operator: Any, testapp: Plugin, deployed: Callable[..., str]
) -> None:
    name = deployed("v1", "v2")
    before = log_of(testapp, name)

    operator.restart()
    testapp.ok("deploy", name, "--tag", "v3")

    after = log_of(testapp, name)
    assert after[1:] == before
    assert (after[0]["action"], after[0]["revision"]) == ("Deploy", 3)


# --- the plugin through kubectl (no control plane needed) ---------------------------------------


def plugin_path() -> dict[str, str]:
    return {**os.environ, "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ['PATH']}"}


def test_kubectl_completes_the_plugin_through_kubectl_complete_testapp() -> None:
    result = subprocess.run(
        ["kubectl", "__complete", "testapp", "re"],
        capture_output=True,
        text=True,
        env=plugin_path(),
        timeout=30,
    )
    assert result.stdout.splitlines() == ["retry", "resume", "restart", ":4"], result.stderr


def test_kubectl_runs_the_plugin() -> None:
    result = subprocess.run(
        ["kubectl", "testapp", "--version"],
        capture_output=True,
        text=True,
        env=plugin_path(),
        timeout=30,
    )
    assert result.stdout.startswith("kubectl-testapp "), result.stderr
