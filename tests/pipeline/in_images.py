"""Run GitLab jobs in their declared images, with podman: gitlab-ci-local --container-executable.

What this machine cannot pull is stood in for by images built here from the local base image
(`make toolchain`), each providing only what the jobs need (tests/pipeline/standins/):
- `docker:<v>-cli` (Docker Hub): a `docker` that does what hack/ci/*.sh ask — `buildx build`,
  `buildx imagetools inspect|create`, `login` — with the host's podman (its API socket is mounted
  into the job) and skopeo; builds use the local base image (the Dockerfiles' upstream base is
  on Docker Hub) and ignore BuildKit's registry-cache flags;
- `docker:<v>-dind` (Docker Hub): a service that only has to be there;
- gitlab-ci-local's helper image (Docker Hub): bash and rsync, which it copies artifacts with.
The operator image is the real one, pushed by build-operator to the loopback registry and pulled
from there by the deploy jobs. The python image of pip-audit is not run here (PyPI advisories).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from testapp_dev.podman import ENV, toolchain_podman

from tests.pipeline.gitlab import REPO, JobRun, Trigger, run

STANDINS = Path(__file__).resolve().parent / "standins"
APT_SOURCES = [Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")]
SOCKET_IN_JOB = "/run/podman/podman.sock"


def podman_env(registry: str, state: Path) -> dict[str, str]:
    """The project's podman settings, plus the loopback registry as an insecure one to pull from."""
    env = dict(ENV)
    registries = state / "registries.conf"
    registries.write_text(
        Path(env["CONTAINERS_REGISTRIES_CONF"]).read_text()
        + f'\n[[registry]]\nlocation = "{registry}"\ninsecure = true\n'
    )
    env["CONTAINERS_REGISTRIES_CONF"] = str(registries)
    return env


@dataclass(frozen=True)
class Standins:
    docker_cli: str
    dind: str
    helper: str
    python: str  # the local base image the stand-in builds use


def build_standins(env: Mapping[str, str]) -> Standins:
    """The stand-in images, built once per content (Containerfile, shim, base image). Installs
    the toolchain (podman, the local base image) first if this machine has none."""
    base = toolchain_podman().base_image
    # apt inside the build reads the machine's sources, mounted for the build only: the images
    # carry no mirror address.
    mounts = [f"--volume={p}:{p}:ro" for p in APT_SOURCES if p.exists()]
    names = {}
    for kind in ("docker-cli", "dind", "helper"):
        content = hashlib.sha256(base.encode())
        for path in sorted(STANDINS.iterdir()):
            content.update(path.name.encode() + path.read_bytes())
        name = f"localhost/testapp-standin/{kind}:{content.hexdigest()[:12]}"
        exists = subprocess.run(["podman", "image", "exists", name], env=env).returncode == 0
        if not exists:
            subprocess.run(
                [
                    "podman", "build", "--pull=never", "--quiet", f"--build-arg=BASE={base}",
                    *mounts, "--tag", name, "--file", STANDINS / f"{kind}.Containerfile", STANDINS,
                ],
                env=env,
                check=True,
                capture_output=True,
            )  # fmt: skip
        names[kind] = name
    return Standins(names["docker-cli"], names["dind"], names["helper"], base)


@contextmanager
def podman_service(env: Mapping[str, str], state: Path) -> Iterator[Path]:
    """The host's podman API on a socket the docker stand-in reaches from inside a job."""
    socket = state / "podman.sock"
    socket.unlink(missing_ok=True)
    process = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=(state / "podman-service.log").open("ab"),
    )
    try:
        subprocess.run(
            ["podman", f"--url=unix://{socket}", "version"],
            env=dict(env),
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield socket
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass(frozen=True)
class Pipeline:
    """gitlab-ci-local in podman mode, with the stand-ins and the loopback registry."""

    env: Mapping[str, str]
    standins: Standins
    registry: str
    socket: Path
    kubeconfigs: Path  # a directory, mounted read-only at the same path in deploy jobs

    def run_jobs(
        self,
        trigger: Trigger,
        *jobs: str,
        host_network: bool = False,
        volumes: tuple[Path, ...] = (),
        timeout: float = 900,
    ) -> JobRun:
        """Run the jobs in their images; a job of the deploy kind needs the host's network
        (the control plane listens on loopback), the build kind a network of its own (a
        service alias needs one). `volumes`: directories mounted at the same path."""
        variables = {
            "REGISTRY": self.registry,
            "CACHE_REGISTRY": f"{self.registry}/cache",
            "DOCKER_CLI_IMAGE": self.standins.docker_cli,
            "DIND_IMAGE": self.standins.dind,
            "STANDIN_PYTHON_IMAGE": self.standins.python,
            "REGISTRY_LOGIN": "skip",  # the loopback registry has no authentication
            "TESTAPP_JOB_RUN": uuid.uuid4().hex,  # finds this run's containers
        }
        trigger = trigger.with_variables(**{**variables, **trigger.variables})
        result = run(
            "--container-executable=podman",
            "--pull-policy=if-not-present",
            f"--helper-image={self.standins.helper}",
            f"--volume={self.socket}:{SOCKET_IN_JOB}",
            f"--volume={self.kubeconfigs}:{self.kubeconfigs}:ro",
            *(f"--volume={volume}:{volume}" for volume in volumes),
            *(["--network=host"] if host_network else []),
            *trigger.args(),
            *jobs,
            check=False,
            timeout=timeout,
            env=self.env,
        )
        for report in ("build.env", "promote.env"):  # copied back to the checkout
            (REPO / report).unlink(missing_ok=True)
        self.remove_containers(trigger.variables["TESTAPP_JOB_RUN"])
        return JobRun(" ".join(jobs), result.stdout + result.stderr)

    def remove_containers(self, job_run: str) -> None:
        """gitlab-ci-local under podman leaves its job containers behind, and a failed job's
        services (the dind stand-in) running: remove this run's, and only this run's (other
        tests run jobs meanwhile)."""
        listed = subprocess.run(
            ["podman", "ps", "-aq"],
            env=ENV, capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        if not listed:
            return
        environments = subprocess.run(
            ["podman", "inspect", "--format={{.Id}} {{json .Config.Env}}", *listed],
            env=ENV, capture_output=True, text=True, check=False,
        ).stdout.splitlines()  # fmt: skip
        marker = f"TESTAPP_JOB_RUN={job_run}"
        pairs = (line.split(" ", 1) for line in environments if " " in line)
        ours = [container for container, env in pairs if marker in json.loads(env)]
        if ours:
            removal = ["podman", "rm", "--force", "--time=0", *ours]
            subprocess.run(removal, env=ENV, capture_output=True, check=False)

    def digest(self, reference: str) -> str | None:
        """The manifest digest of registry/reference, None when there is no such image (skopeo
        from the docker stand-in: the toolchain installs podman, not skopeo)."""
        skopeo = ["podman", "run", "--rm", "--network=host", self.standins.docker_cli, "skopeo"]
        inspect = ["inspect", "--tls-verify=false", "--format={{.Digest}}"]
        result = subprocess.run(
            [*skopeo, *inspect, f"docker://{self.registry}/{reference}"],
            env=dict(self.env),
            capture_output=True,
            text=True,
        )
        return result.stdout.strip() if result.returncode == 0 else None


@dataclass
class FakeApi:
    """Google STS and IAM Credentials and GitLab's deployments API, on loopback. `answers` maps a
    path prefix to (status, body); `requests` records (path, headers) of what was asked."""

    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""


@contextmanager
def fake_api() -> Iterator[FakeApi]:
    """A FakeApi listening on a free loopback port until the block ends."""
    fake = FakeApi()

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            fake.requests.append((self.path, dict(self.headers)))
            status, body = next(
                (answer for prefix, answer in fake.answers.items() if self.path.startswith(prefix)),
                (404, "{}"),
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
