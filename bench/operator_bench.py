"""The operator under load, against the local control plane (hack/cluster/localcluster.py).

    .venv/bin/python bench/operator_bench.py --out bench/results.json   (or `make bench-operator`)

Figures (each a median over repeated runs; timings also as ratios against a floor measured in
the same run, because this machine is noisy):
1. change latency: `spec.tag` patched on a release -> its Deployment's Pod template carries the
   new image, seen by a watch; the floor patches the image into a copy of that Deployment
   directly. Both arms patch through the same API client and alternate in rounds; the ratio is
   the median of the per-round p50 ratios. A third arm, bench/bare_controller.py, is the least any
   controller can do (a watch and an image patch of its own copy of that Deployment, nothing
   else); the target is the operator's p50 against it, round by round
   (`change_latency_vs_bare`), the ratio to the direct patch is reported. The audit log splits
   each change into stages (the release write, the hop to the controller, its Deployment write,
   the watch hop back).
2. scale: 300 releases created at once -> all Ready; the operator's API writes per release from
   the API server's audit log (it has the user agent), by verb and resource; events apart.
3. idle: the operator's writes in 120 s with those releases settled.
4. memory: the operator's RSS with those releases.
5. app_vs_falcon_ratio: merged from `make bench-app`'s bench/app.json.
6. zero_downtime: merged from `make bench-rollout`'s bench/rollout.json (the real node).

Uses its own control plane when TESTAPP_CLUSTER_DIR names one (else .cluster/, reused if up).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client.exceptions import ApiException
from testapp_dev import (
    IMAGE,
    OPERATOR_AGENTS,
    AuditLog,
    OperatorProcess,
    localcluster,
    manifest,
    wait_until,
)
from testapp_operator import GROUP, PLURAL, VERSION

ROOT = Path(__file__).resolve().parent.parent
BENCH_LABEL = "bench.testapp.dev/run"
# What a new release needs at least: Namespace, Deployment, Service, two NetworkPolicies,
# ControllerRevision, status.
WRITES_FLOOR = 7
TARGETS = {
    "change_latency_vs_bare": ("<=", 1.25),
    "scale_300_seconds": ("<=", 60),
    "writes_per_new_release": ("<=", 8),
    "idle_writes": ("<=", 0),
    "operator_rss_mb": ("<=", 120),
    "app_vs_falcon_ratio": (">=", 0.8),
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def release_manifest(name: str, tag: str, run: str) -> dict[str, Any]:
    body = manifest(name, tag, replicas=1)
    body["metadata"]["labels"] = {BENCH_LABEL: run}
    return body


class Api:
    """The bench's own API client (its user agent keeps it out of the operator's write count)."""

    def __init__(self, kubeconfig: str) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        self.client = kubernetes.client.ApiClient(configuration)
        self.client.user_agent = "testapp-bench"
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)

    def patch_release(self, name: str, body: dict[str, Any], group: str = GROUP) -> None:
        self.custom.patch_cluster_custom_object(
            group, VERSION, PLURAL, name, body, _content_type="application/merge-patch+json"
        )

    def patch_deployment(self, name: str, body: dict[str, Any]) -> None:
        self.apps.patch_namespaced_deployment(
            name, name, body, _content_type="application/strategic-merge-patch+json"
        )

    def releases(self, run: str) -> list[dict[str, Any]]:
        return self.custom.list_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=f"{BENCH_LABEL}={run}"
        )["items"]


def is_ready(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    return (
        status.get("observedGeneration") == body["metadata"].get("generation")
        and status.get("phase") == "Ready"
    )


# --- 1. change latency --------------------------------------------------------------------------


class DeploymentWatch:
    """Every event of one Deployment, stamped on arrival (a watch, not polling: exact times)."""

    def __init__(self, api: Api, name: str) -> None:
        self.api, self.name = api, name
        self.events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self._watch = kubernetes.watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                for event in self._watch.stream(
                    self.api.apps.list_namespaced_deployment,
                    self.name,
                    field_selector=f"metadata.name={self.name}",
                    timeout_seconds=600,
                ):
                    self.events.put((time.perf_counter(), event["raw_object"]))
            except Exception as error:  # a dropped watch restarts (the thread is a daemon)
                log(f"watch of {self.name} restarted: {error}")

    def drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.events.get_nowait()

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"deployment {self.name}: no matching event in {timeout} s")
            with contextlib.suppress(queue.Empty):
                stamp, body = self.events.get(timeout=remaining)
                if predicate(body):
                    return stamp


def image_of(body: dict[str, Any]) -> str:
    return body["spec"]["template"]["spec"]["containers"][0]["image"]


def rolled_out(body: dict[str, Any]) -> bool:
    spec, status = body["spec"], body.get("status") or {}
    return (
        status.get("observedGeneration") == body["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == spec["replicas"]
        and status.get("readyReplicas", 0) == spec["replicas"]
        and status.get("replicas", 0) == spec["replicas"]
    )


def copy_of(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    """The operator's Deployment, as the floor's and the bare controller's own: the arms differ
    in who writes the change, not in the size of the object written (a Deployment with probes,
    resources and a security context costs the API server more to patch than a bare one)."""
    metadata = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": name, "labels": metadata.get("labels", {})},
        "spec": deployment["spec"],
    }


# A new image for the container `app`, nothing else: what `kubectl set image` sends.
def image_patch(image: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}


BARE_GROUP = "bench.testapp.dev"
BARE_AGENT = "bare-controller"
WRITERS = ("testapp-bench", BARE_AGENT, *OPERATOR_AGENTS)
# Who writes the Deployment after a release patch, per arm.
CONTROLLERS = {"operator": "testapp-operator", "bare": BARE_AGENT}


def latency_stages(
    writes: list[dict[str, Any]], started: float, total: float, controller: str | None
) -> dict[str, float]:
    """Where one change's time went (ms), from the audit log's request timestamps: the client's
    first write (the release patch, or the floor's Deployment patch) arriving and on the API
    server; then, for a controller, from that write's completion until its Deployment write
    arrives (a watch hop and its own work) and that write on the API server; the rest is the
    watch hop to the client and its decoding."""

    def first(agent: str, resource: str) -> tuple[float, float] | None:
        for entry in writes:
            ref = entry.get("objectRef") or {}
            ours = entry["userAgent"].startswith(agent) and not ref.get("subresource")
            if ours and ref.get("resource") == resource:
                return (
                    (audit_time(entry["requestReceivedTimestamp"]) - started) * 1000,
                    (audit_time(entry["stageTimestamp"]) - started) * 1000,
                )
        return None

    stages: dict[str, float] = {}
    if controller is None:
        received, done = first("testapp-bench", "deployments") or (0.0, 0.0)
        stages["deployment_patch"] = done - received
    else:
        received, done = first("testapp-bench", "testappreleases") or (0.0, 0.0)
        written = first(controller, "deployments")
        if written is None:
            return {}
        stages["release_patch"] = done - received
        stages["to_controller_write"] = written[0] - done
        stages["controller_write"] = written[1] - written[0]
        done = written[1]
    stages["client_to_server"] = received
    stages["watch_to_client"] = total - done
    return stages


def audit_time(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def median_stages(stages: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for change in stages for key in change}
    return {
        key: round(statistics.median(change[key] for change in stages if key in change), 1)
        for key in sorted(keys)
    }


@contextlib.contextmanager
def bare_controller(kubeconfig: str) -> Iterator[None]:
    """Our CRD copied under BARE_GROUP (the operator ignores it), and bench/bare_controller.py
    watching it; both gone afterwards."""
    crd = yaml.safe_load((ROOT / "crds" / "testapp.dev_testappreleases.yaml").read_text())
    name = crd["metadata"]["name"] = f"{PLURAL}.{BARE_GROUP}"
    crd["spec"]["group"] = BARE_GROUP
    for field in ("shortNames", "categories"):  # `kubectl get tar` stays unambiguous
        crd["spec"]["names"].pop(field, None)
    install_crd(kubeconfig, name, "-f", "-", input=json.dumps(crd))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_controller.py"), "--group", BARE_GROUP],
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait()
        kubectl(kubeconfig, "delete", f"crd/{name}")


def measure_latency(
    api: Api, audit: AuditLog, run: str, changes: int, rounds: int
) -> dict[str, Any]:
    """Three arms, in turn: the operator (a release patch), the floor (a direct Deployment
    patch) and the bare controller (a release patch the least possible controller acts on)."""
    names = {arm: f"bench-{arm}-{run}" for arm in ("operator", "floor", "bare")}
    api.custom.create_cluster_custom_object(
        GROUP, VERSION, PLURAL, release_manifest(names["operator"], "v0", run)
    )

    def operator_release() -> dict[str, Any]:
        return api.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, names["operator"])

    wait_until(lambda: is_ready(operator_release()), 120, what=f"{names['operator']} Ready")
    made = api.apps.read_namespaced_deployment(names["operator"], names["operator"])
    made = api.client.sanitize_for_serialization(made)
    for arm in ("floor", "bare"):
        api.core.create_namespace({"metadata": {"name": names[arm], "labels": {BENCH_LABEL: run}}})
        api.apps.create_namespaced_deployment(names[arm], copy_of(made, names[arm]))
    bare_release = {**release_manifest(names["bare"], "v0", run), "apiVersion": f"{BARE_GROUP}/v1"}
    api.custom.create_cluster_custom_object(BARE_GROUP, VERSION, PLURAL, bare_release)
    watches = {arm: DeploymentWatch(api, name) for arm, name in names.items()}
    patchers = {
        "operator": lambda tag: api.patch_release(names["operator"], {"spec": {"tag": tag}}),
        "floor": lambda tag: api.patch_deployment(names["floor"], image_patch(f"{IMAGE}:{tag}")),
        "bare": lambda tag: api.patch_release(names["bare"], {"spec": {"tag": tag}}, BARE_GROUP),
    }
    samples: dict[str, list[list[float]]] = {arm: [] for arm in names}
    stages: dict[str, list[dict[str, float]]] = {arm: [] for arm in names}
    per_round = max(1, changes // rounds)
    for round_ in range(rounds):
        # The bare release carries the operator's status (its history), so both weigh the same.
        api.custom.patch_cluster_custom_object_status(
            BARE_GROUP,
            VERSION,
            PLURAL,
            names["bare"],
            {"status": operator_release()["status"]},
            _content_type="application/merge-patch+json",
        )
        # Rotate which arm goes first, so a slow spell of the machine hits all alike.
        order = list(names)[round_ % 3 :] + list(names)[: round_ % 3]
        for arm in order:
            times = []
            for i in range(per_round):
                tag = f"r{round_}-{i}"
                image = f"{IMAGE}:{tag}"
                watches[arm].drain()
                mark = audit.mark()
                started, started_wall = time.perf_counter(), time.time()
                patchers[arm](tag)
                seen = watches[arm].until(lambda body, image=image: image_of(body) == image)
                times.append((seen - started) * 1000)
                # Start the next change from a settled state, as a real deploy would.
                watches[arm].until(
                    lambda body, image=image: image_of(body) == image and rolled_out(body)
                )
                if arm == "operator":
                    wait_until(
                        lambda: is_ready(operator_release()),
                        60,
                        interval=0.05,
                        what=f"{names['operator']} Ready",
                    )
                # Read once settled: the audit log is written when each request completes.
                writes = audit.writes_since(mark, WRITERS)
                stages[arm].append(
                    latency_stages(writes, started_wall, times[-1], CONTROLLERS.get(arm))
                )
            samples[arm].append(times)
        p50s = ", ".join(f"{arm} {statistics.median(samples[arm][-1]):.1f}" for arm in names)
        log(f"latency round {round_ + 1}/{rounds}: p50 (ms) {p50s}")

    def round_ratios(arm: str, reference: str = "floor") -> list[float]:
        """Per round, the arm's p50 against the reference arm's p50 in the same round."""
        return [
            statistics.median(times) / statistics.median(against)
            for times, against in zip(samples[arm], samples[reference], strict=True)
        ]

    ratios = {arm: round_ratios(arm) for arm in ("operator", "bare")}
    vs_bare = round_ratios("operator", "bare")
    flat = {arm: [t for times in rounds_ for t in times] for arm, rounds_ in samples.items()}
    return {
        "change_latency_vs_bare": round(statistics.median(vs_bare), 2),
        "change_latency_vs_bare_round_ratios": [round(r, 2) for r in vs_bare],
        "change_latency_ratio": round(statistics.median(ratios["operator"]), 2),
        "change_latency_p50_ms": round(statistics.median(flat["operator"]), 1),
        "change_latency_p95_ms": round(percentile(flat["operator"], 0.95), 1),
        "floor_latency_p50_ms": round(statistics.median(flat["floor"]), 1),
        "floor_latency_p95_ms": round(percentile(flat["floor"], 0.95), 1),
        "bare_controller_latency_ratio": round(statistics.median(ratios["bare"]), 2),
        "bare_controller_latency_p50_ms": round(statistics.median(flat["bare"]), 1),
        "change_latency_round_ratios": [round(r, 2) for r in ratios["operator"]],
        "changes_per_arm": len(flat["operator"]),
        "change_latency_stages_p50_ms": median_stages(stages["operator"]),
        "floor_latency_stages_p50_ms": median_stages(stages["floor"]),
        "bare_controller_latency_stages_p50_ms": median_stages(stages["bare"]),
    }


# --- 2. scale, 3. idle --------------------------------------------------------------------------


def classify(entry: dict[str, Any]) -> str:
    ref = entry.get("objectRef") or {}
    resource = ref.get("resource", "?") + (
        f"/{ref['subresource']}" if ref.get("subresource") else ""
    )
    return f"{entry['verb']} {resource}"


def measure_scale(
    api: Api, audit: AuditLog, run: str, count: int, timeout: float
) -> dict[str, Any]:
    names = [f"bench-{run}-{i:03d}" for i in range(count)]
    mark = audit.mark()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda name: api.custom.create_cluster_custom_object(
                    GROUP, VERSION, PLURAL, release_manifest(name, "v1", run)
                ),
                names,
            )
        )
    created = time.monotonic() - started

    def all_ready() -> bool:
        ready = sum(is_ready(body) for body in api.releases(run))
        return ready == count

    wait_until(all_ready, timeout, interval=0.5, what=f"{count} releases Ready")
    elapsed = time.monotonic() - started
    # The status write saying Ready is the last write a new release needs; a short quiet
    # window catches anything the operator still does after it (it should do nothing).
    quiet_writes(audit, quiet=5, timeout=120)
    writes = audit.writes_since(mark)
    by_kind = Counter(classify(entry) for entry in writes)
    events = sum(n for kind, n in by_kind.items() if kind.endswith(" events"))
    return {
        "seconds": elapsed,
        "create_seconds": created,
        "writes": (len(writes) - events) / count,
        "events": events / count,
        "breakdown": {kind: round(n / count, 2) for kind, n in sorted(by_kind.items())},
    }


def quiet_writes(audit: AuditLog, quiet: float, timeout: float) -> None:
    """Wait until the operator has written nothing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last_size, last_change = audit.mark(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if audit.writes_since(last_size):
            last_size, last_change = audit.mark(), time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            return
        else:
            last_size = audit.mark()


def delete_run(api: Api, run: str, timeout: float = 300) -> None:
    """Delete a run's releases (their children go with them) and wait until the namespaces are
    gone, so the next run starts from the same cluster."""
    api.custom.delete_collection_cluster_custom_object(
        GROUP, VERSION, PLURAL, label_selector=f"{BENCH_LABEL}={run}"
    )

    def gone() -> bool:
        names = {n.metadata.name for n in api.core.list_namespace().items}
        return not any(name.startswith(f"bench-{run}-") for name in names)

    wait_until(gone, timeout, interval=1, what=f"the namespaces of run {run} to be deleted")


def cleanup(api: Api) -> None:
    """Leave a reused cluster as found: every bench release (children follow) and namespace."""
    with contextlib.suppress(ApiException):
        api.custom.delete_collection_cluster_custom_object(
            GROUP, VERSION, PLURAL, label_selector=BENCH_LABEL
        )
        for namespace in api.core.list_namespace(label_selector=BENCH_LABEL).items:
            api.core.delete_namespace(namespace.metadata.name)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# --- the run ------------------------------------------------------------------------------------


def kubectl(kubeconfig: str, *args: str, input: str | None = None) -> None:
    subprocess.run(
        ["kubectl", *args],
        input=input,
        text=True,
        check=True,
        capture_output=True,
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )


def install_crd(kubeconfig: str, name: str, *source: str, input: str | None = None) -> None:
    """Apply a CRD (`source`: kubectl apply's arguments) and wait until it is served."""
    kubectl(kubeconfig, "apply", "--server-side", *source, input=input)
    kubectl(kubeconfig, "wait", f"crd/{name}", "--for=condition=Established", "--timeout=30s")


@contextlib.contextmanager
def operator_running(cluster: localcluster.Cluster) -> Iterator[OperatorProcess]:
    install_crd(cluster.kubeconfig, f"{PLURAL}.{GROUP}", "-k", str(ROOT / "crds"))
    process = OperatorProcess(
        cluster.kubeconfig, Path(cluster.state_dir) / "logs" / "operator-bench.log"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        ("change_latency_vs_bare", "change latency, operator p50 / bare controller p50"),
        ("change_latency_ratio", "change latency, operator p50 / direct-patch p50"),
        ("change_latency_p50_ms", "change latency p50 (ms)"),
        ("change_latency_p95_ms", "change latency p95 (ms)"),
        ("floor_latency_p50_ms", "direct Deployment patch p50 (ms)"),
        ("bare_controller_latency_ratio", "bare controller p50 / direct-patch p50 (the least)"),
        ("scale_300_seconds", "300 releases created -> all Ready (s)"),
        ("writes_per_new_release", f"operator writes per new release (floor {WRITES_FLOOR})"),
        ("events_per_new_release", "events per new release (RevisionCreated)"),
        ("idle_writes", f"operator writes in {results.get('idle_seconds', 120)} s idle"),
        ("operator_rss_mb", "operator RSS with 300 releases (MiB)"),
        ("app_vs_falcon_ratio", "app req/s / bare falcon req/s"),
    ]
    lines = ["| figure | key | value | target |", "|---|---|---:|---|"]
    for key, label in rows:
        value = results.get(key, "n/a")
        op, limit = TARGETS.get(key, ("", ""))
        target = f"{op} {limit}" if op else ""
        if op and isinstance(value, int | float):
            met = value <= limit if op == "<=" else value >= limit
            target += " ✓" if met else " ✗"
        lines.append(f"| {label} | `{key}` | {value} | {target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--app", type=Path, default=ROOT / "bench" / "app.json")
    parser.add_argument("--rollout", type=Path, default=ROOT / "bench" / "rollout.json")
    parser.add_argument("--changes", type=int, default=50, help="tag changes per latency arm")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (arms alternate)")
    parser.add_argument("--releases", type=int, default=300)
    parser.add_argument("--scale-runs", type=int, default=3)
    parser.add_argument("--scale-timeout", type=float, default=600)
    parser.add_argument("--idle", type=float, default=120, help="idle window, seconds")
    args = parser.parse_args()

    results: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat()}
    with localcluster.running(log=log) as cluster, operator_running(cluster) as operator:
        api = Api(cluster.kubeconfig)
        audit = AuditLog(Path(cluster.state_dir) / "logs" / "audit.log")
        results["kubernetes_version"] = (
            kubernetes.client.VersionApi(api.client).get_code().git_version
        )
        results["machine"] = machine()
        stamp = time.strftime("%H%M%S")

        log(f"change latency: {args.changes} changes per arm in {args.rounds} rounds")
        with bare_controller(cluster.kubeconfig):
            results.update(measure_latency(api, audit, f"l{stamp}", args.changes, args.rounds))
        for arm in ("change_latency", "floor_latency", "bare_controller_latency"):
            log(f"  {arm} stages, p50 (ms): {results[f'{arm}_stages_p50_ms']}")

        runs = []
        for index in range(args.scale_runs):
            run = f"s{stamp}{index}"
            log(f"scale run {index + 1}/{args.scale_runs}: {args.releases} releases at once")
            runs.append(measure_scale(api, audit, run, args.releases, args.scale_timeout))
            log(
                f"  all Ready in {runs[-1]['seconds']:.1f} s; {runs[-1]['writes']:.2f} writes "
                f"and {runs[-1]['events']:.2f} events per release"
            )
            if index < args.scale_runs - 1:
                delete_run(api, run)
        median_run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        results["scale_300_seconds"] = round(statistics.median(r["seconds"] for r in runs), 1)
        results["scale_runs_seconds"] = [round(r["seconds"], 1) for r in runs]
        results["writes_per_new_release"] = round(statistics.median(r["writes"] for r in runs), 2)
        results["events_per_new_release"] = round(statistics.median(r["events"] for r in runs), 2)
        results["writes_floor"] = WRITES_FLOOR
        results["writes_breakdown_per_release"] = median_run["breakdown"]

        log(f"idle: counting the operator's writes for {args.idle:.0f} s")
        mark = audit.mark()
        time.sleep(args.idle)  # the measured window itself, not a wait for state
        idle = audit.writes_since(mark)
        results["idle_writes"] = len(idle)
        results["idle_seconds"] = args.idle
        results["idle_write_kinds"] = dict(Counter(classify(e) for e in idle))
        assert operator.process is not None
        results["operator_rss_mb"] = round(rss_mb(operator.process.pid), 1)
        results["releases_at_rss"] = len(
            api.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        )

        cleanup(api)
    if args.app.exists():
        app = json.loads(args.app.read_text())
        results["app_vs_falcon_ratio"] = app["app_vs_falcon_ratio"]
    if args.rollout.exists():
        results["zero_downtime"] = json.loads(args.rollout.read_text())
    results["targets"] = {key: f"{op} {limit}" for key, (op, limit) in TARGETS.items()}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
