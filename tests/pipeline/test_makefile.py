"""The Makefile's face: `make help`, the input guards (the same patterns as the CRD and
release.py), and a dry run of `make deploy` that changes nothing."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from testapp_operator import release

from tests.pipeline.gitlab import REPO
from tests.pipeline.make import make

CRD = yaml.safe_load((REPO / "crds" / "testapp.dev_testappreleases.yaml").read_text())
SPEC = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
VARIABLES = ("ENV", "TAG", "IMAGE", "REGISTRY", "REVISION", "TIMEOUT", "CAUSE", "OUT")


def make_variable(name: str) -> str:
    """A variable's value as the Makefile defines it."""
    result = make("--eval", "print-%: ; @printf '%s\\n' '$($*)'", f"print-{name}")
    assert result.returncode == 0, result.stderr
    return result.stdout.rstrip("\n")


def test_the_makefile_checks_inputs_with_the_crds_and_release_pys_patterns() -> None:
    assert make_variable("TAG_PATTERN") == SPEC["tag"]["pattern"] == release.TAG_RE.pattern
    assert make_variable("IMAGE_PATTERN") == SPEC["image"]["pattern"]
    assert make_variable("IMAGE_TAG_PATTERN") == release.IMAGE_TAG_RE.pattern
    assert f"matches('{release.IMAGE_TAG_RE.pattern}')" in str(SPEC["image"])
    assert int(make_variable("IMAGE_MAX_LENGTH")) == SPEC["image"]["maxLength"]
    assert make_variable("DIGEST_PATTERN") == SPEC["digest"]["pattern"] == release.DIGEST_RE.pattern
    assert tuple(make_variable("ENVS").split()) == release.ENVS == tuple(SPEC["env"]["enum"])


def test_recipes_get_the_variables_people_set_and_no_empty_ones() -> None:
    """`make bench-app` runs gunicorn, whose config reads TIMEOUT: an empty one broke it."""
    probe = ("--eval", "probe-env: ; @env")
    unset = make(*probe, "probe-env")
    assert unset.returncode == 0, unset.stderr
    names = {line.split("=", 1)[0] for line in unset.stdout.splitlines()}
    assert not names & {*VARIABLES, "DIGEST", "OPERATOR_DIGEST"}, names
    given = make(*probe, "probe-env", "TIMEOUT=60", ENV="dev")
    assert {"TIMEOUT=60", "ENV=dev"} <= set(given.stdout.splitlines())


def test_help_lists_every_target_and_the_variables_without_colour_off_a_terminal() -> None:
    result = make("help")
    assert result.returncode == 0, result.stderr
    assert "\033[" not in result.stdout
    targets = re.findall(r"^([a-zA-Z_-]+):.*## ", (REPO / "Makefile").read_text(), re.M)
    listed = result.stdout.split("Variables")
    for target in targets:
        assert re.search(rf"^  {target} ", listed[0], re.M), target
    for variable in VARIABLES:
        assert re.search(rf"^  {variable} +\S", listed[1], re.M), variable


def test_help_is_coloured_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "MAKEFLAGS")}
    with subprocess.Popen(
        ["make", "-s", "help"], cwd=REPO, stdout=terminal, stderr=terminal, env=env
    ) as process:
        os.close(terminal)
        output = b""
        while chunk := _read(controller):
            output += chunk
        assert process.wait(timeout=30) == 0
    os.close(controller)
    assert b"\033[36mdeploy" in output


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the terminal closed: the child is done
        return b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["manifests", "TAG=abc"], "ENV must be the environment, one of dev stg ppd prd (got '')"),
        (["manifests", "ENV=qa", "TAG=abc"], "ENV must be the environment, one of dev stg ppd prd"),
        (["deploy", "ENV=dev stg", "TAG=abc"], "ENV must be the environment, one of dev stg ppd"),
        (["manifests", "ENV=dev", "IMAGE=x/app"], "TAG is required: the image tag to deploy"),
        (["deploy", "ENV=dev"], "TAG is required: the image tag to deploy"),
        (["deploy", "TAG=abc"], "ENV must be the environment"),
        (["deploy", "ENV=dev", "TAG=has space"], "TAG 'has space' is not a valid tag"),
        (["deploy", "ENV=dev", "TAG=.hidden"], "TAG '.hidden' is not a valid tag"),
        (["deploy", "ENV=dev", "TAG=" + "x" * 129], "is not a valid tag"),
        (["deploy", "ENV=dev", "TAG=abc", "IMAGE=app@sha256:0"], "is not an image repository"),
        (["deploy", "ENV=dev", "TAG=abc", "IMAGE=repo/app:v1"], "IMAGE 'repo/app:v1' is not an"),
        (["deploy", "ENV=dev", "TAG=abc", "IMAGE=Repo/App"], "is not an image repository"),
        (["manifests", "ENV=dev", "TAG=abc"], "IMAGE is required: the app image repository"),
        (["deploy", "ENV=dev", "TAG=abc", "DIGEST=sha256:ABC"], "DIGEST 'sha256:ABC' is not a"),
        (["install-operator", "OPERATOR_DIGEST=x"], "OPERATOR_DIGEST 'x' is not a digest"),
        (["rollback"], "ENV must be the environment"),
        (["history", "ENV=production"], "ENV must be the environment"),
        (["push"], "REGISTRY is required: where images go"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_a_target_stops_with_a_clear_message_naming_the_variable(
    args: list[str], message: str
) -> None:
    result = make(*args)
    assert result.returncode != 0
    assert f"make {args[0]}: " in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize(
    "image", ["127.0.0.1:5000/test-app", "europe-west1-docker.pkg.dev/p/test-app/test-app", "app"]
)
def test_an_image_repository_with_a_registry_port_is_accepted(image: str) -> None:
    result = make("manifests", "ENV=dev", "TAG=abc", f"IMAGE={image}")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["spec"]["image"] == image


def test_a_dry_run_of_deploy_changes_nothing_and_contacts_no_cluster(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("kubectl", "kubectl-testapp"):
        (fake_bin / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (fake_bin / tool).chmod(0o755)

    result = make(
        "-n",
        "deploy",
        "ENV=dev",
        "TAG=x",
        f"BIN={fake_bin}",
        f"KUBECTL={fake_bin / 'kubectl'}",
        PATH=f"{fake_bin}:{os.environ['PATH']}",
    )

    assert result.returncode == 0, result.stderr
    assert not calls.exists(), calls.read_text()
    assert "kubectl-testapp deploy" in result.stdout  # printed, not run


def test_make_push_with_docker_is_what_the_ci_build_jobs_run() -> None:
    """CI's build-app/build-operator run hack/ci/build.sh; so does `make push` with Docker, with
    the BuildKit .gitlab-ci.yml pins and the cache beside REGISTRY."""
    registry = "region-docker.pkg.dev/project/test-app"
    result = make("-n", "push", "DOCKER=docker", f"REGISTRY={registry}", "GIT_SHA=0123abcd")
    assert result.returncode == 0, result.stderr
    ci_variables = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())["variables"]
    assert "PUSH=true" in result.stdout
    assert f'REGISTRY="{registry}" CACHE_REGISTRY="{registry}-cache"' in result.stdout
    assert f'BUILDKIT_IMAGE="{ci_variables["BUILDKIT_IMAGE"]}"' in result.stdout
    assert 'CI_COMMIT_SHA="0123abcd"' in result.stdout
    assert 'if [ "docker" = docker ]; then \\\n  for kind in app operator; do' in result.stdout
    assert 'hack/ci/build.sh "$kind"' in result.stdout
