"""The control plane's multi-call binary (hack/cluster/cmd/kube), built once from the Go modules
into ~/.cache/testapp/cluster-<hash>/, keyed by the Go module's files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from goinstall import build_lock
from state import CACHE_DIR, HERE, ClusterError

KUBERNETES_VERSION = "v1.36.3"


# Files whose content decides the binary; their hash names the cache directory.
BUILD_INPUTS = ("go.mod", "go.sum", "cmd/kube/main.go")


def build_hash() -> str:
    digest = hashlib.sha256(KUBERNETES_VERSION.encode())
    for name in BUILD_INPUTS:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()[:16]


def version_ldflags() -> str:
    minor = KUBERNETES_VERSION.split(".")[1]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES_VERSION}",
            f"-X {package}.gitMajor=1",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


def ensure_binary(log: Callable[[str], None] = print) -> Path:
    """Return the cached multi-call binary, building it first if this module hash has none."""
    target_dir = CACHE_DIR / f"cluster-{build_hash()}"
    binary = target_dir / "kube"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise ClusterError(
            "Go is not installed: the local control plane is built from Go modules "
            "(install Go >= 1.26 from go.dev)"
        )
    with build_lock(target_dir):
        if not binary.exists():
            build_binary(target_dir, binary, log)
    return binary


def build_binary(target_dir: Path, binary: Path, log: Callable[[str], None]) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    log(
        f"Building the control plane (Kubernetes {KUBERNETES_VERSION}, etcd, kwok) into "
        f"{target_dir}. The first build takes 10-20 minutes on 2 cores; later runs reuse it."
    )
    partial = target_dir / "kube.partial"
    command = ["go", "build", "-v", "-trimpath", "-ldflags", version_ldflags(), "-o", str(partial)]
    command.append("./cmd/kube")
    started = time.monotonic()
    build_log = target_dir / "build.log"
    with build_log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for compiled, line in enumerate(process.stdout, start=1):
            out.write(line)
            if compiled % 100 == 0:
                minutes = (time.monotonic() - started) / 60
                log(f"  ... {compiled} packages compiled ({minutes:.1f} min)")
        if process.wait() != 0:
            raise ClusterError(f"go build failed; see {build_log}")
    partial.rename(binary)
    log(f"Built {binary} in {time.monotonic() - started:.0f} s")
