"""Which builder `make image` picks and what it passes it (`make -n`: nothing is built)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from testapp_dev.podman import ROOT, toolchain


def planned_image_build(tmp_path: Path, docker_info_exit: int, *variables: str) -> str:
    """The commands `make image` would run with a `docker` whose daemon answers (exit 0) or not."""
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nexit {docker_info_exit}\n")
    fake.chmod(0o755)
    environment = {k: v for k, v in os.environ.items() if k not in ("DOCKER", "PYTHON_IMAGE")}
    result = subprocess.run(
        ["make", "-n", "image", "GIT_SHA=0123abcd", *variables],
        cwd=ROOT,
        env={**environment, "PATH": f"{fake.parent}:{os.environ['PATH']}", "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_docker_builds_from_the_dockerfiles_pinned_base_when_its_daemon_answers(
    tmp_path: Path,
) -> None:
    plan = planned_image_build(tmp_path, docker_info_exit=0)

    assert "docker build -f Dockerfile.app" in plan
    assert "PYTHON_IMAGE" not in plan
    assert "podman" not in plan


def test_podman_builds_from_the_local_base_and_never_pulls_without_a_docker_daemon(
    tmp_path: Path,
) -> None:
    plan = planned_image_build(tmp_path, docker_info_exit=1)

    builds = [line for line in plan.splitlines() if " build " in line]
    assert len(builds) == 2
    for build in builds:
        assert build.startswith("podman build")
        assert f"--build-arg PYTHON_IMAGE={toolchain.base_image_name()}" in build
        assert "--pull=never" in build


@pytest.mark.parametrize("docker_info_exit", [0, 1])
def test_an_explicit_python_image_wins(tmp_path: Path, docker_info_exit: int) -> None:
    plan = planned_image_build(tmp_path, docker_info_exit, "PYTHON_IMAGE=localhost/mine:1")

    assert plan.count("--build-arg PYTHON_IMAGE=localhost/mine:1") == 2
