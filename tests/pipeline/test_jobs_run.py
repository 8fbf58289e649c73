"""The deploy and rollback jobs run for real: gitlab-ci-local executes them in its shell executor
against the local control plane, with the operator running, exactly as a GitLab runner would run
their scripts (the GKE login is skipped because KUBECONFIG is given)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from testapp_dev import LiveCluster, wait_until

from tests.pipeline.gitlab import Trigger, run_job

pytestmark = pytest.mark.cluster

RELEASE = "test-app-dev"
CHANGE_CAUSE = "testapp.dev/change-cause"


def push_to_development(commit: str) -> Trigger:
    """A push of `commit` to branch development; the job deploys it as the image tag."""
    return Trigger.push("development").with_variables(
        CI_COMMIT_SHA=commit, CI_COMMIT_SHORT_SHA=commit[:8]
    )


def release(cluster: LiveCluster) -> dict[str, Any]:
    return cluster.get("testappreleases.testapp.dev", RELEASE)


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = body.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def ready_at(body: dict[str, Any], tag: str) -> bool:
    status = body.get("status", {})
    return (
        status.get("phase") == "Ready"
        and status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("image", "").endswith(f":{tag}")
    )


@pytest.fixture
def dev_running_a_first_commit(cluster: LiveCluster, operator: Any) -> Iterator[str]:
    """test-app-dev deployed by the pipeline and Ready at a first commit (created if missing)."""
    first = f"first-{uuid.uuid4().hex[:12]}"
    job = run_job("deploy-dev", push_to_development(first), cluster.kubeconfig)
    assert job.passed, job.output
    assert ready_at(release(cluster), first)
    yield first


def test_the_deploy_job_rolls_dev_forward_and_the_manual_rollback_job_pins_it_back(
    cluster: LiveCluster, dev_running_a_first_commit: str
) -> None:
    first = dev_running_a_first_commit
    first_revision = release(cluster)["status"]["revision"]
    second = f"second-{uuid.uuid4().hex[:12]}"

    deploy = run_job("deploy-dev", push_to_development(second), cluster.kubeconfig)

    assert deploy.passed, deploy.output
    deployed = release(cluster)
    assert deployed["spec"]["tag"] == second
    assert deployed["spec"].get("revision") is None
    assert ready_at(deployed, second)
    assert deployed["status"]["revision"] > first_revision
    cause = deployed["metadata"]["annotations"][CHANGE_CAUSE]
    assert second[:8] in cause
    assert "/pipelines/" in cause  # the pipeline URL

    rollback = run_job("rollback-dev", push_to_development(second), cluster.kubeconfig)

    assert rollback.passed, rollback.output
    rolled_back = release(cluster)
    assert rolled_back["spec"]["revision"] == first_revision
    assert rolled_back["status"]["revision"] == first_revision
    assert rolled_back["status"]["pinned"] is True
    assert ready_at(rolled_back, first)


def test_a_deploy_job_whose_release_turns_degraded_fails_with_the_condition_message(
    cluster: LiveCluster, dev_running_a_first_commit: str
) -> None:
    # kwok never makes Pods of a "broken*" image tag Ready; 10 s is the shortest allowed deadline.
    deadline = release(cluster)["spec"]["progressDeadlineSeconds"]
    patch = {"spec": {"progressDeadlineSeconds": 10}}
    cluster.kubectl("patch", "tar", RELEASE, "--type=merge", "-p", json.dumps(patch))
    try:
        broken = f"broken-{uuid.uuid4().hex[:12]}"

        deploy = run_job("deploy-dev", push_to_development(broken), cluster.kubeconfig)

        assert not deploy.passed
        assert " FAIL  deploy-dev" in deploy.output
        degraded = wait_until(
            lambda: (
                condition(release(cluster), "Degraded").get("status") == "True"
                and condition(release(cluster), "Degraded")
            ),
            timeout=60,
            what="the Degraded condition",
        )
        assert degraded["message"] in deploy.output
    finally:
        patch = {"spec": {"progressDeadlineSeconds": deadline}}
        cluster.kubectl("patch", "tar", RELEASE, "--type=merge", "-p", json.dumps(patch))
