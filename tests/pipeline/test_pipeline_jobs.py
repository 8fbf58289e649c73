"""Which jobs each push, merge request, tag, schedule and fork gets: gitlab-ci-local evaluates
our rules (workflow:rules through a probe pipeline, see tests/pipeline/gitlab.py)."""

from __future__ import annotations

import pytest

from tests.pipeline.gitlab import Trigger, pipeline

BUILD = {"build-app": "on_success", "build-operator": "on_success", "pip-audit": "on_success"}
SAME_PROJECT = {"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "7", "CI_MERGE_REQUEST_PROJECT_ID": "7"}
FORK = {"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "99", "CI_MERGE_REQUEST_PROJECT_ID": "7"}


def deploys_to(env: str) -> dict[str, str]:
    return {**BUILD, f"deploy-{env}": "on_success", f"rollback-{env}": "manual"}


def mr(source: str, target: str) -> Trigger:
    return Trigger.merge_request(source, target).with_variables(**SAME_PROJECT)


def fork_mr(source: str, target: str) -> Trigger:
    trigger = Trigger.merge_request(source, target).with_variables(**FORK)
    return Trigger(f"fork {trigger.name}", trigger.variables)


def from_source(source: str, trigger: Trigger) -> Trigger:
    return Trigger(f"{source}: {trigger.name}", {**trigger.variables, "CI_PIPELINE_SOURCE": source})


@pytest.mark.parametrize(
    ("trigger", "jobs"),
    [
        (Trigger.push("development"), deploys_to("dev")),
        (mr("feature/login", "development"), deploys_to("dev")),
        (Trigger.push("staging"), deploys_to("stg")),
        (mr("feature/login", "staging"), deploys_to("stg")),
        (Trigger.push("master"), {**deploys_to("ppd"), "install-operator": "manual"}),
        (
            Trigger.tag("v1.2.3"),
            {
                "promote-prd": "on_success",
                "deploy-prd": "on_success",
                "rollback-prd": "manual",
                "install-operator": "on_success",
            },
        ),
        (Trigger.push("feature/login"), BUILD),
        (mr("feature/login", "master"), BUILD),
        (Trigger.tag("v1.2.3", protected=False), {}),
        (Trigger.tag("v1.2"), BUILD),
        (Trigger.tag("release-2024"), BUILD),
    ],
    ids=lambda value: value.name if isinstance(value, Trigger) else "",
)
def test_each_trigger_gets_exactly_its_jobs(trigger: Trigger, jobs: dict[str, str]) -> None:
    assert pipeline(trigger) == jobs


@pytest.mark.parametrize(
    "trigger",
    [
        *(from_source(s, Trigger.push("development")) for s in ("schedule", "api", "trigger")),
        from_source("schedule", Trigger.push("master")),
        from_source("pipeline", Trigger.tag("v1.2.3")),
        fork_mr("feature/login", "development"),
        fork_mr("development", "staging"),
    ],
    ids=lambda trigger: trigger.name,
)
def test_schedules_api_triggers_and_forks_build_but_never_deploy(trigger: Trigger) -> None:
    jobs = pipeline(trigger) or {}
    assert not [job for job in jobs if job.startswith(("deploy-", "rollback-", "promote-"))]
    assert "install-operator" not in jobs


@pytest.mark.parametrize(
    "trigger",
    [
        Trigger.push("feature/login", open_merge_requests=True),
        Trigger.push("fix-typo", open_merge_requests=True),
        mr("development", "staging"),
        mr("staging", "master"),
    ],
    ids=lambda trigger: trigger.name,
)
def test_one_commit_gets_one_pipeline_never_a_branch_and_a_merge_request_pipeline(
    trigger: Trigger,
) -> None:
    assert pipeline(trigger) is None


@pytest.mark.parametrize(
    ("branch", "env"), [("development", "dev"), ("staging", "stg"), ("master", "ppd")]
)
def test_a_deploy_branch_still_deploys_while_it_is_the_source_of_an_open_merge_request(
    branch: str, env: str
) -> None:
    jobs = pipeline(Trigger.push(branch, open_merge_requests=True))
    assert jobs is not None
    assert jobs[f"deploy-{env}"] == "on_success"
