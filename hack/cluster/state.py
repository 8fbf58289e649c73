"""What a local cluster is, on disk and in /proc: its ports and process groups (state.json),
which of its components run, and how much memory they use."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent


REPO = HERE.parent.parent


STATE_DIR = Path(os.environ.get("TESTAPP_CLUSTER_DIR", REPO / ".cluster"))


CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "testapp"


class ClusterError(RuntimeError):
    """A component failed to build, start or become ready; the message names it and its log."""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


@dataclass(frozen=True)
class Cluster:
    """What a running cluster looks like on disk (.cluster/state.json)."""

    pgid: int
    ports: Ports
    binary: str
    state_dir: str
    # Process groups of components restarted from another session, which cannot join `pgid`.
    groups: tuple[int, ...] = ()
    # host:port of the Prometheus started with the real node (clusterprometheus.py), or "".
    prometheus: str = ""

    @property
    def all_groups(self) -> tuple[int, ...]:
        return (self.pgid, *self.groups)

    @property
    def kubeconfig(self) -> str:
        return str(Path(self.state_dir) / "kubeconfig")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"


def read_state(state: Path = STATE_DIR) -> Cluster | None:
    try:
        raw = json.loads((state / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return Cluster(
        pgid=raw["pgid"],
        ports=Ports(**raw["ports"]),
        binary=raw["binary"],
        state_dir=raw["state_dir"],
        groups=tuple(raw.get("groups", ())),
        prometheus=raw.get("prometheus", ""),
    )


def write_state(cluster: Cluster) -> None:
    (Path(cluster.state_dir) / "state.json").write_text(json.dumps(asdict(cluster), indent=2))


def adopt(cluster: Cluster, process: subprocess.Popen[bytes]) -> Cluster:
    """Record the process group of a component started into `cluster` (it is a new one when the
    starter's session differs from the cluster's), so that `down` stops it too."""
    group = os.getpgid(process.pid)
    if group in cluster.all_groups:
        return cluster
    cluster = replace(cluster, groups=(*cluster.groups, group))
    write_state(cluster)
    return cluster


def any_group_alive(cluster: Cluster) -> bool:
    return any(group_alive(group) for group in cluster.all_groups)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def component_pids(cluster: Cluster) -> dict[str, int]:
    """The running processes of the cluster's groups, by the name they run under (argv[0]:
    the multi-call binary's components; the registry is crane's path)."""
    groups = set(cluster.all_groups)
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, IndexError):
            continue
        if stat[0] != "Z" and int(stat[2]) in groups:
            found[argv0] = int(entry.name)
    return found


def rss_mb(cluster: Cluster) -> dict[str, float]:
    """Resident memory of each component, in MiB (from /proc)."""
    sizes: dict[str, float] = {}
    for component, pid in component_pids(cluster).items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[component] = int(line.split()[1]) / 1024
    return sizes
