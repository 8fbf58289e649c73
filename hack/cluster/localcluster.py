"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
(a fake kubelet) built from the official Go modules and started on loopback, plus a real node
(containerd, kubelet, kube-proxy; see realnode.py) where the machine allows one.

    python hack/cluster/localcluster.py up|down|status|env|kubeconfig|build|operator

`up` builds the multi-call binary once into ~/.cache/testapp/cluster-<hash>/ (keyed by the Go
module's files, so every clone on this machine shares it), writes certificates and a kubeconfig
under .cluster/ in the work tree, starts every component in one process group, and waits for them
in order. An image registry on loopback runs in the same group (`env` prints its address).
`operator` runs the operator in the background in the same group. `down` stops the group. The
pytest fixture in tests/conftest.py uses the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# realnode.py, goinstall.py and appimages.py sit beside this file, which runs as a script or is
# loaded by path; hosttools.py (the host programs) one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import realnode
from goinstall import GoInstallFailed, build_lock, go_install

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE_DIR = Path(os.environ.get("TESTAPP_CLUSTER_DIR", REPO / ".cluster"))
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "testapp"
KUBERNETES_VERSION = "v1.36.3"
NODE_NAME = "kwok-node-0"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Files whose content decides the binary; their hash names the cache directory.
BUILD_INPUTS = ("go.mod", "go.sum", "cmd/kube/main.go")


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

    @property
    def all_groups(self) -> tuple[int, ...]:
        return (self.pgid, *self.groups)

    @property
    def kubeconfig(self) -> str:
        return str(Path(self.state_dir) / "kubeconfig")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"


# --- build --------------------------------------------------------------------------------------


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


# --- loopback registry --------------------------------------------------------------------------
# go-containerregistry's registry (`crane registry serve`): `make push` puts images there for the
# cluster's nodes to pull. It keeps manifests in memory: its images live as long as the cluster.
CRANE_PACKAGE = "github.com/google/go-containerregistry/cmd/crane"
CRANE_VERSION = "v0.22.1"


def ensure_crane(log: Callable[[str], None] = print) -> Path:
    """Return the cached crane binary, building it from the Go module proxy if missing."""
    target_dir = CACHE_DIR / f"crane-{CRANE_VERSION}"
    binary = target_dir / "crane"
    if binary.exists():
        return binary
    log(f"Building crane {CRANE_VERSION} (the loopback registry) into {target_dir}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        go_install(target_dir, [f"{CRANE_PACKAGE}@{CRANE_VERSION}"])
    except GoInstallFailed as error:
        raise ClusterError(f"the loopback registry (crane {CRANE_VERSION}): {error}") from None
    return binary


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


# --- certificates -------------------------------------------------------------------------------


def write_pki(pki: Path) -> None:
    """CA, apiserver serving cert, client certs per component, service-account key pair.

    Kept across restarts: generating RSA keys is the slow part of a warm start.
    """
    if not (pki / "done").exists():
        write_ca_and_keys(pki)
    # Issued when missing, so a state dir from before the real node gains them.
    for file, common, org in CLIENT_CERTS:
        if not (pki / f"{file}.crt").exists():
            issue_cert(pki, file, common, org)


# file, common name (the user), organization (the group) of each client certificate.
CLIENT_CERTS = (
    ("admin", "admin", "system:masters"),
    ("controller-manager", "system:kube-controller-manager", None),
    ("scheduler", "system:kube-scheduler", None),
    ("kwok", "kwok", "system:masters"),
    ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
    ("node", f"system:node:{realnode.node_name()}", "system:nodes"),
    ("kube-proxy", "system:kube-proxy", None),
    # The NetworkPolicy engine reads every Pod, Namespace and NetworkPolicy (realnode.py).
    ("kube-router", "system:kube-router", "system:masters"),
)


def x509_name(common: str, org: str | None = None):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def save_key(key, path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def write_ca_and_keys(pki: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(x509_name("testapp-local-ca"))
        .issuer_name(x509_name("testapp-local-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    save_key(ca_key, pki / "ca.key")
    (pki / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    issue_cert(pki, "apiserver", "kube-apiserver", None, server=True)
    # Service-account tokens are signed with RSA (the apiserver's default algorithm).
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    save_key(sa_key, pki / "sa.key")
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (pki / "done").touch()


def issue_cert(pki: Path, file: str, common: str, org: str | None, server: bool = False) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509_name(common, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    save_key(key, pki / f"{file}.key")
    (pki / f"{file}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "testapp-local",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "testapp-local", "context": {"cluster": "testapp-local", "user": user}}
        ],
        "current-context": "testapp-local",
    }
    # JSON is valid YAML, and every kubeconfig reader accepts it.
    path.write_text(json.dumps(config, indent=2))


# --- processes ----------------------------------------------------------------------------------


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


# --- readiness ----------------------------------------------------------------------------------


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


# --- lifecycle ----------------------------------------------------------------------------------


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


def is_healthy(cluster: Cluster) -> bool:
    state = Path(cluster.state_dir)
    if not any_group_alive(cluster):
        return False
    status, _ = http(f"{cluster.server}/readyz", admin_context(state))
    return status == 200


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
        return running
    if running:
        log("The local control plane is not running any more: starting it afresh")
        down(state)
    binary = ensure_binary(log)
    ensure_crane(log)
    started = time.monotonic()
    deadline = started + timeout
    for stale in ("etcd", "logs", "apiserver-certs"):
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
    return cluster


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
    return True


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
        return start_real_node(cluster, die_with_parent, log)
    if restarted:
        log(f"{' and '.join(restarted)} of the real node were not running: starting them again")
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
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "testapp_operator",
            "--standalone",
            f"--metrics-port={metrics_port}",
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


def node_ready(server: str, admin: ssl.SSLContext, name: str = NODE_NAME) -> bool:
    status, body = http(f"{server}/api/v1/nodes/{name}", admin)
    if status != 200:
        return False
    conditions = json.loads(body).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


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


def rss_mb(cluster: Cluster) -> dict[str, float]:
    """Resident memory of each component, in MiB (from /proc)."""
    sizes: dict[str, float] = {}
    for component, pid in component_pids(cluster).items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[component] = int(line.split()[1]) / 1024
    return sizes


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
