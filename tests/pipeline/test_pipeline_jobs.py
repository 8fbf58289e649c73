"""Every pipeline source, as gitlab-ci-local's rule evaluator decides it: which jobs GitLab creates
(and their `when`), and the PUSH and image repository every job of the pipeline sees
(workflow:rules through probe pipelines, see tests/pipeline/gitlab.py). docs/delivery.md has
this table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.pipeline.gitlab import REPO, STATE_DIR, Trigger, pipeline, pipeline_variables, run

BUILD = {"build-app": "on_success", "build-operator": "on_success", "pip-audit": "on_success"}
SAME_PROJECT = {"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "7", "CI_MERGE_REQUEST_PROJECT_ID": "7"}
FORK = {"CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "99", "CI_MERGE_REQUEST_PROJECT_ID": "7"}
RELEASE = "region-docker.pkg.dev/project/test-app"
BRANCHES = "region-docker.pkg.dev/project/test-app-branches"
PRD = {
    "promote-prd": "on_success",
    "sign-prd": "on_success",
    "deploy-prd": "on_success",
    "rollback-prd": "manual",
    "install-operator": "on_success",
}


def deploys_to(env: str) -> dict[str, str]:
    return {**BUILD, f"deploy-{env}": "on_success", f"rollback-{env}": "manual"}


def mr(source: str, target: str) -> Trigger:
    return Trigger.merge_request(source, target).with_variables(**SAME_PROJECT)


def fork_mr(source: str, target: str) -> Trigger:
    trigger = Trigger.merge_request(source, target).with_variables(**FORK)
    return Trigger(f"fork {trigger.name}", trigger.variables)


@dataclass(frozen=True)
class Scenario:
    trigger: Trigger
    jobs: dict[str, str] | None  # None: GitLab creates no pipeline
    push: str
    registry: str


SCENARIOS = [
    # push
    Scenario(Trigger.push("development"), deploys_to("dev"), "true", RELEASE),
    Scenario(Trigger.push("development", protected=False), deploys_to("dev"), "true", BRANCHES),
    Scenario(Trigger.push("development", True), deploys_to("dev"), "true", RELEASE),
    Scenario(Trigger.push("staging"), deploys_to("stg"), "true", RELEASE),
    Scenario(Trigger.push("master"), deploys_to("ppd"), "true", RELEASE),
    Scenario(Trigger.push("master", protected=False), BUILD, "true", BRANCHES),
    Scenario(Trigger.push("feature/login"), BUILD, "true", BRANCHES),
    Scenario(Trigger.push("feature/login", True), None, "", ""),
    # merge requests of this project: into development -> dev, into staging -> stg
    Scenario(mr("feature/login", "development"), deploys_to("dev"), "true", BRANCHES),
    Scenario(mr("feature/login", "staging"), deploys_to("stg"), "true", BRANCHES),
    Scenario(mr("development", "staging"), deploys_to("stg"), "true", BRANCHES),
    Scenario(mr("staging", "master"), BUILD, "true", BRANCHES),
    Scenario(mr("feature/login", "master"), BUILD, "true", BRANCHES),
    # merge requests from a fork: build and test, no credentials
    Scenario(fork_mr("feature/login", "development"), BUILD, "false", BRANCHES),
    Scenario(fork_mr("development", "staging"), BUILD, "false", BRANCHES),
    # schedules, API, web, trigger tokens, upstream pipelines: build and test, no credentials
    Scenario(Trigger.push("development").from_source("schedule"), BUILD, "false", BRANCHES),
    Scenario(Trigger.push("master").from_source("schedule"), BUILD, "false", BRANCHES),
    Scenario(Trigger.push("development").from_source("api"), BUILD, "false", BRANCHES),
    Scenario(Trigger.push("master").from_source("web"), BUILD, "false", BRANCHES),
    Scenario(Trigger.push("staging").from_source("trigger"), BUILD, "false", BRANCHES),
    Scenario(Trigger.push("feature/login").from_source("pipeline"), BUILD, "false", BRANCHES),
    # tags: only a protected vX.Y.Z pushed by a person reaches prd
    Scenario(Trigger.tag("v1.2.3"), PRD, "false", RELEASE),
    Scenario(Trigger.tag("v1.2.3", protected=False), {}, "false", BRANCHES),
    Scenario(Trigger.tag("v1.2.3").from_source("web"), {}, "false", RELEASE),
    Scenario(Trigger.tag("v1.2.3").from_source("api"), {}, "false", RELEASE),
    Scenario(Trigger.tag("v1.2"), BUILD, "false", RELEASE),
    Scenario(Trigger.tag("release-2024", protected=False), BUILD, "false", BRANCHES),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.trigger.name)
def test_each_pipeline_source_gets_exactly_its_jobs(scenario: Scenario) -> None:
    assert pipeline(scenario.trigger) == scenario.jobs


@pytest.mark.parametrize(
    "scenario",
    [scenario for scenario in SCENARIOS if scenario.jobs is not None],
    ids=lambda scenario: scenario.trigger.name,
)
def test_each_pipeline_source_pushes_only_where_it_may(scenario: Scenario) -> None:
    variables = pipeline_variables(scenario.trigger)

    assert variables["PUSH"] == scenario.push
    assert variables["REGISTRY"] == scenario.registry
    assert variables["CACHE_REGISTRY"] == f"{scenario.registry}-cache"
    release = scenario.registry == RELEASE
    assert variables["BUILDER_SERVICE_ACCOUNT"] == (
        "release-builder" if release else "branch-builder"
    )


def test_only_protected_pushes_of_the_deploy_branches_build_into_the_release_repository() -> None:
    writers = [s.trigger.name for s in SCENARIOS if s.push == "true" and s.registry == RELEASE]
    assert writers == [
        "push to protected development",
        "push to protected development with an open MR",
        "push to protected staging",
        "push to protected master",
    ]


def test_nothing_reaches_prd_or_ppd_but_a_protected_tag_and_the_protected_master() -> None:
    for scenario in SCENARIOS:
        jobs = scenario.jobs or {}
        if "deploy-prd" in jobs or "install-operator" in jobs:
            assert scenario.trigger.name == "protected tag v1.2.3"
        if "deploy-ppd" in jobs:
            assert scenario.trigger.name == "push to protected master"


@pytest.mark.parametrize("deploy_passes", [True, False], ids=["deploy passes", "deploy fails"])
def test_a_rollback_clicked_at_once_runs_only_after_its_pipelines_deploy(
    tmp_path: Path, deploy_passes: bool
) -> None:
    """The file's own rules, stages and needs for deploy-dev and rollback-dev, run by
    gitlab-ci-local's DAG with stand-in scripts: the rollback, wanted from the start (`--manual`),
    waits for the deploy (so the deploy cannot undo it), and is not run after a failed one."""
    order = tmp_path / "order"
    preview = yaml.safe_load(run("--preview", "--no-json-schema-validation").stdout)
    stand_in = {
        "build-app": "true",
        "build-operator": "true",
        "deploy-dev": f"sleep 2; echo deploy >> {order}; {'true' if deploy_passes else 'false'}",
        "rollback-dev": f"echo rollback >> {order}",
    }
    kept = ("stage", "needs", "rules")
    jobs = {
        name: {**{k: v for k, v in preview[name].items() if k in kept}, "script": [script]}
        for name, script in stand_in.items()
    }
    probe = STATE_DIR / "probe" / "rollback-order.gitlab-ci.yml"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(yaml.safe_dump({"stages": preview["stages"], **jobs}))

    run(
        f"--file={probe.relative_to(REPO)}",
        "--force-shell-executor",
        "--no-json-schema-validation",
        "--manual=rollback-dev",
        *Trigger.push("development").args(),
        check=False,
    )

    assert order.read_text().split() == (["deploy", "rollback"] if deploy_passes else ["deploy"])
