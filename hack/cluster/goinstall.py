"""`go install` of pinned module packages into a cache directory, once (crane, containerd).

Loaded beside localcluster.py and realnode.py, which build their tools with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


class GoInstallFailed(RuntimeError):
    """One line saying why."""


def go_install(
    target: Path, packages: Sequence[str], flags: Sequence[str] = (), niceness: int = 0
) -> None:
    """Install `packages` (`module/cmd/x@version`) into the directory `target`. They are built into
    `<target>.partial` and renamed at the end, so an interrupted build never passes for a finished
    one; go's output goes to `<target>.build.log`. `niceness` lowers the build's priority (the
    compilers inherit it), so a long build leaves the cores to whatever else runs."""
    if shutil.which("go") is None:
        raise GoInstallFailed("Go is not installed")
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    build_log = target.with_name(f"{target.name}.build.log")
    with build_log.open("w") as out:
        result = subprocess.run(
            ["go", "install", "-trimpath", *flags, *packages],
            # Module mode outside any workspace, whatever the caller's Go settings.
            env={**os.environ, "GOBIN": str(partial), "GOFLAGS": "", "GOWORK": "off"},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=target.parent,
            preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
        )
    if result.returncode != 0:
        raise GoInstallFailed(f"go install failed; see {build_log}")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
