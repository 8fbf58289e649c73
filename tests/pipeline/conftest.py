"""The pipeline tests need gitlab-ci-local: installed once from package-lock.json (npm ci)."""

from __future__ import annotations

import subprocess

import pytest

from tests.pipeline.gitlab import GITLAB_CI_LOCAL, REPO


@pytest.fixture(scope="session", autouse=True)
def gitlab_ci_local() -> None:
    if not GITLAB_CI_LOCAL.exists():
        subprocess.run(["make", "--no-print-directory", "node-modules"], cwd=REPO, check=True)
