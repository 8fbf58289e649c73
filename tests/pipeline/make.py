"""The Makefile as a person runs it, for the tests of its targets."""

from __future__ import annotations

import os
import subprocess

from testapp_dev import LiveCluster

from tests.pipeline.gitlab import REPO


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`make -s` with no CI or Google Cloud variables from the calling shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "GCP_", "MAKE"))}
    return subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_against(cluster: LiveCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`make -s` against `cluster` (its KUBECONFIG), which must succeed."""
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=REPO,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result
