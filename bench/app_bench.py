"""Requests per second of test-app's `/` (hug) against the same route in bare falcon 2.0.

Both run under the same gunicorn command and config (app/gunicorn.conf.py), on loopback, loaded
by the same wrk settings; sides alternate within each repeat and the median is reported.
Writes app_vs_falcon_ratio (target >= 0.8) and both rps figures as JSON for `make bench`.
For context it also times both WSGI apps called in-process (no HTTP, no gunicorn): that ratio is
the frameworks' own cost, which the HTTP server's cost dilutes in the headline figure.

    .venv/bin/python bench/app_bench.py --out bench/app.json
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import wsgiref.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
# Same command as Dockerfile.app's CMD; only the WSGI target differs.
TARGETS = {
    "hug": ["app:__hug_wsgi__"],
    "falcon": ["--pythonpath", str(ROOT / "bench" / "app"), "falcon_app:app"],
}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Load:
    duration: int
    warmup: int
    connections: int
    threads: int


@dataclass(frozen=True)
class Run:
    side: str
    repeat: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited with {process.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{url} did not answer within {timeout}s")


def wrk(url: str, seconds: int, load: Load) -> str:
    command = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds}s", "--latency"]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        sys.exit(f"wrk saw errors against {url}:\n{result.stdout}")
    return result.stdout


def latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)$", output, re.M).groups()
    return float(value) * UNITS[unit]


def measure(side: str, repeat: int, load: Load) -> Run:
    port = free_loopback_port()
    env = {**os.environ, "BIND": f"127.0.0.1:{port}", "DRAIN_SECONDS": "0"}
    process = subprocess.Popen(
        [str(GUNICORN), "--config", "gunicorn.conf.py", *TARGETS[side]],
        cwd=ROOT / "app",
        env=env,
        stdout=subprocess.DEVNULL,  # both sides write the same access line per request
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process)
        wrk(url, load.warmup, load)
        output = wrk(url, load.duration, load)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return Run(
        side=side,
        repeat=repeat,
        rps=float(re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)[1]),
        p50_ms=latency_ms(output, "50"),
        p99_ms=latency_ms(output, "99"),
        requests=int(re.search(r"^\s+(\d+) requests in", output, re.M)[1]),
    )


def wsgi_calls_per_second(app: Callable, calls: int) -> float:
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        started = time.perf_counter()
        for _ in range(calls):
            b"".join(app(dict(environ), lambda status, headers: None))
        return calls / (time.perf_counter() - started)


def in_process(calls: int, repeats: int) -> dict[str, float]:
    """Median calls/s of each WSGI app, interleaved like the HTTP runs."""
    # Imported here, from the directories gunicorn would serve them from.
    sys.path[:0] = [str(ROOT / "app"), str(ROOT / "bench" / "app")]
    import falcon_app

    import app

    apps = {"hug": app.__hug_wsgi__, "falcon": falcon_app.app}
    rates: dict[str, list[float]] = {side: [] for side in apps}
    for _ in range(repeats):
        for side, wsgi in apps.items():
            rates[side].append(wsgi_calls_per_second(wsgi, calls))
    return {side: statistics.median(values) for side, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "app.json")
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before each run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--calls", type=int, default=20000, help="in-process calls per repeat")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install -y wrk)")
    load = Load(args.duration, args.warmup, args.connections, args.threads)

    runs: list[Run] = []
    for repeat in range(1, args.repeats + 1):
        # Alternate which side goes first so drift (thermal, noisy neighbours) hits both.
        order = ("hug", "falcon") if repeat % 2 else ("falcon", "hug")
        for side in order:
            runs.append(measure(side, repeat, load))
            print(f"  repeat {repeat} {side:>6}: {runs[-1].rps:10.1f} req/s", file=sys.stderr)

    median = {s: statistics.median(r.rps for r in runs if r.side == s) for s in TARGETS}
    ratio = median["hug"] / median["falcon"]
    direct = in_process(args.calls, repeats=max(args.repeats, 3))
    result = {
        "app_vs_falcon_ratio": round(ratio, 3),
        "app_rps": round(median["hug"], 1),
        "falcon_rps": round(median["falcon"], 1),
        "target_ratio": 0.8,
        "load": asdict(load),
        "server": "gunicorn --config app/gunicorn.conf.py (gthread, defaults from the environment)",
        "cpus": os.cpu_count(),
        "runs": [asdict(r) for r in runs],
        "inprocess_app_vs_falcon_ratio": round(direct["hug"] / direct["falcon"], 3),
        "inprocess_calls_per_s": {side: round(rate) for side, rate in direct.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n| route `/` under gunicorn | req/s (median of {args.repeats}) | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for side, label in (("hug", "test-app (hug 2.6.1)"), ("falcon", "bare falcon 2.0.0")):
        mine = [r for r in runs if r.side == side]
        p50 = statistics.median(r.p50_ms for r in mine)
        p99 = statistics.median(r.p99_ms for r in mine)
        print(f"| {label} | {median[side]:.0f} | {p50:.2f} | {p99:.2f} |")
    print(
        f"\nin-process WSGI calls/s (no HTTP): hug {direct['hug']:.0f}, falcon "
        f"{direct['falcon']:.0f}, ratio {direct['hug'] / direct['falcon']:.3f}"
    )
    verdict = "meets" if ratio >= 0.8 else "MISSES"
    print(f"\napp_vs_falcon_ratio = {ratio:.3f} ({verdict} the 0.8 target); wrote {args.out}")


if __name__ == "__main__":
    main()
