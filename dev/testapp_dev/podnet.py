"""Real TCP between Pods of the real node, for the NetworkPolicy tests (tests/node/): probe Pods
that listen and dial from inside the cluster's network, and the two host ends a Pod may dial:
the API server (relayed from the node's bridge, as a cluster's `kubernetes` Service reaches it)
and a plain listener standing for "anything else".

Only addresses of the node's own bridge are listened on or dialled: Pod traffic stays on the
machine.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testapp_dev.cluster import LiveCluster, localcluster
from testapp_dev.releases import unique
from testapp_dev.waits import wait_until

realnode = localcluster.realnode

PROBE_PORT = 8080
# The gateway the CNI bridge gives itself: the first address of the Pod subnet.
BRIDGE_ADDRESS = realnode.POD_SUBNET.split("/")[0].rsplit(".", 1)[0] + ".1"
# The port the operator's egress policy opens for the API server (k8s/operator/networkpolicy.yaml).
APISERVER_PORT_FOR_PODS = 6443
# Exits NOT_CONNECTED when the connection is refused or dropped, so that no other failure
# (kubectl's own, a missing Pod) can pass for a refusal.
NOT_CONNECTED = 3
DIAL = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
    "except OSError as error:\n"
    "    print(f'{type(error).__name__}: {error}', file=sys.stderr)\n"
    f"    sys.exit({NOT_CONNECTED})\n"
)
RESTRICTED = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    ip: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number
    container: str = "probe"


class ProbePods:
    """Namespaces on the real node, each with one Pod of the app's image that listens on
    PROBE_PORT (a plain HTTP file server) and can dial out with `dial`."""

    def __init__(self, cluster: LiveCluster, image: str) -> None:
        self.cluster = cluster
        self.image = image
        self.namespaces: list[str] = []

    def namespace(self, prefix: str, labels: Mapping[str, str] | None = None) -> str:
        name = unique(prefix)
        running = localcluster.read_state(Path(self.cluster.state_dir))
        assert running is not None
        localcluster.place_on_real_node(running, name)
        self.namespaces.append(name)
        if labels:
            pairs = [f"{k}={v}" for k, v in labels.items()]
            self.cluster.kubectl("label", "namespace", name, "--overwrite", *pairs)
        return name

    def start(self, namespace: str, labels: Mapping[str, str] | None = None) -> str:
        name = unique("probe")
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": {
                "securityContext": RESTRICTED["securityContext"],
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "probe",
                        "image": self.image,
                        "command": ["python", "-m", "http.server", str(PROBE_PORT)],
                        "ports": [{"name": "probe", "containerPort": PROBE_PORT}],
                        "securityContext": RESTRICTED["container"],
                    }
                ],
            },
        }
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
        return name

    def wait(self, namespace: str, name: str) -> PodRef:
        pod = wait_until(
            lambda: running_pod(self.cluster, namespace, name), timeout=90, what=f"{name} running"
        )
        return pod_ref(pod)

    def delete_all(self) -> None:
        for name in self.namespaces:
            self.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def running_pod(cluster: LiveCluster, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    pod = json.loads(result.stdout)
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if pod["status"].get("podIP") and statuses and all("running" in s["state"] for s in statuses):
        return pod
    return None


def pod_ref(pod: dict[str, Any]) -> PodRef:
    (container, *_) = pod["spec"]["containers"]
    return PodRef(
        namespace=pod["metadata"]["namespace"],
        name=pod["metadata"]["name"],
        ip=pod["status"]["podIP"],
        labels=pod["metadata"].get("labels") or {},
        ports={p["name"]: p["containerPort"] for p in container.get("ports") or [] if "name" in p},
        container=container["name"],
    )


def dial(cluster: LiveCluster, source: PodRef, host: str, port: int, timeout: float = 2) -> bool:
    """Whether a TCP connection from inside `source` to host:port is accepted (real SYN, real
    SYN-ACK); False when refused or dropped."""
    result = cluster.kubectl(
        "exec", "-n", source.namespace, source.name, "-c", source.container, "--",
        "python", "-c", DIAL, host, str(port), str(timeout),
        check=False,
    )  # fmt: skip
    if result.returncode not in (0, NOT_CONNECTED):
        raise AssertionError(f"kubectl exec into {source.name} failed: {result.stderr}")
    return result.returncode == 0


class _Relay:
    """Accepts on `listen` and pipes each connection to `target` (or only accepts)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int] | None) -> None:
        self.target = target
        self.server = socket.create_server(listen)
        self.server.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.target is None:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.server.close()
        self.thread.join(timeout=5)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True)
class HostEnds:
    apiserver: tuple[str, int]  # what a Pod dials for the API server (the `kubernetes` Service)
    elsewhere: tuple[str, int]  # a listener on the host that no policy names


@contextlib.contextmanager
def host_ends(cluster: LiveCluster) -> Iterator[HostEnds]:
    """The API server made reachable from the node's Pods, as any cluster's is: the `kubernetes`
    Service gets an endpoint on the bridge (the API server listens on loopback only and publishes
    no endpoint of its own), relayed to the API server; plus a listener beside it."""
    wait_until(
        lambda: Path(f"/sys/class/net/{realnode.BRIDGE}").exists(),
        timeout=60,
        what=f"the node's bridge {realnode.BRIDGE}",
    )
    apiserver_port = int(cluster.server.rsplit(":", 1)[1])
    relay = _Relay((BRIDGE_ADDRESS, APISERVER_PORT_FOR_PODS), ("127.0.0.1", apiserver_port))
    elsewhere = _Relay((BRIDGE_ADDRESS, 0), None)
    slice_name = "kubernetes-pods"
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [BRIDGE_ADDRESS], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": APISERVER_PORT_FOR_PODS, "protocol": "TCP"}],
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(endpoints))
    service = cluster.get("service", "kubernetes", "-n", "default")
    try:
        yield HostEnds(
            apiserver=(service["spec"]["clusterIP"], service["spec"]["ports"][0]["port"]),
            elsewhere=(BRIDGE_ADDRESS, elsewhere.server.getsockname()[1]),
        )
    finally:
        cluster.kubectl("delete", "endpointslice", slice_name, "-n", "default", check=False)
        relay.close()
        elsewhere.close()
