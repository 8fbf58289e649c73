"""`go install` of pinned module packages into a cache directory, once (crane, containerd).

Loaded beside localcluster.py, realnode.py and the other parts of the launcher, which build their
tools with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


class GoInstallFailed(RuntimeError):
    """One line saying why."""


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """One build of `target` at a time on this machine: two clusters starting at once (a demo and
    a test run) would otherwise build into, and delete, the same directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_built(
    target: Path,
    packages: Sequence[str],
    what: str,
    log: Callable[[str], None],
    flags: Sequence[str] = (),
    niceness: int = 0,
) -> Path:
    """`target`, holding the commands of `packages`: built there first if it does not (saying so,
    as `what`). Raises GoInstallFailed with one line."""
    if not all((target / command).exists() for command in _commands(packages)):
        log(f"Building {what} into {target} (minutes, once)")
        go_install(target, packages, flags, niceness)
    return target


def _commands(packages: Sequence[str]) -> list[str]:
    return [package.split("@")[0].rsplit("/", 1)[-1] for package in packages]


def go_install(
    target: Path, packages: Sequence[str], flags: Sequence[str] = (), niceness: int = 0
) -> None:
    """Install `packages` (`module/cmd/x@version`) into the directory `target`, unless another
    process just did. They are built into `<target>.partial` and renamed at the end, so an
    interrupted build never passes for a finished one; go's output goes to `<target>.build.log`.
    `niceness` lowers the build's priority (the compilers inherit it), so a long build leaves the
    cores to whatever else runs."""
    if shutil.which("go") is None:
        raise GoInstallFailed("Go is not installed: install Go >= 1.26 from go.dev")
    with build_lock(target):
        if not all((target / command).exists() for command in _commands(packages)):
            _install(target, packages, flags, niceness)


def _install(target: Path, packages: Sequence[str], flags: Sequence[str], niceness: int) -> None:
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
