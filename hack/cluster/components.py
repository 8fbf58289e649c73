"""The control plane's processes: their command lines, how each starts in the cluster's process
group, how it is waited for, and how a dead one is started again."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from state import HERE, Cluster, ClusterError, Ports, adopt, any_group_alive

NODE_NAME = "kwok-node-0"


COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def free_ports(count: int) -> list[int]:
    """Free loopback ports below the kernel's ephemeral range: a component restarted on its port
    (the chaos tests) must not find it taken by some client connection's source port."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    for port in random.sample(range(10_000, low), k=low - 10_000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports between 10000 and {low}")


def component_args(component: str, state: Path, ports: Ports) -> list[str]:
    pki = state / "pki"
    apiserver = f"https://127.0.0.1:{ports.apiserver}"
    if component == "etcd":
        return [
            f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ports.etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{ports.etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{ports.etcd_peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
    if component == "kube-apiserver":
        return [
            f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={state / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            # PodNodeSelector and PodTolerationRestriction: a namespace's annotations send its
            # Pods to the real node (realnode.placement).
            "--enable-admission-plugins=NodeRestriction,PodSecurity,ServiceAccount,"
            "PodNodeSelector,PodTolerationRestriction",
            # The API server's identity towards the kubelet (logs, exec, port-forward).
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            # Room for one Service per release well past the 300 of `make bench-operator` (a /24
            # holds 253: the 254th release's Service never gets a ClusterIP).
            "--service-cluster-ip-range=10.0.0.0/16",
            f"--service-account-issuer={apiserver}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--allow-privileged=true",
            # The apiserver would publish 127.0.0.1 as the `kubernetes` Service endpoint, which
            # endpoint validation rejects; nothing in the cluster dials it (kwokctl does the same).
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            # Who wrote what: tests and benchmarks count the operator's writes by user agent.
            f"--audit-policy-file={HERE / 'audit-policy.yaml'}",
            f"--audit-log-path={state / 'logs' / 'audit.log'}",
            "--audit-log-format=json",
            # Never rotate mid-measurement (the default rotates at 100 MB, which a 300-release
            # benchmark reaches, and a rotated log reads as "no writes").
            "--audit-log-maxsize=4096",
        ]
    if component in ("kube-controller-manager", "kube-scheduler"):
        short = "controller-manager" if component == "kube-controller-manager" else "scheduler"
        kubeconfig = state / f"{short}.kubeconfig"
        port = ports.controller_manager if short == "controller-manager" else ports.scheduler
        args = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            # The default client limits (20 QPS for the controller-manager) would make the
            # controllers, not what is under test, the bottleneck when hundreds of Deployments
            # roll out at once (kwokctl raises them for the same reason).
            "--kube-api-qps=500",
            "--kube-api-burst=1000",
        ]
        if short == "controller-manager":
            args += [
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=true",
                "--cluster-name=testapp-local",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
            ]
        return args
    if component == "kwok":
        return [
            f"--kubeconfig={state / 'kwok.kubeconfig'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.0.0.0/16",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{ports.kwok}",
            f"--config={HERE / 'stages.yaml'}",
        ]
    raise ValueError(component)


def preexec_join(pgid: int | None, die_with_parent: bool) -> Callable[[], None]:
    def join() -> None:
        try:
            os.setpgid(0, pgid or 0)
        except PermissionError:
            # The group belongs to another session (a restart from a later `make`): a group of
            # its own, which the caller records (adopt).
            os.setpgid(0, 0)
        if die_with_parent:
            # PR_SET_PDEATHSIG: an interrupted or killed test run takes the cluster with it
            # (SIGKILL: nobody is left to wait for a graceful shutdown).
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

    return join


def start(
    binary: Path, component: str, state: Path, ports: Ports, pgid: int | None, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    log = (state / "logs" / f"{component}.log").open("ab")
    return subprocess.Popen(
        [component, *component_args(component, state, ports)],
        executable=binary,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=state,
        preexec_fn=preexec_join(pgid, die_with_parent),
    )


def admin_context(state: Path) -> ssl.SSLContext:
    pki = state / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def http(
    url: str,
    context: ssl.SSLContext | None = None,
    method: str = "GET",
    body: dict | None = None,
    timeout: float = 2,
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        kind = "merge-patch+json" if method == "PATCH" else "json"
        request.add_header("Content-Type", f"application/{kind}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_for(
    what: str,
    check: Callable[[], bool],
    deadline: float,
    processes: dict[str, subprocess.Popen[bytes]],
    component: str,
    state: Path,
) -> None:
    log_file = state / "logs" / f"{component}.log"
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                tail = (state / "logs" / f"{name}.log").read_text(errors="replace")[-1500:]
                raise ClusterError(
                    f"{name} exited with code {process.returncode} while waiting for {what}; "
                    f"log: {state / 'logs' / f'{name}.log'}\n{tail}"
                )
        if check():
            return
        time.sleep(0.2)
    raise ClusterError(f"timed out waiting for {what} ({component}); see its log: {log_file}")


def node_manifest() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "2000"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "2000"},
        },
    }


def is_healthy(cluster: Cluster) -> bool:
    state = Path(cluster.state_dir)
    if not any_group_alive(cluster):
        return False
    status, _ = http(f"{cluster.server}/readyz", admin_context(state))
    return status == 200


def listens_on(component: str, ports: Ports) -> tuple[int, ...]:
    return {
        "etcd": (ports.etcd_client, ports.etcd_peer),
        "kube-apiserver": (ports.apiserver,),
        "kube-controller-manager": (ports.controller_manager,),
        "kube-scheduler": (ports.scheduler,),
        "kwok": (ports.kwok,),
    }[component]


def can_listen(port: int) -> bool:
    """Whether a server could listen on the loopback port now (with SO_REUSEADDR, as Go's
    listeners do: only another listener, not a closing connection, stands in the way)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def restart(
    cluster: Cluster, component: str, die_with_parent: bool = False, timeout: float = 30
) -> tuple[Cluster, subprocess.Popen[bytes]]:
    """Start one dead component again with its arguments, in the cluster's process group where
    it can join it, once its ports are free (a dead server's threads may hold them briefly)."""
    deadline = time.monotonic() + timeout
    for port in listens_on(component, cluster.ports):
        while not can_listen(port):
            if time.monotonic() > deadline:
                raise ClusterError(f"{component}: port {port} is still taken by another process")
            time.sleep(0.2)
    state = Path(cluster.state_dir)
    process = start(
        Path(cluster.binary), component, state, cluster.ports, cluster.pgid, die_with_parent
    )
    return adopt(cluster, process), process


def node_ready(server: str, admin: ssl.SSLContext, name: str = NODE_NAME) -> bool:
    status, body = http(f"{server}/api/v1/nodes/{name}", admin)
    if status != 200:
        return False
    conditions = json.loads(body).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
