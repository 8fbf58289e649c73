"""Zero downtime on the real node: requests through a release's Service while it rolls forward
and while it rolls back (a pin), with 3 replicas.

    .venv/bin/python bench/rollout_bench.py   (or `make bench-rollout`)

A bounded load loop (a few threads, one new connection per request, loopback only: the Service's
ClusterIP is routed by kube-proxy on this machine) runs from before the change until every Pod
runs the new revision. Figures per phase: requests sent, failed, p50/p99 latency, the versions
answered. Written to bench/rollout.json and merged into bench/results.json as `zero_downtime`.
Where the real node cannot run, says why in one line and records that instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testapp_dev import LiveCluster, OperatorProcess, localcluster
from testapp_dev.node import LoadLoop, NodeReleases, appimages, wait_version

ROOT = Path(__file__).resolve().parent.parent

REPLICAS = 3
# Load before the change and after the last Pod settled, so both edges are measured.
MARGIN_SECONDS = 3


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(
    releases: NodeReleases, name: str, change: Callable[[], None], revision: int, threads: int
) -> dict[str, Any]:
    url = releases.url(name)
    with LoadLoop(url, threads=threads) as load:
        time.sleep(MARGIN_SECONDS)
        started = time.monotonic()
        change()
        releases.wait_ready(name, revision, timeout=240)
        rollout_seconds = time.monotonic() - started
        time.sleep(MARGIN_SECONDS)
        result = load.stop()
    return {**result.summary(), "rollout_seconds": round(rollout_seconds, 1)}


def run(cluster: localcluster.Cluster, threads: int) -> dict[str, Any]:
    state = Path(cluster.state_dir)
    reason = localcluster.real_node_unavailable(state)
    if reason:
        log(f"zero-downtime bench skipped, no real node: {reason}")
        return {"skipped": reason}
    images = appimages.push(localcluster.ensure_registry(state, log), ["1.0.0", "1.1.0"], log)
    live = LiveCluster(kubeconfig=cluster.kubeconfig, server=cluster.server, state_dir=str(state))
    live.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
    live.kubectl(
        "wait", "crd/testappreleases.testapp.dev", "--for=condition=Established", "--timeout=30s"
    )
    operator = OperatorProcess(cluster.kubeconfig, state / "logs" / "operator-rollout-bench.log")
    operator.start()
    releases = NodeReleases(live, images.repository)
    try:
        name = releases.create("1.0.0", replicas=REPLICAS, prefix="zd")
        releases.wait_ready(name, revision=1, timeout=240)
        wait_version(releases.url(name), "1.0.0")
        log(f"roll forward of {name} ({REPLICAS} replicas) 1.0.0 -> 1.1.0 under load")
        forward = measure(
            releases, name, lambda: releases.patch(name, {"tag": "1.1.0"}), 2, threads
        )
        log(f"  {forward}")
        log(f"rollback of {name}: pin revision 1 under load")
        back = measure(releases, name, lambda: releases.patch(name, {"revision": 1}), 1, threads)
        log(f"  {back}")
    finally:
        releases.delete_all()
        operator.stop()
    return {
        "replicas": REPLICAS,
        "threads": threads,
        "target_failed": 0,
        "roll_forward": forward,
        "rollback": back,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "rollout.json")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with localcluster.running(log=log, real_node=True) as cluster:
        try:
            figures = run(cluster, args.threads)
        except subprocess.CalledProcessError as error:
            sys.exit(f"kubectl failed: {error.stderr}")
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.results.exists():
        results = json.loads(args.results.read_text())
        results["zero_downtime"] = figures
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
