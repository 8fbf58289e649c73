"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
(a fake kubelet) built from the official Go modules and started on loopback, plus a real node
(containerd, kubelet, kube-proxy; see realnode.py) where the machine allows one.

    python hack/cluster/localcluster.py up|down|status|env|kubeconfig|build|operator|node|place

`up` builds the multi-call binary once into ~/.cache/testapp/cluster-<hash>/ (keyed by the Go
module's files, so every clone on this machine shares it), writes certificates and a kubeconfig
under .cluster/ in the work tree, starts every component in one process group, and waits for them
in order; on a running cluster it starts again exactly what died. An image registry on loopback
runs in the same group (`env` prints its address). `operator` runs the operator in the background
in the same group. With the real node, a Prometheus on loopback (clusterprometheus.py; `env`
prints TESTAPP_PROMETHEUS_URL, the operator gets it as --prometheus). `down` stops the group.
The pytest fixture in tests/conftest.py uses the same functions.

This file is the lifecycle and the command line; beside it, one module per concern:
kubebuild.py (the binary), pki.py (certificates, kubeconfigs), components.py (each component's
command line, start, readiness, restart), imageregistry.py (the loopback registry), state.py
(state.json, process groups, what runs), realnode.py (the real node), goinstall.py (Go builds).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# The other parts of the launcher sit beside this file, which runs as a script or is loaded by
# path; hosttools.py (the host programs) one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import clusterprometheus
import prometheus
import realnode
from components import (
    COMPONENTS,
    NODE_NAME,
    admin_context,
    free_ports,
    http,
    is_healthy,
    node_manifest,
    node_ready,
    preexec_join,
    restart,
    start,
    wait_for,
)
from imageregistry import (
    ensure_crane,
    ensure_registry,
    registry_address,
    registry_answers,
    start_registry,
)
from kubebuild import ensure_binary
from pki import write_kubeconfig, write_pki
from state import (
    CACHE_DIR,
    STATE_DIR,
    Cluster,
    ClusterError,
    Ports,
    adopt,
    any_group_alive,
    component_pids,
    read_state,
    rss_mb,
    write_state,
)


def repair(cluster: Cluster, log: Callable[[str], None], timeout: float = 120) -> Cluster:
    """Start every dead component of a running cluster again, in dependency order, and wait for
    each to serve; says which were dead. The registry is started if it does not answer."""
    state = Path(cluster.state_dir)
    alive = component_pids(cluster)
    deadline = time.monotonic() + timeout
    processes: dict[str, subprocess.Popen[bytes]] = {}
    server = cluster.server
    for component in COMPONENTS:
        if component in alive:
            continue
        log(f"{component} was not running: starting it again")
        cluster, processes[component] = restart(cluster, component)
        if component == "etcd":
            etcd_health = f"http://127.0.0.1:{cluster.ports.etcd_client}/health"
            check = lambda url=etcd_health: http(url)[0] == 200  # noqa: E731
        elif component == "kube-apiserver":
            check = lambda: http(f"{server}/readyz", admin_context(state))[0] == 200  # noqa: E731
        else:
            continue
        wait_for(f"{component} to serve again", check, deadline, processes, component, state)
    wait_for(
        "kube-apiserver /readyz",
        lambda: http(f"{server}/readyz", admin_context(state))[0] == 200,
        deadline,
        processes,
        "kube-apiserver",
        state,
    )
    address = registry_address(state)
    if not (address and registry_answers(address)):
        log("The loopback registry was not answering: starting it again")
        ensure_registry(state, log)
    elif not processes:
        log(f"Local control plane running at {server}: every component answers")
    return read_state(state) or cluster


def up(
    state: Path = STATE_DIR,
    die_with_parent: bool = False,
    log: Callable[[str], None] = print,
    timeout: float = 120,
    real_node: bool = False,
) -> Cluster:
    """Start the cluster, or repair the running one: every component found dead is started again
    (saying which), nothing is trusted. Idempotent. With `real_node`, also the real node (or,
    where it cannot run, a line saying why: the cluster then has kwok only)."""
    running = read_state(state)
    if running and any_group_alive(running):
        running = repair(running, log, timeout)
        if real_node:
            repair_real_node(running, die_with_parent, log)
        return read_state(state) or running
    if running:
        log("The local control plane is not running any more: starting it afresh")
        down(state)
    binary = ensure_binary(log)
    ensure_crane(log)
    started = time.monotonic()
    deadline = started + timeout
    for stale in ("etcd", "logs", "apiserver-certs", "prometheus"):
        shutil.rmtree(state / stale, ignore_errors=True)
    (state / "logs").mkdir(parents=True)
    write_pki(state / "pki")
    ports = Ports(*free_ports(6))
    server = f"https://127.0.0.1:{ports.apiserver}"
    for user in (
        "admin",
        "controller-manager",
        "scheduler",
        "kwok",
        "node",
        "kube-proxy",
        "kube-router",
    ):
        target = state / ("kubeconfig" if user == "admin" else f"{user}.kubeconfig")
        write_kubeconfig(target, server, state / "pki", user)

    processes: dict[str, subprocess.Popen[bytes]] = {}
    processes["etcd"] = start(binary, "etcd", state, ports, None, die_with_parent)
    pgid = processes["etcd"].pid
    cluster = Cluster(pgid=pgid, ports=ports, binary=str(binary), state_dir=str(state))
    write_state(cluster)
    try:
        etcd_health = f"http://127.0.0.1:{ports.etcd_client}/health"
        wait_for(
            "etcd /health", lambda: http(etcd_health)[0] == 200, deadline, processes, "etcd", state
        )
        processes["kube-apiserver"] = start(
            binary, "kube-apiserver", state, ports, pgid, die_with_parent
        )
        admin = admin_context(state)
        wait_for(
            "kube-apiserver /readyz",
            lambda: http(f"{server}/readyz", admin)[0] == 200,
            deadline,
            processes,
            "kube-apiserver",
            state,
        )
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            processes[component] = start(binary, component, state, ports, pgid, die_with_parent)
        processes["registry"] = start_registry(state, pgid, die_with_parent, log)
        http(f"{server}/api/v1/nodes", admin, "POST", node_manifest())
        default_sa = f"{server}/api/v1/namespaces/default/serviceaccounts/default"
        wait_for(
            "the default ServiceAccount",
            lambda: http(default_sa, admin)[0] == 200,
            deadline,
            processes,
            "kube-controller-manager",
            state,
        )
        wait_for(
            f"Node {NODE_NAME} Ready",
            lambda: node_ready(server, admin),
            deadline,
            processes,
            "kwok",
            state,
        )
        registry = registry_address(state)
        assert registry is not None
        wait_for(
            "the registry /v2/",
            lambda: registry_answers(registry),
            deadline,
            processes,
            "registry",
            state,
        )
    except BaseException:
        down(state)
        raise
    log(f"Local control plane ready in {time.monotonic() - started:.1f} s: {server}")
    if real_node:
        start_real_node(cluster, die_with_parent, log)
    return read_state(state) or cluster


NODE_READY_TIMEOUT = 120


def node_launcher(cluster: Cluster, die_with_parent: bool) -> realnode.Launch:
    """How realnode starts its processes: logging beside the control plane's, in its group."""
    state = Path(cluster.state_dir)

    def launch(
        component: str, argv: list[str], env: dict[str, str] | None
    ) -> subprocess.Popen[bytes]:
        output = (state / "logs" / f"{component}.log").open("ab")
        process = subprocess.Popen(
            [component, *argv[1:]],
            executable=argv[0],
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=state,
            preexec_fn=preexec_join(cluster.pgid, die_with_parent),
        )
        adopt(read_state(state) or cluster, process)
        return process

    return launch


def wait_node_ready(
    cluster: Cluster, processes: dict[str, subprocess.Popen[bytes]], started: float
) -> None:
    state = Path(cluster.state_dir)
    wait_for(
        f"the real node {realnode.node_name()} Ready",
        lambda: node_ready(cluster.server, admin_context(state), realnode.node_name()),
        started + NODE_READY_TIMEOUT,
        processes,
        "kubelet" if "kubelet" in processes else next(iter(processes), "kubelet"),
        state,
    )


def start_real_node(cluster: Cluster, die_with_parent: bool, log: Callable[[str], None]) -> bool:
    """Start the real node and wait for it to be Ready; on failure put the host back, record the
    reason (real_node_unavailable) and carry on with kwok only. Returns whether it runs."""
    state = Path(cluster.state_dir)
    paths = realnode.NodePaths(state)
    started = time.monotonic()
    launch = node_launcher(cluster, die_with_parent)
    try:
        ports = realnode.NodePorts(*free_ports(5))
        processes = realnode.start(paths, Path(cluster.binary), CACHE_DIR, ports, launch, log)
        wait_node_ready(cluster, processes, started)
        # Once the Node exists: the engine reads it at start.
        processes["kube-router"] = realnode.start_engine(paths, CACHE_DIR, launch, log)
    except (realnode.NodeUnavailable, ClusterError) as error:
        reason = str(error).splitlines()[0]
        realnode.stop(paths)
        paths.unavailable.write_text(reason + "\n")
        log(f"Real node not started, Pods run on kwok only: {reason}")
        return False
    paths.unavailable.unlink(missing_ok=True)
    log(f"Real node {realnode.node_name()} Ready in {time.monotonic() - started:.1f} s")
    ensure_prometheus(cluster, die_with_parent, log)
    return True


def ensure_prometheus(cluster: Cluster, die_with_parent: bool, log: Callable[[str], None]) -> None:
    """The Prometheus of a cluster with the real node: started (again, on the address recorded)
    unless it answers; where it cannot start, one line says why and the node runs without it."""
    cluster = read_state(Path(cluster.state_dir)) or cluster
    if cluster.prometheus and clusterprometheus.running(cluster):
        return
    if cluster.prometheus:
        log("Prometheus was not running: starting it again")
    try:
        clusterprometheus.start(cluster, realnode.node_name(), die_with_parent, log)
    except (prometheus.PrometheusUnavailable, ClusterError) as error:
        log(f"Prometheus not started, canary analyses get no answer: {error}")


def repair_real_node(cluster: Cluster, die_with_parent: bool, log: Callable[[str], None]) -> bool:
    """The real node of a running cluster: its dead kubelet, kube-proxy or kube-router started
    again (saying which), or the whole node started afresh when containerd died or it never ran
    here."""
    paths = realnode.NodePaths(Path(cluster.state_dir))
    started = time.monotonic()
    launch = node_launcher(cluster, die_with_parent)
    restarted = realnode.restart_agents(paths, Path(cluster.binary), CACHE_DIR, launch)
    if restarted is None:
        if node_running(Path(cluster.state_dir)):
            log("containerd of the real node was not running: starting the node afresh")
        elif not realnode.unavailable_reason(paths):
            log("The real node was not running: starting it")
        return start_real_node(cluster, die_with_parent, log)
    if restarted:
        one = len(restarted) == 1
        log(
            f"{' and '.join(restarted)} of the real node {'was' if one else 'were'} not running: "
            f"starting {'it' if one else 'them'} again"
        )
        try:
            wait_node_ready(cluster, restarted, started)
        except ClusterError as error:
            log(f"The real node did not come back ({error}): starting it afresh")
            return start_real_node(cluster, die_with_parent, log)
    if "kube-router" not in realnode.running_components(paths):
        log("kube-router of the real node was not running: starting it again")
        try:
            realnode.start_engine(paths, CACHE_DIR, launch, log)
        except realnode.NodeUnavailable as error:
            log(f"The NetworkPolicy engine did not come back ({error}): starting the node afresh")
            return start_real_node(cluster, die_with_parent, log)
    ensure_prometheus(cluster, die_with_parent, log)
    return True


def place_on_real_node(cluster: Cluster, namespace: str) -> None:
    """Create (or annotate) a namespace so that its Pods go to the real node."""
    admin = admin_context(Path(cluster.state_dir))
    annotations = realnode.placement()
    url = f"{cluster.server}/api/v1/namespaces"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    status, _ = http(
        url, admin, "POST", {**body, "metadata": {**body["metadata"], "annotations": annotations}}
    )
    if status == 409:
        patch = {"metadata": {"annotations": annotations}}
        status, _ = http(f"{url}/{namespace}", admin, "PATCH", patch)
    if status not in (200, 201):
        raise ClusterError(
            f"could not place namespace {namespace} on the real node (HTTP {status})"
        )


def node_running(state: Path = STATE_DIR) -> bool:
    return realnode.lock_owner() == str(state)


def real_node_unavailable(state: Path = STATE_DIR) -> str | None:
    """Why this cluster has no real node (one line), or None when it has one."""
    if node_running(state):
        return None
    try:
        return (realnode.NodePaths(state).unavailable).read_text().strip()
    except OSError:
        return (
            realnode.unavailable_reason(realnode.NodePaths(state))
            or "not started (make cluster-up)"
        )


OPERATOR_METRICS_PORT = 8081


def start_operator(state: Path = STATE_DIR) -> tuple[int, int]:
    """Run the operator in the background, in the cluster's process group (so `down` stops it
    too); returns its pid and metrics port. Idempotent."""
    cluster = read_state(state)
    if cluster is None or not is_healthy(cluster):
        raise ClusterError("the local control plane is not running (make cluster-up)")
    pid_file = state / "operator.pid"
    with contextlib.suppress(OSError, ValueError):
        pid, *port = map(int, pid_file.read_text().split())
        metrics_port = port[0] if port else OPERATOR_METRICS_PORT
        if b"testapp_operator" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid, metrics_port
    if pid_file.exists():
        print("The operator was not running: starting it again", file=sys.stderr)
    # The documented port, unless the operator of another cluster on this machine has it.
    with socket.socket() as probe:
        taken = probe.connect_ex(("127.0.0.1", OPERATOR_METRICS_PORT)) == 0
    metrics_port = free_ports(1)[0] if taken else OPERATOR_METRICS_PORT
    log = (state / "logs" / "operator.log").open("ab")
    # The analyses of canary steps ask the cluster's Prometheus, where it has one.
    analyses = clusterprometheus.url(cluster)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testapp_operator",
            "--standalone",
            f"--metrics-port={metrics_port}",
            *([f"--prometheus={analyses}"] if analyses else []),
        ],
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=preexec_join(cluster.pgid, die_with_parent=False),
    )
    adopt(cluster, process)
    pid_file.write_text(f"{process.pid} {metrics_port}")
    return process.pid, metrics_port


def down(state: Path = STATE_DIR, grace: float = 10) -> None:
    """Stop every component: the real node first (its containers, then the host put back), then
    SIGTERM the process group, then SIGKILL what is left."""
    left = realnode.stop(realnode.NodePaths(state))
    if left:
        print(
            "warning: the real node left on this machine:\n  " + "\n  ".join(left), file=sys.stderr
        )
    cluster = read_state(state)
    if cluster is None:
        return
    for group in cluster.all_groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any_group_alive(cluster) and time.monotonic() < deadline:
        reap_children()
        time.sleep(0.1)
    for group in cluster.all_groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    reap_children()
    (state / "state.json").unlink(missing_ok=True)
    (state / "operator.pid").unlink(missing_ok=True)
    (state / "registry.json").unlink(missing_ok=True)


def reap_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


@contextlib.contextmanager
def running(
    state: Path = STATE_DIR, log: Callable[[str], None] = print, real_node: bool = False
) -> Iterator[Cluster]:
    """A cluster for the duration of the block: reuses one started by `make cluster-up` (and
    leaves it running), otherwise starts one tied to this process and stops it afterwards."""
    existing = read_state(state)
    if existing and is_healthy(existing):
        if real_node and not node_running(state):
            start_real_node(existing, die_with_parent=False, log=log)
        yield existing
        return
    cluster = up(state, die_with_parent=True, log=log, real_node=real_node)
    try:
        yield cluster
    finally:
        down(state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "env", "kubeconfig", "build", "operator", "node", "place"],
        help="node: say whether the real node runs (exit 0) or why not (exit 1); "
        "place NAMESPACE...: create namespaces whose Pods go to the real node",
    )
    parser.add_argument("namespaces", nargs="*", help="for `place`")
    args = parser.parse_args(argv)
    kubeconfig = STATE_DIR / "kubeconfig"
    try:
        if args.command == "build":
            print(ensure_binary())
        elif args.command == "up":
            cluster = up(real_node=True)
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.command == "place":
            cluster = read_state()
            if cluster is None or not is_healthy(cluster):
                raise ClusterError("the local control plane is not running (make cluster-up)")
            for namespace in args.namespaces:
                place_on_real_node(cluster, namespace)
                print(f"namespace/{namespace}: its Pods run on the real node")
        elif args.command == "node":
            reason = real_node_unavailable()
            print(reason or f"real node {realnode.node_name()} running")
            return 1 if reason else 0
        elif args.command == "operator":
            pid, metrics_port = start_operator()
            print(
                f"Operator running (pid {pid}, metrics on 127.0.0.1:{metrics_port}); "
                f"log: {STATE_DIR / 'logs' / 'operator.log'}"
            )
        elif args.command == "down":
            down()
            print("Local control plane stopped.")
        elif args.command == "env":
            print(f"export KUBECONFIG={kubeconfig}")
            if registry := registry_address():
                print(f"export TESTAPP_REGISTRY={registry}")
            if (cluster := read_state()) and (analyses := clusterprometheus.url(cluster)):
                print(f"export TESTAPP_PROMETHEUS_URL={analyses}")
        elif args.command == "kubeconfig":
            print(kubeconfig)
        elif args.command == "status":
            cluster = read_state()
            if cluster is None or not is_healthy(cluster):
                print("Local control plane is not running (make cluster-up).")
                return 1
            print(f"Running at {cluster.server}; KUBECONFIG={cluster.kubeconfig}")
            print(f"Registry at {registry_address() or '(none: make cluster-up starts one)'}")
            reason = real_node_unavailable()
            print(f"Real node: {reason or realnode.node_name() + ' (label testapp.dev/node=real)'}")
            print(f"Prometheus: {clusterprometheus.status_line(cluster)}")
            for component, size in sorted(rss_mb(cluster).items()):
                print(f"  {component:<24} RSS {size:7.1f} MiB")
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except FileNotFoundError as error:
        print(f"error: {missing_program(error)}", file=sys.stderr)
        return 1
    return 0


def missing_program(error: FileNotFoundError) -> str:
    """One line for a program or file that is not there, with what brings it."""
    return (
        f"{error.filename or error}: not found. `make cluster-up` installs the host programs "
        "(hack/host-tools.toml lists them); `make host-tools` installs them all"
    )


if __name__ == "__main__":
    sys.exit(main())
