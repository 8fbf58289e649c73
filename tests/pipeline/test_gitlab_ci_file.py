"""The shape of .gitlab-ci.yml: valid for GitLab, and each job the way the delivery spec says."""

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


@pytest.fixture(scope="module")
def jobs() -> dict[str, Any]:
    """Every job with `extends` and `!reference` resolved (gitlab-ci-local --preview)."""
    preview = yaml.safe_load(run("--preview", "--no-json-schema-validation").stdout)
    reserved = {"stages", "workflow", "variables", "default", "include"}
    return {name: job for name, job in preview.items() if name not in reserved}


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


def test_stages_run_lint_and_test_then_build_then_deploy_then_rollback() -> None:
    assert load_ci_file()["stages"] == ["lint", "test", "build", "deploy", "rollback"]


def test_every_job_runs_a_makefile_target(jobs: dict[str, Any]) -> None:
    for name, job in jobs.items():
        assert any(line.startswith("make ") for line in job["script"]), name


@pytest.mark.parametrize(("env", "tier"), ENVS.items())
def test_deploy_and_rollback_jobs_are_environments_that_never_overlap(
    jobs: dict[str, Any], env: str, tier: str
) -> None:
    for name in (f"deploy-{env}", f"rollback-{env}"):
        job = jobs[name]
        assert job["environment"]["name"] == env, name
        assert job["environment"]["deployment_tier"] == tier, name
        assert job["environment"]["url"].startswith("https://"), name
        assert job["resource_group"] == env, name
        assert job["interruptible"] is False, name
    assert 'make deploy ENV="$DEPLOY_ENV" TAG="$DEPLOY_TAG"' in jobs[f"deploy-{env}"]["script"]
    assert jobs[f"deploy-{env}"]["variables"]["DEPLOY_ENV"] == env


@pytest.mark.parametrize("env", ENVS)
def test_rollback_is_manual_and_can_take_a_revision(jobs: dict[str, Any], env: str) -> None:
    job = jobs[f"rollback-{env}"]
    assert job["when"] == "manual"
    assert job["needs"] == []  # available even when the deploy failed
    assert 'make rollback ENV="$DEPLOY_ENV" REVISION="${REVISION:-}"' in job["script"]


def test_production_deploys_the_release_tag_and_the_others_the_commit(jobs: dict[str, Any]) -> None:
    assert jobs["deploy-prd"]["variables"]["DEPLOY_TAG"] == "$CI_COMMIT_TAG"
    for env in ("dev", "stg", "ppd"):
        assert jobs[f"deploy-{env}"]["variables"]["DEPLOY_TAG"] == "$CI_COMMIT_SHA"


def test_images_are_built_in_pinned_docker_in_docker_with_tls(jobs: dict[str, Any]) -> None:
    job = jobs["build-images"]
    version = re.fullmatch(r"docker:(\d+\.\d+\.\d+)-cli", job["image"]["name"])
    assert version, job["image"]
    assert [service["name"] for service in job["services"]] == [f"docker:{version[1]}-dind"]
    assert job["variables"]["DOCKER_TLS_CERTDIR"] == "/certs"
    assert job["variables"]["DOCKER_HOST"] == "tcp://docker:2376"
    assert 'make push GIT_SHA="$CI_COMMIT_SHA" EXTRA_TAGS="${CI_COMMIT_TAG:-}"' in job["script"]


def test_google_cloud_is_reached_with_gitlab_oidc_tokens_not_keys(jobs: dict[str, Any]) -> None:
    for name in [
        "build-images",
        *(f"{kind}-{env}" for kind in ("deploy", "rollback") for env in ENVS),
    ]:
        token = jobs[name]["id_tokens"]["GITLAB_OIDC_TOKEN"]
        assert token["aud"] == "https://iam.googleapis.com/$GCP_WIF_PROVIDER", name
    text = CI_FILE.read_text()
    for key_material in ("GOOGLE_APPLICATION_CREDENTIALS", "private_key", "_KEY_JSON", "base64 -d"):
        assert key_material not in text


def test_the_registry_host_is_always_composed_from_the_region_variable() -> None:
    for path, pattern in [
        (CI_FILE, r"\$\{?GCP_REGION\}?-docker\.pkg\.dev"),
        (REPO / "Makefile", r"(\$\(GCP_REGION\)|<region>)-docker\.pkg\.dev"),
    ]:
        text = path.read_text()
        assert len(re.findall(pattern, text)) == text.count("docker.pkg.dev") > 0, path
