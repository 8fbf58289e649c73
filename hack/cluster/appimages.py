"""The test-app images the real node runs, pushed to the cluster's loopback registry.

    python hack/cluster/appimages.py push [--tags 1.0.0 1.1.0] [--fault]   (prints JSON: AppImages)

Builds Dockerfile.app with podman on the project's local Python base image (hack/containers),
then pushes it under every tag asked for (the app reports its tag: the operator passes it as
APP_VERSION), plus two broken builds made from it: `broken-crash` exits at start (the kubelet
shows CrashLoopBackOff) and `broken-unready` serves but never answers /readyz (never Ready).

With `--fault` (the canary's end-to-end test and the demo), also `fault-500`: the same app built
with `--build-arg TESTAPP_FAULT=500`, so `/` answers 500 while every probe passes, a build only a
canary analysis catches. It shares every layer with the good image up to the build arg (podman's
layer cache keeps both), so it costs a few seconds, and only where it is asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "hack" / "containers"))

import localcluster  # noqa: E402
import toolchain  # noqa: E402 (hack/containers is not a package)

LOCAL_NAME = "localhost/test-app:real-node"
REPOSITORY = "test-app"
OPERATOR_LOCAL_NAME = "localhost/testapp-operator:real-node"
OPERATOR_REPOSITORY = "testapp-operator"
CRASH_TAG = "broken-crash"
UNREADY_TAG = "broken-unready"
# The app itself, built with TESTAPP_FAULT=500 (Dockerfile.app): `/` answers 500, probes pass.
FAULT_TAG = "fault-500"
FAULT_LOCAL_NAME = f"localhost/test-app:{FAULT_TAG}"
# Each broken build is the real image with another command.
BROKEN_COMMANDS = {
    CRASH_TAG: ["python", "-c", "raise SystemExit('broken build: exits at start')"],
    UNREADY_TAG: ["python", "-m", "http.server", "8000"],
}


@dataclass(frozen=True)
class AppImages:
    repository: str  # e.g. 127.0.0.1:PORT/test-app (spec.image)
    digest: str  # of the good image, the same under every good tag
    tags: list[str]
    broken_digests: dict[str, str]
    fault_digest: str | None = None  # FAULT_TAG's, when pushed (`fault=True`)


class ImageError(RuntimeError):
    """An image could not be built or pushed; the message says which and why."""


def podman(*args: str, input: str | None = None) -> str:
    result = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, **toolchain.podman_env()},
    )
    if result.returncode != 0:
        raise ImageError(f"podman {args[0]} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


def build(log=print, fault: bool = False) -> None:
    toolchain.install(log)
    base = toolchain.build_base_image(log)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    builds = [(LOCAL_NAME, [])]
    if fault:
        builds.append((FAULT_LOCAL_NAME, ["--build-arg", "TESTAPP_FAULT=500"]))
    for name, args in builds:
        log(f"Building {name} from Dockerfile.app (its tests run inside the build)")
        podman(
            "build",
            "--quiet",
            "--pull=never",
            "-f",
            str(REPO / "Dockerfile.app"),
            "--build-arg",
            f"PYTHON_IMAGE={base}",
            "--build-arg",
            f"GIT_SHA={sha or 'unknown'}",
            *args,
            "-t",
            name,
            str(REPO),
        )
    for tag, command in BROKEN_COMMANDS.items():
        podman(
            "build",
            "--quiet",
            "--pull=never",
            "-t",
            f"localhost/test-app:{tag}",
            "-f",
            "-",
            str(REPO),
            input=f"FROM {LOCAL_NAME}\nCMD {json.dumps(command)}\n",
        )


def push_one(local: str, remote: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        digest_file = Path(scratch) / "digest"
        podman(
            "push", "--quiet", "--tls-verify=false", f"--digestfile={digest_file}", local, remote
        )
        return digest_file.read_text().strip()


def push(registry: str, tags: list[str], log=print, fault: bool = False) -> AppImages:
    """Build (podman reuses its layer cache) and push the app under `tags` and both broken
    builds, and with `fault` the TESTAPP_FAULT=500 build as FAULT_TAG; returns where they are."""
    build(log, fault)
    repository = f"{registry}/{REPOSITORY}"
    digests = {push_one(LOCAL_NAME, f"{repository}:{tag}") for tag in tags}
    if len(digests) != 1:
        raise ImageError(f"the tags {tags} got different digests: {sorted(digests)}")
    broken = {
        tag: push_one(f"localhost/test-app:{tag}", f"{repository}:{tag}") for tag in BROKEN_COMMANDS
    }
    fault_digest = push_one(FAULT_LOCAL_NAME, f"{repository}:{FAULT_TAG}") if fault else None
    return AppImages(repository, digests.pop(), tags, broken, fault_digest)


def push_operator(registry: str, log=print) -> tuple[str, str]:
    """Build the operator image (Dockerfile.operator, its tests inside the build) and push it;
    returns (repository, digest), what `python -m testapp_operator.delivery.install operator`
    takes."""
    toolchain.install(log)
    base = toolchain.build_base_image(log)
    log(f"Building {OPERATOR_LOCAL_NAME} from Dockerfile.operator")
    podman(
        "build", "--quiet", "--pull=never", "-f", str(REPO / "Dockerfile.operator"),
        "--build-arg", f"PYTHON_IMAGE={base}", "-t", OPERATOR_LOCAL_NAME, str(REPO),
    )  # fmt: skip
    repository = f"{registry}/{OPERATOR_REPOSITORY}"
    return repository, push_one(OPERATOR_LOCAL_NAME, f"{repository}:real-node")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["push"])
    parser.add_argument("--tags", nargs="+", default=["1.0.0", "1.1.0"])
    parser.add_argument(
        "--fault", action="store_true", help=f"also the TESTAPP_FAULT=500 build, as {FAULT_TAG}"
    )
    args = parser.parse_args(argv)
    try:
        registry = localcluster.ensure_registry(log=lambda line: print(line, file=sys.stderr))
        images = push(
            registry, args.tags, log=lambda line: print(line, file=sys.stderr), fault=args.fault
        )
    except (ImageError, localcluster.ClusterError, toolchain.ToolchainError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(images)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
