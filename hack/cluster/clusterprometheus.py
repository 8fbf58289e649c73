"""Prometheus with the cluster: started once the real node is Ready (only its Pods have addresses
that answer a scrape; kwok's do not, so a cluster without the node neither builds nor runs it),
in the cluster's process group (`down` stops it), its address in state.json (`prometheus`), a
dead one started again by `cluster-up` on the same address (the operator was given that URL).

It logs in with a client certificate of its own (`testapp:prometheus`) that may only list and
watch Pods, and scrapes the Pods bound to the real node that ask for it (prometheus.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import prometheus
from components import admin_context, can_listen, free_ports, http, preexec_join
from state import CACHE_DIR, Cluster, ClusterError, adopt, component_pids, read_state, write_state

USER = "testapp:prometheus"
READER = prometheus.reader_rbac(
    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}, "testapp-prometheus"
)
READY_TIMEOUT = 60


def url(cluster: Cluster) -> str | None:
    """http://127.0.0.1:PORT of the cluster's Prometheus, when it has one."""
    return f"http://{cluster.prometheus}" if cluster.prometheus else None


def running(cluster: Cluster) -> bool:
    return "prometheus" in component_pids(cluster) and prometheus.answers_ready(cluster.prometheus)


def grant_reader(cluster: Cluster) -> None:
    state = Path(cluster.state_dir)
    admin = admin_context(state)
    base = f"{cluster.server}/apis/rbac.authorization.k8s.io/v1"
    for manifest in READER:
        kind = "clusterroles" if manifest["kind"] == "ClusterRole" else "clusterrolebindings"
        status, body = http(f"{base}/{kind}", admin, "POST", manifest)
        if status not in (201, 409):
            raise ClusterError(f"{kind}/{manifest['metadata']['name']}: HTTP {status}: {body!r}")


def write_config(cluster: Cluster, node: str) -> Path:
    state = Path(cluster.state_dir)
    pki = state / "pki"
    access = prometheus.KubernetesAccess(
        server=cluster.server,
        ca_file=pki / "ca.crt",
        cert_file=pki / "prometheus.crt",
        key_file=pki / "prometheus.key",
        node_name=node,
    )
    config = state / "prometheus.yml"
    config.write_text(prometheus.prometheus_config(access))
    return config


def start(
    cluster: Cluster, node: str, die_with_parent: bool, log: Callable[[str], None]
) -> Cluster:
    """Start (or start again, on the address recorded) the cluster's Prometheus and wait for it to
    be ready; returns the cluster as recorded. Raises PrometheusUnavailable or ClusterError."""
    state = Path(cluster.state_dir)
    cluster = read_state(state) or cluster
    binary = prometheus.ensure_prometheus(CACHE_DIR, log)
    grant_reader(cluster)
    address = cluster.prometheus or f"127.0.0.1:{free_ports(1)[0]}"
    port = int(address.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while not can_listen(port):  # a dead server's socket may linger a moment
        if time.monotonic() > deadline:
            raise ClusterError(f"prometheus: port {port} is taken by another process")
        time.sleep(0.2)
    started = time.monotonic()
    process: subprocess.Popen[bytes] = prometheus.start(
        binary,
        write_config(cluster, node),
        state / "prometheus",
        address,
        state / "logs" / "prometheus.log",
        preexec_fn=preexec_join(cluster.pgid, die_with_parent),
        ready_timeout=READY_TIMEOUT,
    )
    cluster = adopt(read_state(state) or cluster, process)
    cluster = replace(cluster, prometheus=address)
    write_state(cluster)
    log(f"Prometheus ready in {time.monotonic() - started:.1f} s: http://{address}")
    return cluster


def status_line(cluster: Cluster) -> str:
    if not cluster.prometheus:
        return "(none: it starts with the real node)"
    return f"http://{cluster.prometheus}" + ("" if running(cluster) else " (not answering)")
