"""The loopback image registry: go-containerregistry's `crane registry serve`, started with the
cluster, in its process group. It keeps manifests in memory: its images live as long as it does."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from components import free_ports, http, is_healthy, preexec_join, wait_for
from goinstall import GoInstallFailed, ensure_built
from state import CACHE_DIR, STATE_DIR, ClusterError, adopt, read_state

# go-containerregistry's registry (`crane registry serve`): `make push` puts images there for the
# cluster's nodes to pull. It keeps manifests in memory: its images live as long as the cluster.
CRANE_PACKAGE = "github.com/google/go-containerregistry/cmd/crane"


CRANE_VERSION = "v0.22.1"


def ensure_crane(log: Callable[[str], None] = print) -> Path:
    """Return the cached crane binary, building it from the Go module proxy if missing."""
    package = f"{CRANE_PACKAGE}@{CRANE_VERSION}"
    try:
        target = ensure_built(CACHE_DIR / f"crane-{CRANE_VERSION}", [package], "crane", log)
    except GoInstallFailed as error:
        raise ClusterError(f"the loopback registry (crane {CRANE_VERSION}): {error}") from None
    return target / "crane"


def registry_address(state: Path = STATE_DIR) -> str | None:
    """host:port of the running cluster's registry, if it has one."""
    try:
        return json.loads((state / "registry.json").read_text())["address"]
    except (OSError, ValueError, KeyError):
        return None


def registry_answers(address: str) -> bool:
    return http(f"http://{address}/v2/")[0] == 200


def start_registry(
    state: Path, pgid: int, die_with_parent: bool, log: Callable[[str], None] = print
) -> subprocess.Popen[bytes]:
    """Start the registry in the cluster's process group (so `down` stops it too)."""
    crane = ensure_crane(log)
    address = f"127.0.0.1:{free_ports(1)[0]}"
    disk = state / "registry"
    shutil.rmtree(disk, ignore_errors=True)  # blobs whose manifests died with the last registry
    disk.mkdir(parents=True)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [crane, "registry", "serve", "--address", address, "--disk", str(disk)],
        stdout=(state / "logs" / "registry.log").open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_join(pgid, die_with_parent),
    )
    (state / "registry.json").write_text(json.dumps({"address": address, "pid": process.pid}))
    return process


def ensure_registry(state: Path = STATE_DIR, log: Callable[[str], None] = print) -> str:
    """The running cluster's registry address, starting the registry if it has none. Idempotent."""
    cluster = read_state(state)
    if cluster is None or not is_healthy(cluster):
        raise ClusterError("the local control plane is not running (make cluster-up)")
    address = registry_address(state)
    if address and registry_answers(address):
        return address
    process = start_registry(state, cluster.pgid, die_with_parent=False, log=log)
    adopt(cluster, process)
    address = registry_address(state)
    assert address is not None
    deadline = time.monotonic() + 30
    wait_for(
        "the registry /v2/",
        lambda: registry_answers(address),
        deadline,
        {"registry": process},
        "registry",
        state,
    )
    return address
