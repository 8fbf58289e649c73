"""Both images built and started with the local container toolchain (podman, the local base image):
cold build time of each, rebuild time after a code-only change (the dependency layers must come
from the cache: target <= 25% of the cold build), image sizes, and the app image's startup time
from `podman run` to the first `/readyz` 200 (median of several starts).

    .venv/bin/python bench/images_bench.py --out bench/images.json

"Cold" builds with --no-cache (pip downloads included; the base image is not rebuilt). The
builds run from a clean copy of the tree in a temporary directory; the images get a throwaway
repository name and are removed afterwards (their layers stay in podman's cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from testapp_dev import free_port
from testapp_dev.podman import Podman, clean_copy, toolchain_podman

# A code-only change per image: a comment in a module the runtime stage copies.
CODE_CHANGES = {
    "Dockerfile.app": "app/app.py",
    "Dockerfile.operator": "operator/testapp_operator/__init__.py",
}
NAMES = {"Dockerfile.app": "app", "Dockerfile.operator": "operator"}
STARTS = 5


def timed_build(
    podman: Podman, tree: Path, dockerfile: str, tag: str, *flags: str
) -> tuple[float, float]:
    """Wall-clock and CPU seconds (podman and everything it ran, the build steps included).
    On a shared machine the CPU time is the steadier of the two."""
    cpu_before = children_cpu_seconds()
    started = time.monotonic()
    podman("build", *flags, "--pull=never", f"--build-arg=PYTHON_IMAGE={podman.base_image}",
           "-f", dockerfile, "-t", tag, str(tree))  # fmt: skip
    return time.monotonic() - started, children_cpu_seconds() - cpu_before


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def seconds_to_ready(podman: Podman, image: str) -> float:
    port = free_port()
    name = f"bench-app-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    podman("run", "--detach", "--pull=never", "--name", name, "--read-only",
           "--publish", f"127.0.0.1:{port}:8000", image)  # fmt: skip
    try:
        while time.monotonic() - started < 60:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply:
                    if reply.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("the app container never answered /readyz 200 within 60 s")
    finally:
        podman("rm", "--force", "--time=0", name, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    podman = toolchain_podman()
    repository = f"localhost/bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "base_image": podman.base_image,
        "podman": podman("--version").stdout.strip(),
        # The machine is shared: the 1-minute load average says how busy it was.
        "load_average_at_start": round(os.getloadavg()[0], 1),
    }
    tags: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="testapp-bench-") as scratch:
            tree = clean_copy(Path(scratch))
            for dockerfile, name in NAMES.items():
                tag = f"{repository}/{name}:cold"
                tags.append(tag)
                cold, cold_cpu = timed_build(podman, tree, dockerfile, tag, "--no-cache")
                with (tree / CODE_CHANGES[dockerfile]).open("a") as source:
                    source.write(f"\n# bench {uuid.uuid4().hex}\n")
                tags.append(f"{repository}/{name}:code-change")
                rebuild, rebuild_cpu = timed_build(podman, tree, dockerfile, tags[-1])
                size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)
                results |= {
                    f"{name}_cold_build_seconds": round(cold, 1),
                    f"{name}_code_change_rebuild_seconds": round(rebuild, 1),
                    f"{name}_rebuild_ratio": round(rebuild / cold, 3),
                    f"{name}_cold_build_cpu_seconds": round(cold_cpu, 1),
                    f"{name}_code_change_rebuild_cpu_seconds": round(rebuild_cpu, 1),
                    f"{name}_rebuild_cpu_ratio": round(rebuild_cpu / cold_cpu, 3),
                    f"{name}_image_mb": round(size / 1e6),
                }
                print(
                    f"{name}: cold {cold:.1f} s ({cold_cpu:.1f} s CPU), after a code change "
                    f"{rebuild:.1f} s ({rebuild_cpu:.1f} s CPU): {rebuild / cold:.0%} "
                    f"({rebuild_cpu / cold_cpu:.0%} CPU), {size / 1e6:.0f} MB",
                    flush=True,
                )
        starts = [seconds_to_ready(podman, f"{repository}/app:cold") for _ in range(STARTS)]
        results["app_start_to_ready_seconds"] = round(statistics.median(starts), 2)
        results["app_start_to_ready_all"] = [round(s, 2) for s in starts]
        print(
            f"app: podman run -> /readyz 200, median of {STARTS}: {statistics.median(starts):.2f} s"
        )
    finally:
        podman("rmi", *tags, check=False)
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
