"""The pipeline's guards, run in the images of the jobs that hold them (podman; images built here,
never pulled; tests/pipeline/in_images.py says which are stand-ins), with no cluster:

- a build with PUSH=false logs in nowhere and reads no registry cache; one with PUSH=true logs
  in first, and a refused login fails it;
- each step of the builder's login fails the job with one line when Google refuses;
- a deploy job whose kubeconfig cannot be had fails before kubectl-testapp runs;
- promote refuses a commit that is not on master, or that ppd never ran, or whose ppd
  deployments it cannot read.

Google's and GitLab's endpoints are a loopback stand-in (`FakeApi`) that answers as they would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from testapp_dev.podman import toolchain_podman

from tests.pipeline.gitlab import REPO, JobRun, Trigger
from tests.pipeline.in_images import (
    FakeApi,
    Pipeline,
    Standins,
    build_standins,
    fake_api,
    podman_env,
    podman_service,
)

pytestmark = pytest.mark.images

NOWHERE = "127.0.0.1:9"  # discard port: nothing listens, every connection is refused
GUARD_REGISTRY = "localhost/testapp-guard"
SHA = "a" * 40


@pytest.fixture(scope="module")
def api() -> Iterator[FakeApi]:
    with fake_api() as fake:
        yield fake


@pytest.fixture(autouse=True)
def fresh_api(api: FakeApi) -> None:
    api.answers.clear()
    api.requests.clear()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Standins]]:
    state = tmp_path_factory.mktemp("guards")
    env = podman_env(NOWHERE, state)
    standins = build_standins(env)
    # The deploy jobs' image: the operator image, built here from this tree (podman's cache).
    podman = toolchain_podman()
    podman.build(REPO, "Dockerfile.operator", f"{GUARD_REGISTRY}/testapp-operator:{SHA}")
    kubeconfigs = tmp_path_factory.mktemp("kubeconfigs")
    with podman_service(env, state) as socket:
        yield Pipeline(env, standins, NOWHERE, socket, kubeconfigs), standins


def in_docker_cli_image(
    standins: Standins, env: dict[str, str], script: str, workdir: Path, **variables: str
) -> subprocess.CompletedProcess[str]:
    """`script` (a hack/ci script) in the docker:cli stand-in, on the host's network (the fake
    API listens on loopback), with this checkout's hack/ci at /ci and `workdir` as the job's."""
    return subprocess.run(
        [
            "podman", "run", "--rm", "--pull=never", "--network=host",
            f"--volume={REPO / 'hack/ci'}:/ci:ro", f"--volume={workdir}:/job", "--workdir=/job",
            *(f"--env={name}={value}" for name, value in variables.items()),
            standins.docker_cli, "sh", f"/ci/{script}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# --- builds: credentials only to push ----------------------------------------------------------


def fork_mr() -> Trigger:
    return Trigger.merge_request("feature/x", "development").with_variables(
        CI_MERGE_REQUEST_SOURCE_PROJECT_ID="99", CI_MERGE_REQUEST_PROJECT_ID="7", PUSH="false"
    )


def unreachable_google(**variables: str) -> dict[str, str]:
    """Google refuses every connection; REGISTRY_LOGIN unset, so a login would be attempted."""
    return {
        "REGISTRY_LOGIN": "",
        "GITLAB_OIDC_TOKEN": "id-token",
        "GCP_WIF_PROVIDER": "projects/1/locations/global/workloadIdentityPools/b/providers/g",
        "GCP_STS_URL": f"http://{NOWHERE}/v1/token",
        "GCP_REGION": "region",
        "BUILDER_SERVICE_ACCOUNT": "builder@project.iam.gserviceaccount.com",
        "REGISTRY": f"{NOWHERE}/test-app",
        "CACHE_REGISTRY": f"{NOWHERE}/test-app-cache",
        **variables,
    }


def test_a_build_that_does_not_push_logs_in_nowhere_and_reads_no_registry_cache(
    images: tuple[Pipeline, Standins],
) -> None:
    pipeline, _ = images
    run = pipeline.run_jobs(fork_mr().with_variables(**unreachable_google()), "build-app")

    assert run.passed("build-app"), run.output
    assert "PUSH=false: build and test only, no registry login, no registry cache" in run.output
    assert "STEP" in run.output  # it built (the tests are a stage of the build)
    assert "ignoring --cache-from" not in run.output


def test_a_build_that_pushes_logs_in_first_and_a_refused_login_fails_it(
    images: tuple[Pipeline, Standins],
) -> None:
    pipeline, _ = images
    same_project = fork_mr().with_variables(
        CI_MERGE_REQUEST_SOURCE_PROJECT_ID="7", PUSH="true", **unreachable_google()
    )

    run = pipeline.run_jobs(same_project, "build-app")

    assert run.failed("build-app"), run.output
    assert "error: registry login: Google STS refused the id_token" in run.output
    assert "STEP" not in run.output  # nothing built after a failed login


# --- the builder's login: each refusal fails with one line --------------------------------------


@pytest.mark.parametrize(
    ("answers", "missing", "error"),
    [
        ({}, "GCP_WIF_PROVIDER", "GCP_WIF_PROVIDER is not set"),
        ({}, "GITLAB_OIDC_TOKEN", "GITLAB_OIDC_TOKEN is not set"),
        ({"/v1/token": (403, '{"error": "unauthorized_client"}')}, "", "Google STS refused"),
        ({"/v1/token": (200, '{"token_type": "Bearer"}')}, "", "answered without an access token"),
        (
            {"/v1/token": (200, '{"access_token": "federated"}'), "/iam": (403, "{}")},
            "",
            "IAM Credentials refused to impersonate builder@project.iam.gserviceaccount.com",
        ),
    ],
    ids=["no provider", "no id_token", "STS refuses", "STS gives no token", "IAM refuses"],
)
def test_every_step_of_the_registry_login_fails_the_job_with_one_line(
    images: tuple[Pipeline, Standins],
    api: FakeApi,
    tmp_path: Path,
    answers: dict[str, tuple[int, str]],
    missing: str,
    error: str,
) -> None:
    _, standins = images
    api.answers.update(answers)
    variables = {
        "GCP_WIF_PROVIDER": "projects/1/locations/global/workloadIdentityPools/b/providers/g",
        "GITLAB_OIDC_TOKEN": "id-token",
        "GCP_STS_URL": f"{api.url}/v1/token",
        "GCP_IAM_CREDENTIALS_URL": f"{api.url}/iam",
        "GCP_REGION": "region",
        "BUILDER_SERVICE_ACCOUNT": "builder@project.iam.gserviceaccount.com",
    }
    variables.pop(missing, None)

    result = in_docker_cli_image(
        standins, images[0].env, "registry-login.sh", tmp_path, **variables
    )

    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = error_lines(result)
    assert error in line


# --- deploy jobs: no kubeconfig, no deploy ------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({"KUBECONFIG": "/nonexistent/kubeconfig"}, "is not a non-empty file"),
        ({"KUBECONFIG": "/dev/null"}, "is not a non-empty file"),
        ({}, "error: GKE credentials: GITLAB_OIDC_TOKEN, GCP_WIF_PROVIDER"),
    ],
    ids=["missing file", "empty file", "no GKE settings"],
)
def test_a_deploy_job_without_credentials_fails_before_kubectl_testapp_runs(
    images: tuple[Pipeline, Standins], variables: dict[str, str], error: str
) -> None:
    pipeline, _ = images
    trigger = Trigger.push("development").with_variables(
        REGISTRY=GUARD_REGISTRY, CI_COMMIT_SHA=SHA, APP_DIGEST="sha256:" + "0" * 64, **variables
    )

    run: JobRun = pipeline.run_jobs(trigger, "deploy-dev", host_network=True)

    assert run.failed("deploy-dev"), run.output
    assert error in run.output
    assert "$ kubectl-testapp" not in run.output


# --- promote: on master, and ran in ppd -----------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A tag pipeline's clone: origin has master (two commits) and a side branch off it."""
    origin, job = tmp_path / "origin", tmp_path / "job"
    origin.mkdir()
    git("init", "--quiet", "--initial-branch=master", cwd=origin)
    commits = {}
    for name in ("first", "on-master"):
        git("commit", "--quiet", "--allow-empty", "-m", name, cwd=origin)
        commits[name] = git("rev-parse", "HEAD", cwd=origin)
    git("checkout", "--quiet", "-b", "side", "HEAD~1", cwd=origin)
    git("commit", "--quiet", "--allow-empty", "-m", "side", cwd=origin)
    commits["side"] = git("rev-parse", "HEAD", cwd=origin)
    git("checkout", "--quiet", "master", cwd=origin)
    # The job's clone fetched only the tag; origin is at the same path inside the job.
    git("clone", "--quiet", "--no-checkout", str(origin), str(job), cwd=tmp_path)
    git("update-ref", "-d", "refs/remotes/origin/master", cwd=job)
    git("remote", "set-url", "origin", "/origin", cwd=job)
    job.chmod(0o777)
    return job, commits


def promote(
    images: tuple[Pipeline, Standins], api: FakeApi, job: Path, sha: str
) -> subprocess.CompletedProcess[str]:
    _, standins = images
    env = dict(images[0].env)
    origin = job.parent / "origin"
    return subprocess.run(
        [
            "podman", "run", "--rm", "--pull=never", "--network=host",
            f"--volume={REPO / 'hack/ci'}:/ci:ro", f"--volume={job}:/job",
            f"--volume={origin}:/origin:ro", "--workdir=/job",
            "--env=GIT_CONFIG_COUNT=1", "--env=GIT_CONFIG_KEY_0=safe.directory",
            "--env=GIT_CONFIG_VALUE_0=*",
            *(
                f"--env={name}={value}"
                for name, value in {
                    "REGISTRY": f"{NOWHERE}/test-app",
                    "REGISTRY_LOGIN": "skip",
                    "CI_COMMIT_SHA": sha,
                    "CI_COMMIT_TAG": "v1.2.3",
                    "CI_API_V4_URL": f"{api.url}/api/v4",
                    "CI_PROJECT_ID": "7",
                    "CI_JOB_TOKEN": "job-token",
                }.items()
            ),
            standins.docker_cli, "sh", "/ci/promote.sh",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def ppd_deployments(*shas: str) -> tuple[int, str]:
    """GitLab's answer: ppd's successful deployments of these commits (compact JSON, as GitLab)."""
    body = [{"id": i, "sha": sha, "status": "success"} for i, sha in enumerate(shas)]
    return 200, json.dumps(body, separators=(",", ":"))


def ppd_deployments_of(*names: str) -> Callable[[dict[str, str]], tuple[int, str]]:
    """ppd_deployments of the checkout's commits of these names (known once it exists)."""
    return lambda commits: ppd_deployments(*(commits[name] for name in names))


DEPLOYMENTS = "/api/v4/projects/7/deployments?environment=ppd&status=success"


@pytest.mark.parametrize(
    ("commit", "ppd", "error"),
    [
        (
            "side",
            ppd_deployments_of("side"),
            "is not on master: tag a commit of master that ppd ran",
        ),
        ("on-master", ppd_deployments_of("first"), "was never deployed to ppd"),
        ("on-master", lambda _: (401, '{"message": "401"}'), "cannot read ppd's deployments"),
    ],
    ids=["not on master", "never in ppd", "deployments unreadable"],
)
def test_promote_refuses_with_one_line(
    images: tuple[Pipeline, Standins],
    api: FakeApi,
    checkout: tuple[Path, dict[str, str]],
    commit: str,
    ppd: Callable[[dict[str, str]], tuple[int, str]],
    error: str,
) -> None:
    job, commits = checkout
    api.answers[DEPLOYMENTS] = ppd(commits)

    result = promote(images, api, job, commits[commit])

    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = error_lines(result)
    assert line.startswith("error: promote v1.2.3: ")
    assert error in line


def test_promote_goes_on_to_the_registry_for_a_commit_of_master_that_ppd_ran(
    images: tuple[Pipeline, Standins], api: FakeApi, checkout: tuple[Path, dict[str, str]]
) -> None:
    job, commits = checkout
    api.answers[DEPLOYMENTS] = ppd_deployments(commits["first"], commits["on-master"])

    result = promote(images, api, job, commits["on-master"])

    ((path, headers),) = api.requests
    assert path.startswith(DEPLOYMENTS)
    assert headers["JOB-TOKEN"] == "job-token"
    assert f"commit {commits['on-master']} is on master and was deployed to ppd" in result.stdout
    # Nothing listens at this registry: the next guard, the images' existence, speaks.
    (line,) = error_lines(result)
    assert "does not exist" in line, result.stderr


# --- sign: nothing reaches prd unsigned -----------------------------------------------------------


@pytest.mark.parametrize(
    ("logged_in", "error"),
    [
        (False, "error: sign: no docker login to hand to cosign"),
        (True, "error: sign: SIGSTORE_ID_TOKEN is not set"),
    ],
    ids=["no registry login", "no id_token for Sigstore"],
)
def test_signing_without_credentials_fails_the_job_with_one_line(
    images: tuple[Pipeline, Standins], tmp_path: Path, logged_in: bool, error: str
) -> None:
    _, standins = images
    if logged_in:
        (tmp_path / "docker").mkdir()
        (tmp_path / "docker" / "config.json").write_text('{"auths": {}}')

    result = in_docker_cli_image(
        standins,
        images[0].env,
        "sign.sh",
        tmp_path,
        REGISTRY=f"{NOWHERE}/test-app",
        COSIGN_IMAGE="cosign@sha256:" + "0" * 64,
        APP_DIGEST="sha256:" + "1" * 64,
        OPERATOR_DIGEST="sha256:" + "2" * 64,
        DOCKER_CONFIG="/job/docker",
    )

    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = error_lines(result)
    assert line.startswith(error)
