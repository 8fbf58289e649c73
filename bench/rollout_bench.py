"""Zero downtime on the real node: requests through a release's Service while it rolls forward,
while it rolls back (a pin), through a canary judged by the real Prometheus and promoted, and
through a canary of the build answering 500 on / that the analysis aborts; 3 replicas.

    .venv/bin/python bench/rollout_bench.py   (or `make bench-rollout`)

A bounded load loop (a few threads, one new connection per request, loopback only: the Service's
ClusterIP is routed by kube-proxy on this machine) runs from before the change until every Pod
runs the new revision. Figures per phase: requests sent, failed, p50/p99 latency, the versions
answered. The canaries also give how long each of their steps took. During the aborted canary a
second loop asks `/` (what the analysis judges: the canary's 500s are expected there and counted
apart); the figure that must be 0 is the main loop's, on /version. Written to bench/rollout.json
and merged into bench/results.json as `zero_downtime`. Where the real node cannot run, says why in
one line and records that instead.
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
# Every route counts (the kubelet's probes too, so there is always data); 5xx over 30 s.
FIVE_XX_RATIO = (
    '(sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}",status=~"5.."}'
    "[30s])) or vector(0))"
    ' / sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}"}[30s]))'
)
ANALYSIS = {"query": FIVE_XX_RATIO, "successCondition": "result < 0.05", "interval": "20s"}
STEPS = [{"setWeight": 34}, {"analysis": ANALYSIS}, {"setWeight": 67}, {"analysis": ANALYSIS}]
STRATEGY = {"canary": {"steps": STEPS}}
CANARY_TIMEOUT = 300
# A canary takes over a minute of new connections: paced below what TIME_WAIT leaves of the
# local ports (LoadLoop).
PACE = 0.01


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


def canary_steps(releases: NodeReleases, name: str, revision: int, end: str) -> list[list[Any]]:
    """Follows status.canary of `revision` until its phase is `end`: [step, phase, weight,
    seconds it lasted] for each state seen."""
    seen: list[tuple[float, tuple[Any, ...]]] = []
    deadline = time.monotonic() + CANARY_TIMEOUT
    while True:
        canary = (releases.get(name).get("status") or {}).get("canary") or {}
        if canary.get("revision") == revision:
            state = (canary.get("step"), canary.get("phase"), canary.get("weight"))
            if not seen or seen[-1][1] != state:
                seen.append((time.monotonic(), state))
            if state[1] == end:
                break
            if state[1] in ("Promoted", "Aborted", "Paused"):
                raise RuntimeError(f"canary of revision {revision}: {canary}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"canary of revision {revision} not {end}: {canary}")
        time.sleep(0.5)
    ends = [at for at, _ in seen[1:]] + [seen[-1][0]]
    return [[*state, round(until - at, 1)] for (at, state), until in zip(seen, ends, strict=True)]


def through_canary(
    releases: NodeReleases, name: str, tag: str, revision: int, end: str, threads: int
) -> dict[str, Any]:
    """A new tag through the steps under load; with `end` Aborted a second loop asks `/`."""
    url = releases.url(name)
    judged = LoadLoop(url, threads=1, path="/", interval=PACE) if end == "Aborted" else None
    with LoadLoop(url, threads=threads, interval=PACE) as load:
        if judged is not None:
            judged.__enter__()
        time.sleep(MARGIN_SECONDS)
        started = time.monotonic()
        releases.patch(name, {"tag": tag})
        steps = canary_steps(releases, name, revision, end)
        seconds = time.monotonic() - started
        time.sleep(MARGIN_SECONDS)
        result = load.stop()
        if judged is not None:
            judged.stop()
    figures = {**result.summary(), "canary_seconds": round(seconds, 1), "steps": steps}
    if judged is not None:
        figures["slash_during_analysis"] = judged.result.summary()
    return figures


def run(cluster: localcluster.Cluster, threads: int) -> dict[str, Any]:
    state = Path(cluster.state_dir)
    reason = localcluster.real_node_unavailable(state)
    if reason:
        log(f"zero-downtime bench skipped, no real node: {reason}")
        return {"skipped": reason}
    registry = localcluster.ensure_registry(state, log)
    images = appimages.push(registry, ["1.0.0", "1.1.0", "1.2.0"], log, fault=True)
    running = localcluster.read_state(state)
    prometheus = running and localcluster.clusterprometheus.url(running)
    if not prometheus:
        raise RuntimeError("no Prometheus beside the real node: see the log of cluster-up")
    live = LiveCluster(kubeconfig=cluster.kubeconfig, server=cluster.server, state_dir=str(state))
    live.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
    live.kubectl(
        "wait", "crd/testappreleases.testapp.dev", "--for=condition=Established", "--timeout=30s"
    )
    operator = OperatorProcess(
        cluster.kubeconfig,
        state / "logs" / "operator-rollout-bench.log",
        f"--prometheus={prometheus}",
    )
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
        log(f"canary strategy on {name}: unpin, the steps {STRATEGY}")
        releases.patch(name, {"revision": None, "strategy": STRATEGY})
        releases.wait_ready(name, revision=2, timeout=240)
        log("canary of 1.2.0 under load, judged by Prometheus, promoted")
        promoted = through_canary(releases, name, "1.2.0", 3, "Promoted", threads)
        log(f"  {promoted}")
        releases.wait_ready(name, revision=3, timeout=240)
        log(f"canary of {appimages.FAULT_TAG} under load: aborted at its first analysis")
        aborted = through_canary(releases, name, appimages.FAULT_TAG, 4, "Aborted", threads)
        log(f"  {aborted}")
    finally:
        releases.delete_all()
        operator.stop()
    return {
        "replicas": REPLICAS,
        "threads": threads,
        "target_failed": 0,
        "roll_forward": forward,
        "rollback": back,
        "canary_promoted": promoted,
        "canary_aborted": aborted,
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
