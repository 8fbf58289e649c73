"""Fixtures of the image tests: the container toolchain, and both images built once per session
by `make image` from a clean copy of the tree (podman's layer cache keeps reruns fast)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testapp_dev.podman import ENV, Podman, clean_copy, toolchain_podman


@dataclass(frozen=True)
class Images:
    app: str
    operator: str
    git_sha: str
    app_version: str
    tree: Path  # the clean copy they were built from


@pytest.fixture(scope="session")
def podman() -> Podman:
    return toolchain_podman()


@pytest.fixture(scope="session")
def images(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    """Both images, built by `make image` with podman from a copy of the tree that has only
    what a clone has; tagged under a repository of this session's own (removed afterwards)."""
    tree = clean_copy(tmp_path_factory.mktemp("clone"))
    repository = f"localhost/pytest-{uuid.uuid4().hex[:8]}"
    git_sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]  # 40 hex digits, as a commit SHA
    built = Images(
        app=f"{repository}/test-app:{git_sha}",
        operator=f"{repository}/testapp-operator:{git_sha}",
        git_sha=git_sha,
        app_version="1.4.0-pytest",
        tree=tree,
    )
    result = subprocess.run(
        [
            "make",
            "-C",
            str(tree),
            "image",
            "DOCKER=podman",
            f"GIT_SHA={git_sha}",
            f"APP_VERSION={built.app_version}",
            f"APP_IMAGE={repository}/test-app",
            f"OPERATOR_IMAGE={repository}/testapp-operator",
        ],
        capture_output=True,
        text=True,
        env={**ENV, "MAKEFLAGS": ""},  # not the jobserver of a `make test` around us
        timeout=1800,
    )
    try:
        assert result.returncode == 0, (
            f"make image failed:\n{result.stdout[-4000:]}\n{result.stderr}"
        )
        yield built
    finally:  # one at a time: a failed build may have tagged only the first
        for image in (built.app, built.operator):
            podman("rmi", "--force", image, check=False)
