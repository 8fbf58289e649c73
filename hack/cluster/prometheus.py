"""A real Prometheus beside the local cluster: the canary analysis asks it for the app's numbers.

    python hack/cluster/prometheus.py build
    python hack/cluster/prometheus.py config --server URL --ca-file PEM (--token-file F |
        --cert-file PEM --key-file PEM) [--node NAME] [--static HOST:PORT ...]

Built once from its Go module (pinned, only the Kubernetes service discovery compiled in) into
~/.cache/testapp/prometheus-<hash>/, like containerd. It runs on the host, on loopback, and
finds the Pods to scrape through the API server (kubernetes_sd_configs, role pod): a Pod is
scraped when it says so with the usual annotations, `prometheus.io/scrape: "true"`, and
optionally `prometheus.io/port` and `prometheus.io/path`. Each series carries the Pod's
namespace, name, release (`app.kubernetes.io/instance`), track (`testapp.dev/track`: stable or
canary) and revision (`testapp.dev/revision`), which the analysis queries select on.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goinstall import GoInstallFailed, ensure_built

PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_VERSION = "v0.316.0"  # the module's tag for Prometheus 3.16.0
# Only the service discoveries the cluster uses: the cloud providers' SDKs stay out of the build.
PROMETHEUS_TAGS = "remove_all_sd enable_kubernetes_sd"
PROMETHEUS_LDFLAGS = (
    "-s -w -X github.com/prometheus/common/version.Version=3.16.0"
    " -X github.com/prometheus/common/version.Branch=v0.316.0"
)
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "testapp"
# Pod labels copied onto every series scraped from the Pod, as (Pod label, series label).
POD_LABELS = (
    ("app.kubernetes.io/instance", "release"),
    ("testapp.dev/track", "track"),
    ("testapp.dev/revision", "revision"),
)


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not be built or started; the message is one line saying why."""


# --- build --------------------------------------------------------------------------------------


def ensure_prometheus(cache: Path, log: Callable[[str], None]) -> Path:
    """The cached prometheus binary, built from the Go module proxy first if missing."""
    key = hashlib.sha256(
        f"{PROMETHEUS_VERSION} {PROMETHEUS_TAGS} {PROMETHEUS_LDFLAGS}".encode()
    ).hexdigest()[:16]
    package = f"{PROMETHEUS_MODULE}/cmd/prometheus@{PROMETHEUS_VERSION}"
    flags = ["-tags", PROMETHEUS_TAGS, "-ldflags", PROMETHEUS_LDFLAGS]
    try:
        target = ensure_built(cache / f"prometheus-{key}", [package], "Prometheus", log, flags, 10)
    except GoInstallFailed as error:
        raise PrometheusUnavailable(
            f"Prometheus {PROMETHEUS_VERSION} did not build: {error}"
        ) from None
    return target / "prometheus"


# --- configuration (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class KubernetesAccess:
    """How Prometheus reaches the API server: its address, the CA that signed it, and either a
    bearer token file or a client certificate."""

    server: str
    ca_file: Path
    token_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # Only Pods bound to this node: the others (kwok's) have addresses nothing answers on.
    node_name: str | None = None

    def __post_init__(self) -> None:
        if not self.server.startswith("https://"):
            raise ValueError(f"server: an https:// URL, not {self.server!r}")
        has_certificate = self.cert_file is not None and self.key_file is not None
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file: both or neither")
        if (self.token_file is not None) == has_certificate:
            raise ValueError("token_file or cert_file + key_file: exactly one way to log in")


@dataclass(frozen=True)
class StaticTarget:
    """An address scraped without discovery, with the labels its series get."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    metrics_path: str = "/metrics"


def meta_label(pod_label: str) -> str:
    """The discovery's name for a Pod label: every character outside [a-zA-Z0-9_] becomes `_`."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in pod_label)
    return f"__meta_kubernetes_pod_label_{safe}"


def pod_scrape_job(kubernetes: KubernetesAccess) -> dict[str, Any]:
    tls: dict[str, str] = {"ca_file": str(kubernetes.ca_file)}
    discovery: dict[str, Any] = {"role": "pod", "api_server": kubernetes.server}
    if kubernetes.token_file is not None:
        discovery["authorization"] = {"credentials_file": str(kubernetes.token_file)}
    else:
        tls |= {"cert_file": str(kubernetes.cert_file), "key_file": str(kubernetes.key_file)}
    discovery["tls_config"] = tls
    if kubernetes.node_name is not None:
        discovery["selectors"] = [{"role": "pod", "field": f"spec.nodeName={kubernetes.node_name}"}]
    annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"
    relabel: list[dict[str, Any]] = [
        {"source_labels": [f"{annotation}scrape"], "regex": "true", "action": "keep"},
        # A Pod that has not started (or has ended) has no address worth scraping.
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
        {
            "source_labels": [f"{annotation}path"],
            "regex": "(.+)",
            "target_label": "__metrics_path__",
        },
        # One target per Pod, not per container port: Prometheus merges identical targets.
        {
            "source_labels": ["__meta_kubernetes_pod_ip", f"{annotation}port"],
            "regex": r"(.+);(\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    relabel += [
        {"source_labels": [meta_label(pod_label)], "target_label": series_label}
        for pod_label, series_label in POD_LABELS
    ]
    return {
        "job_name": "pods",
        "kubernetes_sd_configs": [discovery],
        "relabel_configs": relabel,
    }


def static_scrape_jobs(targets: Sequence[StaticTarget]) -> list[dict[str, Any]]:
    """One job per metrics path (a job has one path), the targets in the order given."""
    paths = list(dict.fromkeys(target.metrics_path for target in targets))
    return [
        {
            "job_name": f"static-{index}" if len(paths) > 1 else "static",
            "metrics_path": path,
            "static_configs": [
                {"targets": [target.address], "labels": dict(target.labels)}
                for target in targets
                if target.metrics_path == path
            ],
        }
        for index, path in enumerate(paths)
    ]


def prometheus_config(
    kubernetes: KubernetesAccess | None = None,
    static: Sequence[StaticTarget] = (),
    scrape_interval_seconds: int = 5,
) -> str:
    """The YAML of prometheus.yml: the Pods the API server lists, and any static targets.

    The interval is short because an analysis step waits for a few scrapes of a fresh canary.
    """
    if scrape_interval_seconds < 1:
        raise ValueError("scrape_interval_seconds: at least 1")
    interval = f"{scrape_interval_seconds}s"
    jobs = ([pod_scrape_job(kubernetes)] if kubernetes is not None else []) + static_scrape_jobs(
        static
    )
    document = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(document, sort_keys=False)


# --- run ----------------------------------------------------------------------------------------


def reader_rbac(subject: dict[str, str], name: str) -> list[dict[str, Any]]:
    """The ClusterRole and binding `name` that let `subject` (a User or a ServiceAccount)
    discover Pods: list and watch them, nothing else. One name per subject: applying a binding
    of the same name for another subject would take the first one's access away."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [subject],
        },
    ]


def free_address() -> str:
    """A loopback host:port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def answers_ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(
    binary: Path,
    config_file: Path,
    data_dir: Path,
    address: str,
    log_file: Path,
    preexec_fn: Callable[[], None] | None = None,
    ready_timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start Prometheus on `address` (loopback) and return once /-/ready answers 200.

    `preexec_fn` lets the caller put it in its process group (localcluster's preexec_join)."""
    if not address.startswith("127."):
        raise ValueError(f"address: loopback only, not {address!r}")
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            "prometheus",  # its name in /proc, which `localcluster.py status` lists
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address={address}",
            # POST /-/reload picks up a rewritten config without a restart.
            "--web.enable-lifecycle",
        ],
        executable=binary,
        stdin=subprocess.DEVNULL,
        stdout=log_file.open("ab"),
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    deadline = time.monotonic() + ready_timeout
    while not answers_ready(address):
        if process.poll() is not None:
            raise PrometheusUnavailable(
                f"prometheus exited with {process.returncode} before it was ready; see {log_file}"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise PrometheusUnavailable(
                f"prometheus was not ready on {address} in {ready_timeout:.0f} s; see {log_file}"
            )
        time.sleep(0.2)
    return process


# --- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or find) the cached binary and print its path")
    config = commands.add_parser("config", help="print prometheus.yml")
    config.add_argument("--server", help="the API server, https://host:port")
    config.add_argument("--ca-file", type=Path)
    config.add_argument("--token-file", type=Path)
    config.add_argument("--cert-file", type=Path)
    config.add_argument("--key-file", type=Path)
    config.add_argument("--node", help="scrape only the Pods on this node")
    config.add_argument("--static", action="append", default=[], metavar="HOST:PORT")
    config.add_argument("--interval", type=int, default=5, help="scrape interval, seconds")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_prometheus(CACHE_DIR, lambda line: print(line, file=sys.stderr)))
            return 0
        kubernetes = None
        if args.server is not None or args.ca_file is not None:
            if args.server is None or args.ca_file is None:
                parser.error("--server and --ca-file go together")
            kubernetes = KubernetesAccess(
                server=args.server,
                ca_file=args.ca_file,
                token_file=args.token_file,
                cert_file=args.cert_file,
                key_file=args.key_file,
                node_name=args.node,
            )
        static = [StaticTarget(address) for address in args.static]
        print(prometheus_config(kubernetes, static, args.interval), end="")
        return 0
    except (PrometheusUnavailable, ValueError) as error:
        print(f"prometheus: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
