"""Which jobs each push, merge request and tag gets: gitlab-ci-local evaluates our rules."""

from __future__ import annotations

import pytest

from tests.pipeline.gitlab import Trigger, pipeline

CHECKS = {"lint": "on_success", "unit-tests": "on_success", "build-images": "on_success"}


def deploys_to(env: str) -> dict[str, str]:
    return {**CHECKS, f"deploy-{env}": "on_success", f"rollback-{env}": "manual"}


@pytest.mark.parametrize(
    ("trigger", "jobs"),
    [
        (Trigger.push("development"), deploys_to("dev")),
        (Trigger.merge_request("feature/login", "development"), deploys_to("dev")),
        (Trigger.push("staging"), deploys_to("stg")),
        (Trigger.merge_request("development", "staging"), deploys_to("stg")),
        (Trigger.push("master"), deploys_to("ppd")),
        (Trigger.tag("v1.2.3"), deploys_to("prd")),
        (Trigger.push("feature/login"), CHECKS),
        (Trigger.merge_request("feature/login", "master"), CHECKS),
        (Trigger.tag("v1.2.3", protected=False), CHECKS),
        (Trigger.tag("v1.2"), CHECKS),
        (Trigger.tag("release-2024"), CHECKS),
    ],
    ids=lambda value: value.name if isinstance(value, Trigger) else "",
)
def test_each_trigger_gets_exactly_its_jobs(trigger: Trigger, jobs: dict[str, str]) -> None:
    assert pipeline(trigger) == jobs


@pytest.mark.parametrize(
    "trigger",
    [
        Trigger.push("feature/login", open_merge_requests=True),
        Trigger.push("fix-typo", open_merge_requests=True),
    ],
    ids=lambda trigger: trigger.name,
)
def test_a_branch_with_an_open_merge_request_gets_only_the_merge_request_pipeline(
    trigger: Trigger,
) -> None:
    assert pipeline(trigger) is None


@pytest.mark.parametrize(
    ("branch", "env"), [("development", "dev"), ("staging", "stg"), ("master", "ppd")]
)
def test_a_deploy_branch_still_deploys_while_it_is_the_source_of_an_open_merge_request(
    branch: str, env: str
) -> None:
    assert pipeline(Trigger.push(branch, open_merge_requests=True)) == deploys_to(env)
