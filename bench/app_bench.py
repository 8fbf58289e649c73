"""Requests per second of test-app's `/` (hug) against the same route in bare falcon 2.0.

Both apps run at once under the same gunicorn command and config (app/gunicorn.conf.py) on
loopback. wrk loads them in alternating rounds (hug, falcon, falcon, hug, ...), so noise from
other work on the machine hits both sides alike; each round gives one hug/falcon ratio and the
headline app_vs_falcon_ratio (target >= 0.8) is the median of those.
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).parent / "gunicorn"
# Same command as Dockerfile.app's CMD; only the WSGI target differs.
TARGETS = {
    "hug": ["app:__hug_wsgi__"],
    "falcon": ["--pythonpath", str(ROOT / "bench" / "app"), "falcon_app:app"],
}
LABELS = {"hug": "test-app (hug 2.6.1)", "falcon": "bare falcon 2.0.0"}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class Load:
    seconds: int  # per side and round
    rounds: int
    warmup: int
    connections: int
    threads: int


@dataclass(frozen=True)
class Run:
    side: str
    round: int
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


@contextlib.contextmanager
def serving(side: str) -> Iterator[str]:
    """gunicorn serving one side on a free loopback port; yields the URL of `/`."""
    port = free_loopback_port()
    process = subprocess.Popen(
        [str(GUNICORN), "--config", "gunicorn.conf.py", *TARGETS[side]],
        cwd=ROOT / "app",
        env={**os.environ, "BIND": f"127.0.0.1:{port}", "DRAIN_SECONDS": "0"},
        stdout=subprocess.DEVNULL,  # both sides write the same access line per request
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def wrk(url: str, seconds: int, load: Load) -> str:
    command = ["wrk", f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds}s", "--latency"]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    if "Non-2xx" in result.stdout or "Socket errors" in result.stdout:
        sys.exit(f"wrk saw errors against {url}:\n{result.stdout}")
    return result.stdout


def latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)$", output, re.M).groups()
    return float(value) * UNITS[unit]


def measure(side: str, url: str, round_: int, load: Load) -> Run:
    output = wrk(url, load.seconds, load)
    return Run(
        side=side,
        round=round_,
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


def in_process(calls: int, rounds: int) -> dict[str, float]:
    """Median calls/s of each WSGI app, interleaved like the HTTP rounds."""
    # Imported here, from the directories gunicorn serves them from.
    sys.path[:0] = [str(ROOT / "app"), str(ROOT / "bench" / "app")]
    import falcon_app

    import app

    apps = {"hug": app.__hug_wsgi__, "falcon": falcon_app.app}
    rates: dict[str, list[float]] = {side: [] for side in apps}
    for _ in range(rounds):
        for side, wsgi in apps.items():
            rates[side].append(wsgi_calls_per_second(wsgi, calls))
    return {side: statistics.median(values) for side, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "app.json")
    parser.add_argument("--seconds", type=int, default=4, help="wrk seconds per side and round")
    parser.add_argument("--rounds", type=int, default=5, help="odd, so the median is a round")
    parser.add_argument("--warmup", type=int, default=2, help="wrk seconds per side, unmeasured")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--calls", type=int, default=20000, help="in-process calls per round")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: `make bench` installs it (apt-get install -y wrk)")
    load = Load(args.seconds, args.rounds, args.warmup, args.connections, args.threads)

    runs: list[Run] = []
    with serving("hug") as hug_url, serving("falcon") as falcon_url:
        urls = {"hug": hug_url, "falcon": falcon_url}
        for url in urls.values():
            wrk(url, load.warmup, load)
        for round_ in range(1, load.rounds + 1):
            order = ("hug", "falcon") if round_ % 2 else ("falcon", "hug")
            for side in order:
                runs.append(measure(side, urls[side], round_, load))
                print(f"  round {round_} {side:>6}: {runs[-1].rps:8.0f} req/s", file=sys.stderr)

    def of(side: str) -> list[Run]:
        return [r for r in runs if r.side == side]

    ratios = [h.rps / f.rps for h, f in zip(of("hug"), of("falcon"), strict=True)]
    ratio = statistics.median(ratios)
    median_rps = {side: statistics.median(r.rps for r in of(side)) for side in TARGETS}
    direct = in_process(args.calls, load.rounds)
    direct_ratio = direct["hug"] / direct["falcon"]
    result = {
        "app_vs_falcon_ratio": round(ratio, 3),
        "app_rps": round(median_rps["hug"], 1),
        "falcon_rps": round(median_rps["falcon"], 1),
        "target_ratio": 0.8,
        "round_ratios": [round(r, 3) for r in ratios],
        "load": asdict(load),
        "server": "gunicorn --config app/gunicorn.conf.py (gthread, defaults from the environment)",
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "runs": [asdict(r) for r in runs],
        "inprocess_app_vs_falcon_ratio": round(direct_ratio, 3),
        "inprocess_calls_per_s": {side: round(rate) for side, rate in direct.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n| `/` under gunicorn, wrk -c{load.connections} | req/s (median) | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for side in TARGETS:
        p50 = statistics.median(r.p50_ms for r in of(side))
        p99 = statistics.median(r.p99_ms for r in of(side))
        print(f"| {LABELS[side]} | {median_rps[side]:.0f} | {p50:.2f} | {p99:.2f} |")
    verdict = "meets" if ratio >= 0.8 else "MISSES"
    rounds = " ".join(f"{r:.2f}" for r in ratios)
    print(f"\napp_vs_falcon_ratio = {ratio:.3f} ({verdict} the 0.8 target); rounds: {rounds}")
    print(f"in-process WSGI ratio (no HTTP) = {direct_ratio:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
