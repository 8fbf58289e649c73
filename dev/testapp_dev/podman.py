"""podman as the image tests drive it: the project's configuration (hack/containers), local
images only (never a pull), and a copy of the tree as a fresh clone would have it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testapp_dev import scripts

ROOT = scripts.REPO
toolchain = scripts.load("toolchain", "hack/containers/toolchain.py")

ENV = {**os.environ, **toolchain.podman_env()}


@dataclass(frozen=True)
class Podman:
    """podman with the project's settings; `base_image` is the local Python base."""

    base_image: str

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], capture_output=True, text=True, env=ENV, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0

    def build(
        self, tree: Path, dockerfile: str, tag: str, *build_args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`podman build` of one Dockerfile from `tree`, as `make image` runs it."""
        return self(
            "build",
            "--pull=never",
            f"--build-arg=PYTHON_IMAGE={self.base_image}",
            *(f"--build-arg={arg}" for arg in build_args),
            "-f",
            dockerfile,
            "-t",
            tag,
            str(tree),
            check=check,
        )

    def labels(self, image: str) -> dict[str, str]:
        return json.loads(self("image", "inspect", "--format", "{{json .Labels}}", image).stdout)

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self("container", "inspect", container).stdout)[0]

    def run_python(self, image: str, script: str, user: str = "10001") -> Any:
        """Run a Python script in a throwaway container of `image`; return its JSON output."""
        result = self(
            "run", "--rm", "--pull=never", "--network=none", f"--user={user}",
            image, "python", "-c", script,
        )  # fmt: skip
        return json.loads(result.stdout)


def toolchain_podman() -> Podman:
    """Install what is missing and build the base image if this recipe has none (cached)."""
    toolchain.install(log=lambda line: print(line, file=sys.stderr))
    return Podman(toolchain.build_base_image(log=lambda line: print(line, file=sys.stderr)))


def clean_copy(target: Path) -> Path:
    """The work tree as a clone of it would have it: tracked and not-ignored files only (no
    .venv, no .cluster, no caches), with their current content."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


# What a runtime image must not contain, checked from inside it (prints a JSON list of findings).
LEFTOVERS_SCRIPT = """
import importlib.util, json, os, shutil
found = []
for module in ("pytest", "_pytest", "ruff", "setuptools_scm"):
    if importlib.util.find_spec(module):
        found.append(f"python module {module}")
for tool in ("gcc", "cc", "g++", "c++", "clang", "make", "ld", "as"):
    if shutil.which(tool):
        found.append(f"compiler tool {shutil.which(tool)}")
for home in ("/root", "/home", "/tmp", "/src", "/app"):
    for directory, subdirs, files in os.walk(home):
        if os.path.basename(directory) == "pip" and "/.cache" in directory:
            found.append(f"pip cache {directory}")
        for name in files:
            if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
                found.append(f"test file {os.path.join(directory, name)}")
        found += [f"test directory {os.path.join(directory, d)}" for d in subdirs if d == "tests"]
print(json.dumps(found))
"""
