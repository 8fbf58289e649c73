"""A real node beside kwok: containerd + runc + CNI bridge, kubelet, kube-proxy (nftables) and
kube-router's network policy controller, which enforces NetworkPolicies with iptables and ipset.

The kubelet and kube-proxy come from the control plane's multi-call binary; containerd and
kube-router are built from the Go module proxy into ~/.cache/testapp/node-<hash>/ and
~/.cache/testapp/kube-router-<hash>/; runc, the CNI plugins, iptables and ipset come from
Debian. The node registers under the machine's hostname (the API server dials the kubelet by
that name, so it should resolve to a loopback address, as it does here), labelled
`testapp.dev/node=real` and tainted `testapp.dev/node=real:NoSchedule`: only Pods that ask for
it land there (see `placement`).

One real node per machine: its bridge, nftables tables and cgroups are machine-wide, so a lock
under /run names the cluster that owns it, and any other cluster runs kwok only. Everything the
node changes on the host is recorded before it starts (`Footprint`) and put back by `stop`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import hosttools
from goinstall import GoInstallFailed, ensure_built

CONTAINERD_MODULE = "github.com/containerd/containerd/v2"
CONTAINERD_VERSION = "v2.2.9"
CONTAINERD_COMMANDS = ("containerd", "containerd-shim-runc-v2", "ctr")
CONTAINERD_TAGS = "no_btrfs no_devmapper no_zfs"
KUBE_ROUTER_MODULE = "github.com/cloudnativelabs/kube-router/v2"
KUBE_ROUTER_VERSION = "v2.1.0"  # the newest version the Go module proxy serves
CNI_BIN_DIR = "/usr/lib/cni"
PAUSE_IMAGE = "localhost/testapp/pause:catatonit"
POD_SUBNET = "10.244.0.0/24"
BRIDGE = "testapp0"
CNI_NETWORK = "testapp-node"
LABEL = "testapp.dev/node"
TAINT = {"key": LABEL, "value": "real", "effect": "NoSchedule"}
LOCK = Path("/run/lock/testapp-real-node.json")
# Values the kubelet (kernel tunables) or kube-proxy may set machine-wide; `stop` restores them.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
# Paths the kubelet, containerd's shims or the CNI library use whatever they are configured with.
OUTSIDE_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/etc/cni",
    "/opt/cni",
    "/opt/containerd",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "kubepods"


class NodeUnavailable(RuntimeError):
    """The real node cannot run here; the message is one line saying why."""


# --- paths and configuration (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class NodePaths:
    state: Path

    @property
    def root(self) -> Path:
        return self.state / "node"

    @property
    def baseline(self) -> Path:
        # Outside `root`: it must survive until `stop` has put the host back.
        return self.state / "node-baseline.json"

    @property
    def unavailable(self) -> Path:
        return self.state / "node-unavailable.txt"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    def log(self, component: str) -> Path:
        return self.state / "logs" / f"{component}.log"


@dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    proxy_healthz: int
    proxy_metrics: int
    stream: int


def containerd_config(paths: NodePaths, ports: NodePorts, shim: Path, runc: str) -> str:
    root = paths.root
    return f"""version = 3
root = '{root / "containerd-root"}'
state = '{root / "containerd-state"}'
# No NRI socket in /var/run, no tracing: nothing this node does should reach outside its dir.
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.tracing.processor.v1.otlp']

[grpc]
  address = '{paths.socket}'

[plugins.'io.containerd.internal.v1.opt']
  path = '{root / "opt"}'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{PAUSE_IMAGE}'
  # No hosts.toml: containerd pulls from a loopback registry over plain HTTP by itself, and
  # an empty directory keeps the machine's own registry settings out of it.
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '{root / "registry-hosts"}'

[plugins.'io.containerd.cri.v1.runtime']
  # runc cannot set an oom_score_adj below the current one without CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    runtime_path = '{shim}'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '{runc}'
      Root = '{paths.runc_root}'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{CNI_BIN_DIR}']
    conf_dir = '{root / "cni"}'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '{ports.stream}'
"""


def cni_config(paths: NodePaths) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # Pod traffic stays on this machine: no masquerading to the outside.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.root / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: NodePaths, ports: NodePorts, pki: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "containerRuntimeEndpoint": f"unix://{paths.socket}",
        # No systemd here, and the machine runs cgroup v1 (hybrid), which 1.35+ refuses by default.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        # The kubelet would otherwise refuse to start unless the kernel tunables are its own;
        # `stop` restores whatever it changes.
        "protectKernelDefaults": False,
        # No iptables chains from the kubelet: kube-proxy (nftables) does the Service routing.
        "makeIPTablesUtilChains": False,
        "podLogsDir": str(paths.root / "pod-logs"),
        "resolvConf": str(paths.root / "resolv.conf"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        # A developer's disk is often fuller than the kubelet's defaults allow.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerWithTaints": [TAINT],
        "serializeImagePulls": False,
        "maxPods": 40,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(paths: NodePaths, ports: NodePorts, state: Path, node: str) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(state / "kube-proxy.kubeconfig")},
        "hostnameOverride": node,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "clusterCIDR": POD_SUBNET,
        "detectLocalMode": "ClusterCIDR",
        # Zero leaves the machine's conntrack settings as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
            "udpTimeout": "0s",
            "udpStreamTimeout": "0s",
        },
    }


def placement() -> dict[str, str]:
    """Namespace annotations that send every Pod of the namespace to the real node.

    The PodNodeSelector and PodTolerationRestriction admission plugins apply them to each Pod,
    so a release needs no field of its own: which node runs it is the cluster's decision.
    """
    toleration = {
        "key": TAINT["key"],
        "operator": "Equal",
        "value": TAINT["value"],
        "effect": TAINT["effect"],
    }
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{LABEL}=real",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration]),
    }


# --- the host's footprint -----------------------------------------------------------------------


@dataclass(frozen=True)
class Footprint:
    """What of the host the node can change, as plain values (JSON round trip, compared with ==).

    Only what the node could have made: other tools on the machine (podman's bridges, network
    namespaces and chains) come and go meanwhile and are none of its business. Pod network
    namespaces are mounted under the node's dir, so `mounts` covers them.
    """

    sysctls: dict[str, str] = field(default_factory=dict)
    nft_tables: list[str] = field(default_factory=list)
    nft_chains: list[str] = field(default_factory=list)
    iptables_jumps: list[str] = field(default_factory=list)
    ipsets: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Footprint:
        """Read a recorded footprint (keys from an older version of this class are dropped)."""
        raw = json.loads(path.read_text())
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    def differences(self, other: Footprint) -> list[str]:
        lines = []
        for name, before in asdict(self).items():
            after = getattr(other, name)
            if isinstance(before, dict):
                changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()}
                lines += [
                    f"{name} {k}: {a} -> {b}" for k, (a, b) in sorted(changed.items()) if a != b
                ]
            else:
                lines += [
                    f"{name} left behind: {item}" for item in sorted(set(after) - set(before))
                ]
                lines += [f"{name} gone: {item}" for item in sorted(set(before) - set(after))]
        return lines


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def run(*command: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check)


def node_mounts(paths: NodePaths) -> list[str]:
    """Mount points the node may create: under its own dir or in the well-known places."""
    watched = (str(paths.root), *OUTSIDE_PATHS)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == w or point.startswith(w + "/") for w in watched):
            found.append(point)
    return found


def node_processes(paths: NodePaths) -> list[str]:
    found = []
    marker = str(paths.root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline.split(b"\0")[0].decode(errors="replace"))
    return sorted(found)


def footprint(paths: NodePaths) -> Footprint:
    tables = [t.strip() for t in run("nft", "list", "tables").stdout.splitlines()]
    # Chains as iptables-nft shows them: "table ip nat" ... "chain KUBE-...": the kubelet's and
    # the CNI portmap plugin's prefixes.
    chains, table = [], ""
    for line in run("nft", "list", "chains").stdout.splitlines():
        words = line.split()
        if words[:1] == ["table"]:
            table = " ".join(words[1:3])
        elif words[:1] == ["chain"] and words[1].startswith(("KUBE-", "CNI-")):
            chains.append(f"{table} {words[1]}")
    links = [BRIDGE] if Path(f"/sys/class/net/{BRIDGE}").exists() else []
    for line in run("ip", "-o", "link", "show", "master", BRIDGE).stdout.splitlines():
        links.append(line.split()[1].rstrip(":").split("@")[0])
    cgroups = [str(d) for d in CGROUP_ROOT.glob(f"*/{CGROUP_NAME}") if d.is_dir()]
    return Footprint(
        sysctls={name: value for name in SYSCTLS if (value := read_sysctl(name)) is not None},
        nft_tables=sorted(t for t in tables if t.endswith(" kube-proxy") or t in ENGINE_TABLES),
        nft_chains=sorted(chains),
        iptables_jumps=engine_jumps(iptables_save()),
        ipsets=engine_ipsets(ipset_names()),
        links=sorted(links),
        mounts=sorted(node_mounts(paths)),
        cgroups=sorted(cgroups),
        paths=sorted(p for p in OUTSIDE_PATHS if os.path.lexists(p)),
        processes=node_processes(paths),
    )


# --- availability, lock -------------------------------------------------------------------------


def unavailable_reason(paths: NodePaths) -> str | None:
    """One line saying why the real node cannot run here, or None."""
    if os.environ.get("TESTAPP_REAL_NODE", "1") == "0":
        return "the real node is switched off (TESTAPP_REAL_NODE=0)"
    if os.uname().sysname != "Linux":
        return f"the real node needs Linux (this is {os.uname().sysname})"
    if os.geteuid() != 0:
        return (
            f"the real node needs root for containerd, cgroups and the bridge (uid {os.geteuid()})"
        )
    if absent := hosttools.missing(["real-node"]):
        tools = [tool for needed in absent.values() for tool in needed]
        return f"the real node needs {hosttools.describe(tools)}: make cluster-up installs them"
    owner = lock_owner()
    if owner is not None and owner != str(paths.state):
        return (
            f"the real node of this machine belongs to the cluster in {owner} "
            "(one per machine: stopping that cluster frees it)"
        )
    if (
        not CGROUP_ROOT.joinpath("memory").is_dir()
        and not CGROUP_ROOT.joinpath("cgroup.controllers").exists()
    ):
        return "the real node needs a cgroup hierarchy with the memory controller"
    return None


def lock_owner() -> str | None:
    """The state dir of the cluster whose real node is running, if its kubelet is alive."""
    try:
        raw = json.loads(LOCK.read_text())
        os.kill(raw["pid"], 0)
    except (OSError, ValueError, KeyError):
        return None
    # A killed kubelet stays a zombie until its parent (maybe this very process) reaps it.
    return None if zombie(raw["pid"]) else raw["state"]


def hold_lock(paths: NodePaths, pid: int) -> None:
    """Claim the machine's real node for this cluster for as long as `pid` lives."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    LOCK.write_text(json.dumps({"state": str(paths.state), "pid": pid}))


def release_lock(paths: NodePaths) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        if json.loads(LOCK.read_text())["state"] == str(paths.state):
            LOCK.unlink()


# --- build --------------------------------------------------------------------------------------


def ensure_containerd(cache: Path, log: Callable[[str], None]) -> Path:
    """The directory holding containerd, its runc shim and ctr, built once from the proxy."""
    key = hashlib.sha256(f"{CONTAINERD_VERSION} {CONTAINERD_TAGS}".encode()).hexdigest()[:16]
    packages = [f"{CONTAINERD_MODULE}/cmd/{c}@{CONTAINERD_VERSION}" for c in CONTAINERD_COMMANDS]
    flags = ["-tags", CONTAINERD_TAGS, "-ldflags", "-s -w"]
    try:
        return ensure_built(cache / f"node-{key}", packages, "containerd", log, flags)
    except GoInstallFailed as error:
        raise NodeUnavailable(f"containerd {CONTAINERD_VERSION} did not build: {error}") from None


def pause_image_archive(destination: Path) -> None:
    """A docker-archive of the sandbox image: Debian's static catatonit in pause mode.

    No registry is reachable, and the Pod sandbox only needs a process that holds the
    namespaces and reaps zombies.
    """
    catatonit = shutil.which("catatonit")
    assert catatonit is not None, "unavailable_reason checks the host tools first"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(catatonit, arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        with open(catatonit, "rb") as binary:
            tar.addfile(info, binary)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause", "-P"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "created": "1970-01-01T00:00:00Z",
    }
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]
    with tarfile.open(destination, mode="w") as archive:
        for name, data in (
            ("layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


# --- start and stop -----------------------------------------------------------------------------

# launch(component, [program, *arguments], extra environment): the process runs `program` under
# the name `component` (the multi-call binary dispatches on it), logging to the component's log.
Launch = Callable[[str, list[str], dict[str, str] | None], subprocess.Popen[bytes]]


def node_name() -> str:
    return socket.gethostname()


def write_files(paths: NodePaths, ports: NodePorts, containerd_dir: Path, runc: str) -> None:
    root = paths.root
    for sub in ("containerd", "cni", "pod-logs", "kubelet", "registry-hosts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "containerd.toml").write_text(
        containerd_config(paths, ports, containerd_dir / "containerd-shim-runc-v2", runc)
    )
    (root / "cni" / "10-testapp.conflist").write_text(json.dumps(cni_config(paths), indent=2))
    # Pods get no name server: nothing they run here needs one, and the host's may be remote.
    (root / "resolv.conf").write_text("options ndots:1\n")
    pki = paths.state / "pki"
    (root / "kubelet.json").write_text(json.dumps(kubelet_config(paths, ports, pki), indent=2))
    (root / "kube-proxy.json").write_text(
        json.dumps(kube_proxy_config(paths, ports, paths.state, node_name()), indent=2)
    )
    pause_image_archive(root / "pause.tar")
    write_engine_files(paths)


def wait_until(what: str, check: Callable[[], bool], seconds: float, log_file: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise NodeUnavailable(f"timed out waiting for {what}; see {log_file}")


def start(
    paths: NodePaths,
    binary: Path,
    cache: Path,
    ports: NodePorts,
    launch: Launch,
    log: Callable[[str], None],
) -> dict[str, subprocess.Popen[bytes]]:
    """Start containerd, the kubelet and kube-proxy; returns their processes (the caller waits
    for the Node to be Ready). Raises NodeUnavailable with one line saying why not."""
    reason = unavailable_reason(paths)
    if reason:
        raise NodeUnavailable(reason)
    stop(paths)
    containerd_dir = ensure_containerd(cache, log)
    ensure_kube_router(cache, log)
    runc = shutil.which("runc")
    assert runc is not None, "unavailable_reason checks the host tools first"
    paths.baseline.write_text(json.dumps(asdict(footprint(paths)), indent=2))
    hold_lock(paths, os.getpid())
    write_files(paths, ports, containerd_dir, runc)
    processes = {}
    env = node_env(containerd_dir)
    processes["containerd"] = launch(
        "containerd",
        [str(containerd_dir / "containerd"), f"--config={paths.root / 'containerd.toml'}"],
        env,
    )
    ctr = [str(containerd_dir / "ctr"), f"--address={paths.socket}", "--namespace=k8s.io"]
    wait_until(
        "containerd's socket",
        lambda: run(*ctr, "version").returncode == 0,
        30,
        paths.log("containerd"),
    )
    imported = run(*ctr, "images", "import", str(paths.root / "pause.tar"))
    if imported.returncode != 0:
        raise NodeUnavailable(
            f"ctr images import of the pause image failed: {imported.stderr.strip()}"
        )
    for component in ("kubelet", "kube-proxy"):
        processes[component] = launch(component, agent_argv(component, paths, binary), env)
    hold_lock(paths, processes["kubelet"].pid)
    return processes


def node_env(containerd_dir: Path) -> dict[str, str]:
    # runc, nft (kube-proxy), mount and the CNI plugins live in the sbin directories.
    return {
        "PATH": f"{containerd_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    }


def agent_argv(component: str, paths: NodePaths, binary: Path) -> list[str]:
    """The kubelet's or kube-proxy's command line (the multi-call binary runs both)."""
    if component == "kubelet":
        return [
            str(binary),
            f"--config={paths.root / 'kubelet.json'}",
            f"--kubeconfig={paths.state / 'node.kubeconfig'}",
            f"--root-dir={paths.kubelet_root}",
            f"--node-labels={LABEL}=real",
        ]
    return [str(binary), f"--config={paths.root / 'kube-proxy.json'}"]


def running_components(paths: NodePaths) -> set[str]:
    return {Path(program).name for program in node_processes(paths)}


def restart_agents(
    paths: NodePaths, binary: Path, cache: Path, launch: Launch
) -> dict[str, subprocess.Popen[bytes]] | None:
    """Start the kubelet and kube-proxy again where they died and containerd still runs (its
    containers, and so the Pods, live on); None when the node must start afresh (containerd
    died, or it was never started from this cluster)."""
    running = running_components(paths)
    if not paths.baseline.exists() or "containerd" not in running:
        return None
    env = node_env(ensure_containerd(cache, lambda _: None))
    processes = {
        component: launch(component, agent_argv(component, paths, binary), env)
        for component in ("kubelet", "kube-proxy")
        if component not in running
    }
    if "kubelet" in processes:
        hold_lock(paths, processes["kubelet"].pid)
    return processes


def signal_matching(paths: NodePaths, names: tuple[str, ...], sig: signal.Signals) -> list[int]:
    """Signal the node's processes whose program is one of `names`; returns their pids."""
    marker = str(paths.root).encode()
    hit = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        program = Path(cmdline.split(b"\0")[0].decode(errors="replace")).name
        if marker in cmdline and program in names:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), sig)
                hit.append(int(entry.name))
    return hit


def stop_processes(paths: NodePaths, names: tuple[str, ...], grace: float) -> None:
    pids = signal_matching(paths, names, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not zombie(pid)]
        time.sleep(0.1)
    signal_matching(paths, names, signal.SIGKILL)


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def remove_cgroups() -> None:
    for top in CGROUP_ROOT.glob(f"*/{CGROUP_NAME}"):
        for directory in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def unmount_under(root: Path) -> None:
    for point in sorted(node_mounts(NodePaths(root.parent)), key=len, reverse=True):
        if point == str(root) or point.startswith(str(root) + "/"):
            run("umount", "-l", point)


def stop(paths: NodePaths, grace: float = 10) -> list[str]:
    """Stop the node and put the host back as the baseline recorded at start. Idempotent.

    Returns what could not be put back (empty when the host is as it was)."""
    if not paths.baseline.exists():
        return []
    baseline = Footprint.load(paths.baseline)
    stop_processes(paths, ("kube-router",), grace)
    remove_engine_rules(baseline)
    stop_processes(paths, ("kubelet", "kube-proxy"), grace)
    # Every container, the Pod sandboxes included, by runc's own record of them.
    runc = shutil.which("runc")
    if runc and paths.runc_root.exists():
        for namespace_root in [paths.runc_root, *paths.runc_root.iterdir()]:
            listed = run(runc, f"--root={namespace_root}", "list", "-q").stdout.split()
            for container in listed:
                run(runc, f"--root={namespace_root}", "delete", "--force", container)
    stop_processes(paths, ("containerd",), grace)
    stop_processes(paths, ("containerd-shim-runc-v2",), grace)
    remove_cgroups_created(baseline)
    unmount_under(paths.root)
    if BRIDGE not in baseline.links:
        run("ip", "link", "delete", BRIDGE)
    for table in ("ip kube-proxy", "ip6 kube-proxy"):
        if f"table {table}" not in baseline.nft_tables:
            run("nft", "delete", "table", *table.split())
    for name, value in baseline.sysctls.items():
        if read_sysctl(name) != value:
            with contextlib.suppress(OSError):
                Path("/proc/sys", *name.split(".")).write_text(value)
    for result in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*"):
        result.unlink()
    for path in OUTSIDE_PATHS:
        mounted = any(m == path or m.startswith(path + "/") for m in node_mounts(paths))
        if path not in baseline.paths and os.path.lexists(path) and not mounted:
            shutil.rmtree(path, ignore_errors=True)
    if not node_mounts_under(paths):
        shutil.rmtree(paths.root, ignore_errors=True)
    left = baseline.differences(footprint(paths))
    release_lock(paths)
    if not left:
        paths.baseline.unlink()
    return left


def remove_cgroups_created(baseline: Footprint) -> None:
    if not any(Path(c).name == CGROUP_NAME for c in baseline.cgroups):
        remove_cgroups()


def node_mounts_under(paths: NodePaths) -> list[str]:
    root = str(paths.root)
    return [m for m in node_mounts(paths) if m == root or m.startswith(root + "/")]


# --- the NetworkPolicy engine: kube-router's firewall, nothing else of it ------------------------

# The API server's --service-cluster-ip-range: traffic to a Service address is judged after
# kube-proxy has translated it, so kube-router only needs to know the range to let it through.
SERVICE_CIDR = "10.0.0.0/16"
# iptables through nf_tables, whatever the machine's alternative says: kube-proxy's rules are
# nftables too, so the node's whole ruleset is one (`nft list ruleset`) and one footprint reads it.
IPTABLES_NFT = {
    "iptables": "iptables-nft",
    "iptables-save": "iptables-nft-save",
    "iptables-restore": "iptables-nft-restore",
}
# The table iptables-nft creates for kube-router's filter rules when the host has none.
ENGINE_TABLES = ("table ip filter",)
# Chains and ipsets kube-router's network policy controller names (pkg/controllers/netpol).
ENGINE_CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
ENGINE_IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "kube-router-")
BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT")
ENGINE_START_TIMEOUT = 60


def kube_router_args(paths: NodePaths, node: str) -> list[str]:
    return [
        f"--kubeconfig={paths.root / 'kube-router.kubeconfig'}",
        f"--hostname-override={node}",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--enable-ipv4=true",
        "--enable-ipv6=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Its health server would listen on every interface; the node watches its rules instead.
        "--health-port=0",
        "--metrics-port=0",
    ]


def engine_jumps(saved: str) -> list[str]:
    """The rules of the built-in filter chains that hand packets to kube-router's chains."""
    return sorted(
        line
        for line in saved.splitlines()
        if line.split()[:2] in (["-A", chain] for chain in BUILTIN_CHAINS)
        and any(f"-j {prefix}" in line for prefix in ENGINE_CHAIN_PREFIXES)
    )


def engine_chains(saved: str) -> list[str]:
    """kube-router's own chains, as `iptables-save -t filter` declares them (":NAME - [0:0]")."""
    names = (line[1:].split()[0] for line in saved.splitlines() if line.startswith(":"))
    return sorted(name for name in names if name.startswith(ENGINE_CHAIN_PREFIXES))


def engine_ipsets(listed: str) -> list[str]:
    return sorted(name for name in listed.split() if name.startswith(ENGINE_IPSET_PREFIXES))


def engine_cleanup(saved: str, ipsets: list[str]) -> list[list[str]]:
    """The commands that take kube-router's rules, chains and sets off the host: the jumps first,
    then every chain emptied before any is deleted (they jump to each other), then the sets
    (a set cannot go while a rule matches on it)."""
    commands = [
        ["iptables", "-t", "filter", "-D", *shlex.split(line)[1:]] for line in engine_jumps(saved)
    ]
    chains = engine_chains(saved)
    commands += [["iptables", "-t", "filter", "-F", chain] for chain in chains]
    commands += [["iptables", "-t", "filter", "-X", chain] for chain in chains]
    commands += [["ipset", "destroy", name] for name in ipsets]
    return commands


def iptables_save() -> str:
    if shutil.which(IPTABLES_NFT["iptables-save"]) is None:
        return ""  # not installed yet: then nothing of the engine's is on the host either
    return run(IPTABLES_NFT["iptables-save"], "-t", "filter").stdout


def ipset_names() -> str:
    return run("ipset", "list", "-n").stdout if shutil.which("ipset") else ""


def write_engine_files(paths: NodePaths) -> None:
    """kube-router's kubeconfig under the node's dir (so `stop` finds its process by that path)
    and the iptables-nft links it runs as `iptables`."""
    shutil.copyfile(paths.state / "kube-router.kubeconfig", paths.root / "kube-router.kubeconfig")
    links = paths.root / "engine-bin"
    links.mkdir(exist_ok=True)
    for name, target in IPTABLES_NFT.items():
        found = shutil.which(target)
        if found is None:
            raise NodeUnavailable(f"{target} is missing (Debian package iptables)")
        (links / name).unlink(missing_ok=True)
        (links / name).symlink_to(found)


def ensure_kube_router(cache: Path, log: Callable[[str], None]) -> Path:
    """kube-router's binary, built once from the proxy."""
    key = hashlib.sha256(KUBE_ROUTER_VERSION.encode()).hexdigest()[:16]
    package = f"{KUBE_ROUTER_MODULE}/cmd/kube-router@{KUBE_ROUTER_VERSION}"
    try:
        # Minutes of compiling: leave the cores to what else runs.
        target = ensure_built(
            cache / f"kube-router-{key}", [package], "kube-router", log, ["-ldflags", "-s -w"], 10
        )
    except GoInstallFailed as error:
        raise NodeUnavailable(f"kube-router {KUBE_ROUTER_VERSION} did not build: {error}") from None
    return target / "kube-router"


def start_engine(
    paths: NodePaths, cache: Path, launch: Launch, log: Callable[[str], None]
) -> subprocess.Popen[bytes]:
    """Start kube-router's network policy controller once the Node exists (it reads its own Node
    at start and exits without it) and wait for its first sync: its jumps in the built-in chains
    and its default policy chain. Raises NodeUnavailable with one line saying why not."""
    binary = ensure_kube_router(cache, log)
    started = time.monotonic()
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {"PATH": f"{paths.root / 'engine-bin'}:{system_path}"}
    process = launch("kube-router", [str(binary), *kube_router_args(paths, node_name())], env)

    def synced() -> bool:
        if process.poll() is not None:
            raise NodeUnavailable(
                f"kube-router exited with {process.returncode}; see {paths.log('kube-router')}"
            )
        saved = iptables_save()
        return len(engine_jumps(saved)) == len(BUILTIN_CHAINS) and "KUBE-NWPLCY-DEFAULT" in (
            engine_chains(saved)
        )

    wait_until("kube-router's first sync", synced, ENGINE_START_TIMEOUT, paths.log("kube-router"))
    took = time.monotonic() - started
    log(f"NetworkPolicy engine (kube-router {KUBE_ROUTER_VERSION}) synced in {took:.1f} s")
    return process


def remove_engine_rules(baseline: Footprint) -> None:
    """What kube-router leaves when stopped (it keeps its rules on exit, so that Pods stay
    protected across a restart), and the filter table if only it needed one."""
    commands = engine_cleanup(iptables_save(), engine_ipsets(ipset_names()))
    for command in commands:
        if command[0] == "iptables":
            command = [IPTABLES_NFT["iptables"], *command[1:]]
        run(*command)
    saved = iptables_save()
    no_rules = not any(line.startswith("-A ") for line in saved.splitlines())
    if "table ip filter" not in baseline.nft_tables and no_rules and saved:
        run("nft", "delete", "table", "ip", "filter")
