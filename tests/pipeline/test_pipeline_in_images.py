"""The pipeline, run in the images its jobs declare (podman), against the local control plane and
the loopback registry: a push to development builds both images once (tests inside), pushes them,
and deploy-dev — in the operator image it pushed — makes dev run the pushed digest; rollback-dev
pins the previous revision; a v1.2.3 tag promotes the digest ppd ran, without rebuilding (its
commit on master and among ppd's deployments: a loopback GitLab API and a local origin);
install-operator installs the pushed operator by digest; a fork's merge request pushes nothing.
A command missing from a job's image fails its job, and the test. Stand-ins for what cannot be
pulled here: tests/pipeline/in_images.py says which and why.

The deployers are ServiceAccounts with the RBAC docs/delivery.md gives each environment's
deployer: get and patch of their own release (resourceNames), nothing else.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testapp_dev import (
    LiveCluster,
    OperatorProcess,
    localcluster,
    service_account_kubeconfig,
    wait_until,
)

from tests.pipeline.gitlab import REPO, Trigger
from tests.pipeline.in_images import (
    FakeApi,
    Pipeline,
    build_standins,
    fake_api,
    podman_env,
    podman_service,
)
from tests.pipeline.make import make_against

pytestmark = pytest.mark.cluster

ENVS = ("dev", "ppd", "prd")
DEPLOYERS = "testapp-deployers"


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def git_head() -> str:
    return git("rev-parse", "HEAD")


@pytest.fixture(scope="module")
def gitlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeApi, Path]]:
    """What promote-prd asks GitLab: its API (ppd's deployments: HEAD and HEAD~1) and the
    repository, whose master is HEAD. The job's git directory is a clone of this one (GIT_DIR:
    a worktree's .git is a file that points outside the job), its origin that master."""
    state = tmp_path_factory.mktemp("gitlab")
    origin, clone = state / "origin.git", state / "job.git"
    git("init", "--quiet", "--bare", str(origin))
    git("push", "--quiet", str(origin), "HEAD:refs/heads/master")
    git("clone", "--quiet", "--bare", str(origin), str(clone))
    git("update-ref", "-d", "refs/heads/master", cwd=clone)  # a tag pipeline fetched the tag only
    git("config", "remote.origin.url", str(origin), cwd=clone)
    deployed = [
        {"sha": sha, "status": "success"} for sha in (git_head(), git("rev-parse", "HEAD~1"))
    ]
    with fake_api() as api:
        deployments = "/api/v4/projects/7/deployments?environment=ppd&status=success"
        api.answers[deployments] = (200, json.dumps(deployed, separators=(",", ":")))
        yield api, state


def release_tag(gitlab: tuple[FakeApi, Path], name: str) -> Trigger:
    api, state = gitlab
    return Trigger.tag(name).with_variables(
        CI_API_V4_URL=f"{api.url}/api/v4",
        CI_PROJECT_ID="7",
        CI_JOB_TOKEN="job-token",
        GIT_DIR=str(state / "job.git"),
    )


def deployer_kubeconfig(cluster: LiveCluster, env: str, directory: Path) -> Path:
    """The deployer of `env`: it may get and patch test-app-<env>, nothing else."""
    account, role = f"deployer-{env}", f"testapp-deploy-{env}"
    resource = ["--resource=testappreleases.testapp.dev", f"--resource-name=test-app-{env}"]
    binding = [f"--clusterrole={role}", f"--serviceaccount={DEPLOYERS}:{account}"]
    for args in (
        ["-n", DEPLOYERS, "create", "serviceaccount", account],
        ["create", "clusterrole", role, "--verb=get,watch,patch", *resource],
        ["create", "clusterrolebinding", role, *binding],
    ):
        cluster.kubectl(*args, check=False)  # already there from an earlier session: fine
    return Path(service_account_kubeconfig(cluster, DEPLOYERS, account, directory / env))


def installer_kubeconfig(cluster: LiveCluster, directory: Path) -> Path:
    """The operator's installer: CRDs and RBAC take cluster-admin (docs/delivery.md)."""
    binding = ["--clusterrole=cluster-admin", f"--serviceaccount={DEPLOYERS}:installer"]
    cluster.kubectl("-n", DEPLOYERS, "create", "serviceaccount", "installer", check=False)
    cluster.kubectl("create", "clusterrolebinding", "testapp-install", *binding, check=False)
    return Path(service_account_kubeconfig(cluster, DEPLOYERS, "installer", directory / "operator"))


@pytest.fixture(scope="module")
def pipeline(
    cluster: LiveCluster, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    registry = localcluster.registry_address(Path(cluster.state_dir))
    assert registry, "the local cluster has no loopback registry (make cluster-up starts one)"
    state = tmp_path_factory.mktemp("in-images")
    env = podman_env(registry, state)
    standins = build_standins(env)
    kubeconfigs = tmp_path_factory.mktemp("deployers")
    kubeconfigs.chmod(0o755)
    cluster.kubectl("create", "namespace", DEPLOYERS, check=False)
    for deploy_env in ENVS:
        deployer_kubeconfig(cluster, deploy_env, kubeconfigs)
    installer_kubeconfig(cluster, kubeconfigs)
    with podman_service(env, state) as socket:
        yield Pipeline(env, standins, registry, socket, kubeconfigs)


def release(cluster: LiveCluster, env: str) -> dict[str, Any]:
    return cluster.get("testappreleases.testapp.dev", f"test-app-{env}")


def deploy_trigger(trigger: Trigger, pipeline: Pipeline, env: str) -> Trigger:
    return trigger.with_variables(KUBECONFIG=str(pipeline.kubeconfigs / env))


def created_by_hand(cluster: LiveCluster, pipeline: Pipeline, env: str) -> None:
    """The one-time setup of docs/delivery.md: the release exists before a pipeline deploys it."""
    cluster.kubectl("delete", "tar", f"test-app-{env}", "--ignore-not-found", "--wait=true")
    image = f"{pipeline.registry}/test-app"
    make_against(cluster, "deploy", f"ENV={env}", "TAG=bootstrap", "TIMEOUT=120", f"IMAGE={image}")


@pytest.fixture(scope="module")
def built(pipeline: Pipeline) -> dict[str, str]:
    """build-app and build-operator of a push to development: both images at HEAD's SHA."""
    sha = git_head()
    run = pipeline.run_jobs(Trigger.push("development"), "build-app", "build-operator")
    assert run.passed("build-app") and run.passed("build-operator"), run.output
    digests = {
        image: pipeline.digest(f"{image}:{sha}") for image in ("test-app", "testapp-operator")
    }
    assert all(digests.values()), digests
    assert f"APP_DIGEST={digests['test-app']}" in run.output
    return {"sha": sha, **digests}


def test_a_push_to_development_deploys_the_pushed_digest_from_the_pushed_operator_image(
    cluster: LiveCluster, pipeline: Pipeline, built: dict[str, str]
) -> None:
    created_by_hand(cluster, pipeline, "dev")

    run = pipeline.run_jobs(
        deploy_trigger(Trigger.push("development"), pipeline, "dev"),
        "deploy-dev",
        host_network=True,
    )

    assert run.passed("deploy-dev"), run.output
    assert f"starting {pipeline.registry}/testapp-operator:{built['sha']}" in run.output
    assert f"pulled {pipeline.registry}/testapp-operator:{built['sha']}" in run.output
    dev = release(cluster, "dev")
    assert dev["spec"]["tag"] == built["sha"]
    assert dev["spec"]["digest"] == built["test-app"]
    assert dev["status"]["phase"] == "Ready"
    assert dev["status"]["digest"] == built["test-app"]


def test_rollback_dev_pins_the_previous_revision(
    cluster: LiveCluster, pipeline: Pipeline, built: dict[str, str]
) -> None:
    before = release(cluster, "dev")["status"]["revision"]

    run = pipeline.run_jobs(
        deploy_trigger(Trigger.push("development"), pipeline, "dev"),
        "rollback-dev",
        host_network=True,
    )

    assert run.passed("rollback-dev"), run.output
    dev = release(cluster, "dev")
    assert dev["spec"]["revision"] < before
    assert dev["status"]["pinned"] is True
    assert dev["status"]["revision"] == dev["spec"]["revision"]
    assert dev["status"]["phase"] == "Ready"


def test_a_deploy_whose_release_turns_degraded_fails_its_job_with_the_condition(
    cluster: LiveCluster, pipeline: Pipeline, built: dict[str, str]
) -> None:
    # kwok never makes Pods of a "broken*" image tag Ready; 10 s is the shortest allowed deadline.
    patch = {"spec": {"progressDeadlineSeconds": 10}}
    cluster.kubectl("patch", "tar", "test-app-dev", "--type=merge", "-p", json.dumps(patch))
    try:
        trigger = deploy_trigger(Trigger.push("development"), pipeline, "dev")
        run = pipeline.run_jobs(
            trigger.with_variables(DEPLOY_TAG=f"broken-{built['sha'][:12]}"),
            "deploy-dev",
            host_network=True,
        )

        assert run.failed("deploy-dev"), run.output
        degraded = wait_until(
            lambda: next(
                (
                    c
                    for c in release(cluster, "dev")["status"].get("conditions", [])
                    if c["type"] == "Degraded" and c["status"] == "True"
                ),
                None,
            ),
            timeout=60,
            what="the Degraded condition",
        )
        assert degraded["message"] in run.output
    finally:
        patch = {"spec": {"progressDeadlineSeconds": 180}}
        cluster.kubectl("patch", "tar", "test-app-dev", "--type=merge", "-p", json.dumps(patch))


def test_a_release_tag_promotes_the_digest_ppd_ran_without_rebuilding(
    cluster: LiveCluster,
    pipeline: Pipeline,
    built: dict[str, str],
    gitlab: tuple[FakeApi, Path],
) -> None:
    created_by_hand(cluster, pipeline, "ppd")
    created_by_hand(cluster, pipeline, "prd")
    master = deploy_trigger(Trigger.push("master"), pipeline, "ppd")
    rebuilt = pipeline.run_jobs(master, "build-app", "build-operator")
    assert "exists (" in rebuilt.output and "not rebuilt" in rebuilt.output, rebuilt.output
    ppd = pipeline.run_jobs(master, "deploy-ppd", host_network=True)
    assert ppd.passed("deploy-ppd"), ppd.output
    ppd_digest = release(cluster, "ppd")["status"]["digest"]

    tag = deploy_trigger(release_tag(gitlab, "v1.2.3"), pipeline, "prd")
    promote = pipeline.run_jobs(tag, "promote-prd", host_network=True, volumes=(gitlab[1],))
    assert promote.passed("promote-prd"), promote.output
    # (sign-prd needs cosign and Sigstore: not run offline, docs/delivery.md.)
    deploy = pipeline.run_jobs(tag, "deploy-prd", host_network=True)

    assert deploy.passed("deploy-prd"), deploy.output
    assert f"commit {built['sha']} is on master and was deployed to ppd" in promote.output
    assert "STEP" not in promote.output  # nothing was built
    prd = release(cluster, "prd")
    assert prd["spec"]["tag"] == "v1.2.3"
    assert prd["status"]["digest"] == ppd_digest == built["test-app"]
    assert pipeline.digest("test-app:v1.2.3") == built["test-app"]
    assert pipeline.digest("testapp-operator:v1.2.3") == built["testapp-operator"]


def test_install_operator_installs_the_released_operator_by_digest_and_waits_for_its_rollout(
    cluster: LiveCluster, pipeline: Pipeline, built: dict[str, str], gitlab: tuple[FakeApi, Path]
) -> None:
    tag = deploy_trigger(release_tag(gitlab, "v1.2.3"), pipeline, "operator")
    try:
        run = pipeline.run_jobs(tag, "install-operator", host_network=True)

        assert run.passed("install-operator"), run.output
        assert 'deployment "testapp-operator" successfully rolled out' in run.output
        deployment = cluster.get("deployment", "testapp-operator", "-n", "testapp-system")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == (
            f"{pipeline.registry}/testapp-operator@{built['testapp-operator']}"
        )
    finally:
        cluster.kubectl(
            "-n", "testapp-system", "delete", "deployment", "testapp-operator", "--ignore-not-found"
        )


def test_promoting_a_commit_of_master_that_was_never_built_fails_and_says_why(
    pipeline: Pipeline, gitlab: tuple[FakeApi, Path]
) -> None:
    never_built = git("rev-parse", "HEAD~1")  # on master, "ran in ppd", not in the registry
    tag = release_tag(gitlab, "v9.9.9").with_variables(CI_COMMIT_SHA=never_built)

    run = pipeline.run_jobs(tag, "promote-prd", host_network=True, volumes=(gitlab[1],))

    assert run.failed("promote-prd"), run.output
    assert f"commit {never_built} was never built by a pipeline of master" in run.output
    assert pipeline.digest("test-app:v9.9.9") is None


def test_a_merge_request_from_a_fork_builds_and_tests_but_pushes_nothing(
    pipeline: Pipeline, built: dict[str, str]
) -> None:
    fork_commit = "f" * 40
    fork = Trigger.merge_request("feature/x", "development").with_variables(
        CI_MERGE_REQUEST_SOURCE_PROJECT_ID="99",
        CI_MERGE_REQUEST_PROJECT_ID="7",
        CI_COMMIT_SHA=fork_commit,
    )

    run = pipeline.run_jobs(fork, "build-app")

    assert run.passed("build-app"), run.output
    assert "STEP" in run.output  # built (its tests are a stage of the build)
    assert pipeline.digest(f"test-app:{fork_commit}") is None
