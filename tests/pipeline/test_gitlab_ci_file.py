"""The shape of .gitlab-ci.yml: valid for GitLab, and each job the way docs/delivery.md says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.pipeline.gitlab import CI_FILE, REPO, load_ci_file, run

ENVS = {"dev": "development", "stg": "testing", "ppd": "staging", "prd": "production"}
OPERATOR_IMAGE = "$REGISTRY/testapp-operator:$CI_COMMIT_SHA"
PINNED = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")
# Commands that would install something at run time.
INSTALLERS = re.compile(r"\b(pip3? install|apt-get|apk add|npm|make|curl)\b")


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    """Every job with `extends` and `!reference` resolved (gitlab-ci-local --preview)."""
    preview = yaml.safe_load(run("--preview", "--no-json-schema-validation").stdout)
    reserved = {"stages", "workflow", "variables", "default", "include"}
    return {
        name: job
        for name, job in preview.items()
        if name not in reserved and not name.startswith(".")
    }


def script(job: dict[str, Any]) -> list[str]:
    return [*job.get("before_script", []), *job["script"]]


def test_it_validates_against_gitlabs_own_ci_schema() -> None:
    check = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [
            check,
            *("--builtin-schema", "vendor.gitlab-ci", "--data-transform", "gitlab-ci"),
            *("--regex-variant", "nonunicode", CI_FILE),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_stages_build_then_promote_then_deploy_then_rollback() -> None:
    assert load_ci_file()["stages"] == ["build", "promote", "deploy", "rollback", "operator"]


def test_every_image_is_pinned_by_digest_or_is_the_operator_image_this_commit_built(
    jobs: dict[str, Any],
) -> None:
    variables = load_ci_file()["variables"]
    for name, job in jobs.items():
        images = [job["image"]["name"], *(s["name"] for s in job.get("services", []))]
        for image in images:
            image = variables.get(image.removeprefix("$"), image)
            assert image == OPERATOR_IMAGE or PINNED.match(image), (name, image)


def test_the_graph_builds_both_images_in_parallel_and_deploys_what_they_built(
    jobs: dict[str, Any],
) -> None:
    def needs(name: str) -> set[str]:
        return {need["job"] for need in jobs[name].get("needs", [])}

    assert needs("build-app") == needs("build-operator") == needs("pip-audit") == set()
    for env in ("dev", "stg", "ppd"):
        assert needs(f"deploy-{env}") == {"build-app", "build-operator"}
    # A release tag builds nothing, and prd runs nothing unsigned.
    assert needs("promote-prd") == set()
    assert needs("sign-prd") == {"promote-prd"}
    assert needs("deploy-prd") == {"promote-prd", "sign-prd"}
    assert needs("install-operator") == {"promote-prd", "sign-prd"}  # released like prd
    for env in ENVS:
        assert needs(f"rollback-{env}") == {f"deploy-{env}"}


def test_every_pinned_image_the_pipeline_names_carries_a_digest() -> None:
    variables = load_ci_file()["variables"]
    images = {name: value for name, value in variables.items() if name.endswith("_IMAGE")}
    assert set(images) >= {"BUILDKIT_IMAGE", "COSIGN_IMAGE", "DIND_IMAGE", "DOCKER_CLI_IMAGE"}
    for name, image in images.items():
        assert re.search(r":v?\d+(\.\d+)*(-[\w.-]+)?@sha256:[0-9a-f]{64}$", image), name
    for dockerfile in ("Dockerfile.app", "Dockerfile.operator"):
        syntax = (REPO / dockerfile).read_text().splitlines()[0]
        assert re.fullmatch(r"# syntax=docker/dockerfile:[\d.]+@sha256:[0-9a-f]{64}", syntax)


def test_buildx_runs_the_pinned_buildkit() -> None:
    """(That a build with PUSH=false logs in nowhere: tests/pipeline/test_guards_in_images.py.)"""
    build = (REPO / "hack/ci/build.sh").read_text()
    assert '--driver docker-container --driver-opt "image=$BUILDKIT_IMAGE"' in build


def test_no_job_decides_push_or_the_repository_itself(jobs: dict[str, Any]) -> None:
    """The workflow rules decide them once per pipeline (tests/pipeline/test_pipeline_jobs.py)."""
    decided = {"PUSH", "REGISTRY", "CACHE_REGISTRY", "BUILDER_SERVICE_ACCOUNT"}
    for name, job in jobs.items():
        assert not decided & set(job.get("variables", {})), name
        for rule in job.get("rules", []):
            assert not decided & set(rule.get("variables", {})), name


def test_pip_audit_is_advisory_and_no_deploy_waits_for_it(jobs: dict[str, Any]) -> None:
    assert jobs["pip-audit"]["allow_failure"] is True
    for name, job in jobs.items():
        assert "pip-audit" not in {need["job"] for need in job.get("needs", [])}, name


def test_images_are_built_in_pinned_docker_in_docker_on_the_privileged_runners(
    jobs: dict[str, Any],
) -> None:
    for name in ("build-app", "build-operator"):
        job = jobs[name]
        variables = load_ci_file()["variables"]
        assert job["image"]["name"] == "$DOCKER_CLI_IMAGE"
        version = re.match(r"docker:(\d+\.\d+\.\d+)-cli@", variables["DOCKER_CLI_IMAGE"])
        assert version, variables["DOCKER_CLI_IMAGE"]
        (service,) = job["services"]
        assert service["name"] == "$DIND_IMAGE"
        assert variables["DIND_IMAGE"].startswith(f"docker:{version[1]}-dind@sha256:")
        assert job["tags"] == ["$DIND_RUNNER_TAG"]
        assert job["variables"]["DOCKER_TLS_CERTDIR"] == "/certs"
        assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
        assert script(job)[-1] == f"hack/ci/build.sh {name.removeprefix('build-')}"
        assert job["artifacts"]["reports"]["dotenv"] == "build.env"


@pytest.mark.parametrize(("env", "tier"), ENVS.items())
def test_deploy_and_rollback_run_in_the_operator_image_and_never_overlap(
    jobs: dict[str, Any], env: str, tier: str
) -> None:
    for name in (f"deploy-{env}", f"rollback-{env}"):
        job = jobs[name]
        assert job["image"]["name"] == OPERATOR_IMAGE, name
        assert job["environment"]["name"] == env, name
        assert job["environment"]["deployment_tier"] == tier, name
        assert job["environment"]["url"].startswith("https://"), name
        assert job["resource_group"] == env, name
        assert job["interruptible"] is False, name
        assert job["variables"]["DEPLOY_ENV"] == env, name
        assert not [line for line in script(job) if INSTALLERS.search(line)], name
    assert jobs[f"deploy-{env}"]["script"][0].startswith('kubectl-testapp deploy "$DEPLOY_ENV"')


@pytest.mark.parametrize("env", ENVS)
def test_rollback_is_manual_and_waits_for_its_deploy(jobs: dict[str, Any], env: str) -> None:
    job = jobs[f"rollback-{env}"]
    assert all(rule["when"] == "manual" for rule in job["rules"])
    # Never before its pipeline's deploy, so that deploy can never undo it (a resource group
    # does not order the jobs of one pipeline); optional, should a rule change drop the deploy.
    assert job["needs"] == [{"job": f"deploy-{env}", "optional": True, "artifacts": False}]
    # The same pipelines as the deploy: a rollback job never exists without its deploy.
    assert [rule["if"] for rule in job["rules"]] == [
        rule["if"] for rule in jobs[f"deploy-{env}"]["rules"]
    ]
    assert "allow_failure" not in job  # a failed rollback fails the pipeline
    assert job["script"][0].startswith('kubectl-testapp rollback "$DEPLOY_ENV"')


@pytest.mark.parametrize("env", ["dev", "stg", "ppd"])
def test_rollback_below_prd_records_no_deployment(jobs: dict[str, Any], env: str) -> None:
    assert jobs[f"rollback-{env}"]["environment"]["action"] == "access"


def test_rollback_prd_is_gated_like_a_prd_deployment(jobs: dict[str, Any]) -> None:
    """Approval rules of a protected environment gate deployment jobs only (action: start)."""
    rollback, deploy = jobs["rollback-prd"], jobs["deploy-prd"]
    assert rollback["environment"] == {**deploy["environment"], "action": "start"}
    assert rollback["resource_group"] == deploy["resource_group"] == "prd"


def test_production_deploys_the_release_tag_and_the_others_the_commit(jobs: dict[str, Any]) -> None:
    assert jobs["deploy-prd"]["variables"]["DEPLOY_TAG"] == "$CI_COMMIT_TAG"
    for env in ("dev", "stg", "ppd"):
        assert jobs[f"deploy-{env}"]["variables"]["DEPLOY_TAG"] == "$CI_COMMIT_SHA"


def test_google_cloud_is_reached_with_gitlab_oidc_tokens_not_keys(jobs: dict[str, Any]) -> None:
    for name in [
        "build-app",
        "build-operator",
        "promote-prd",
        "sign-prd",
        "install-operator",
        *(f"{kind}-{env}" for kind in ("deploy", "rollback") for env in ENVS),
    ]:
        token = jobs[name]["id_tokens"]["GITLAB_OIDC_TOKEN"]
        assert token["aud"] == "https://iam.googleapis.com/$GCP_WIF_PROVIDER", name
    assert jobs["sign-prd"]["id_tokens"]["SIGSTORE_ID_TOKEN"] == {"aud": "sigstore"}
    text = CI_FILE.read_text()
    for key_material in ("GOOGLE_APPLICATION_CREDENTIALS", "private_key", "_KEY_JSON", "base64 -d"):
        assert key_material not in text


def test_no_credential_step_can_fail_unnoticed(jobs: dict[str, Any]) -> None:
    """Under `bash -e`, `export X=$(cmd)` and `${X:-$(cmd)}` carry on when cmd fails."""
    masked = re.compile(r"export \w+=[^;]*\$\(|\$\{\w+:-\$\(")
    for name, job in jobs.items():
        assert not [line for line in script(job) if masked.search(line)], name
    for name in [n for n in jobs if n.startswith(("deploy-", "rollback-", "install-"))]:
        assert jobs[name]["before_script"] == [
            "KUBECONFIG=$(hack/ci/kubeconfig.sh)",
            "export KUBECONFIG",
        ], name


def test_the_registry_host_is_always_composed_from_the_region_variable() -> None:
    for path, pattern in [
        (CI_FILE, r"\$\{?GCP_REGION\}?-docker\.pkg\.dev"),
        (REPO / "Makefile", r"(\$\(GCP_REGION\)|<region>)-docker\.pkg\.dev"),
    ]:
        text = path.read_text()
        assert len(re.findall(pattern, text)) == text.count("docker.pkg.dev") > 0, path
