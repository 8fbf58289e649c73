"""The `kubectl testapp` plugin: see and move TestAppReleases from a shell or a pipeline.

The top half is pure (naming, patches, rollback choice, wait verdicts, tables) and unit-tested;
the bottom half talks to the API server and maps its errors to one readable line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from testapp_operator import APP, CHANGE_CAUSE_ANNOTATION, GROUP, PLURAL, RELEASE_LABEL, VERSION
from testapp_operator.release import ENVS

KIND = "testapprelease"  # as kubectl names it in messages: "testapprelease test-app-dev"
NAME_PREFIX = f"{APP}-"
FIELD_MANAGER = "kubectl-testapp"
POLL_SECONDS = 1.0

Body = Mapping[str, Any]


class CliError(Exception):
    """A failure the user can act on; main() prints it and exits 1."""


# --- pure: names, causes, patches -----------------------------------------------------------


def release_name(env_or_name: str) -> str:
    """`dev` and `test-app-dev` both name the release `test-app-dev`."""
    return env_or_name if env_or_name.startswith(NAME_PREFIX) else NAME_PREFIX + env_or_name


def env_of(name: str) -> str:
    return name.removeprefix(NAME_PREFIX)


def default_cause(environ: Mapping[str, str]) -> str:
    """Who and what triggered a deploy: the GitLab pipeline when there is one, else the user."""
    sha = environ.get("CI_COMMIT_SHORT_SHA") or environ.get("CI_COMMIT_SHA")
    login = environ.get("GITLAB_USER_LOGIN")
    url = environ.get("CI_PIPELINE_URL")
    if not (sha or login or url):
        return f"kubectl-testapp deploy by {environ.get('USER') or 'unknown'}"
    cause = f"commit {sha}" if sha else "deploy"
    if login:
        cause += f" by {login}"
    if url:
        cause += f", pipeline {url}"
    return cause


def deploy_patch(
    tag: str, cause: str, image: str | None = None, digest: str | None = None
) -> dict[str, Any]:
    """One merge patch: the new tag and its digest, no pin (a new release is a deliberate
    roll-forward), why. No digest clears the old one: it belongs to the old tag's bytes."""
    spec: dict[str, Any] = {"tag": tag, "digest": digest, "revision": None}
    if image is not None:
        spec["image"] = image
    return {"metadata": {"annotations": {CHANGE_CAUSE_ANNOTATION: cause}}, "spec": spec}


def pin_patch(revision: int | None) -> dict[str, Any]:
    """Pin a revision, or (None) remove the pin; merge patch null deletes the field."""
    return {"spec": {"revision": revision}}


def split_image(ref: str) -> tuple[str, str | None]:
    """`repo:tag` -> (repo, tag); a `:` before the last `/` is a registry port, not a tag."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return repo, tag


# --- pure: history decisions -----------------------------------------------------------------


def history_of(body: Body) -> list[dict[str, Any]]:
    """status.history, newest revision first whatever order the server stored."""
    history = (body.get("status") or {}).get("history") or []
    return sorted(history, key=lambda entry: entry.get("revision", 0), reverse=True)


def describe_history(history: Iterable[Mapping[str, Any]]) -> str:
    listed = ", ".join(f"{e.get('revision')} ({e.get('outcome', '?')})" for e in history)
    return listed or "none"


def rollback_target(body: Body, to_revision: int | None = None) -> int:
    """The revision `rollback` pins: the one asked for, else the newest Ready one not deployed."""
    name = body["metadata"]["name"]
    history = history_of(body)
    if to_revision is not None:
        if any(entry.get("revision") == to_revision for entry in history):
            return to_revision
        raise CliError(
            f"{KIND} {name} has no revision {to_revision} in its history "
            f"(revisions: {describe_history(history)})"
        )
    deployed = (body.get("status") or {}).get("revision")
    for entry in history:
        if entry.get("outcome") == "Ready" and entry.get("revision") != deployed:
            return entry["revision"]
    raise CliError(
        f"{KIND} {name} has no Ready revision other than the deployed revision {deployed} "
        f"to roll back to (revisions: {describe_history(history)})"
    )


@dataclasses.dataclass(frozen=True)
class Source:
    """What runs in an environment, as `promote` carries it to the next one."""

    revision: int
    image: str  # repository, without tag
    tag: str
    digest: str | None = None  # the bytes that ran there, when pinned by digest


def promote_source(body: Body) -> Source:
    """The deployed revision's image and tag (not spec.tag: the source may be pinned)."""
    name = body["metadata"]["name"]
    status = body.get("status") or {}
    revision = status.get("revision")
    entry = next((e for e in history_of(body) if e.get("revision") == revision), None)
    if revision is None or entry is None:
        raise CliError(f"{KIND} {name} has no deployed revision to promote")
    if entry.get("outcome") != "Ready":
        raise CliError(
            f"{KIND} {name} revision {revision} is {entry.get('outcome')}, not Ready; "
            "promote only what has been Ready"
        )
    repo, _ = split_image(entry.get("image") or status.get("image", ""))
    return Source(revision=revision, image=repo, tag=entry["tag"], digest=entry.get("digest"))


# --- pure: waiting ----------------------------------------------------------------------------

WAITING, SUCCEEDED, FAILED = "waiting", "succeeded", "failed"


@dataclasses.dataclass(frozen=True)
class Goal:
    """What a write waits for: the operator saw `generation`, and then tag and/or revision."""

    generation: int
    tag: str | None = None
    revision: int | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    state: str  # WAITING, SUCCEEDED or FAILED
    message: str


def _conditions(status: Mapping[str, Any], generation: int) -> dict[str, Mapping[str, Any]]:
    """Conditions by type, leaving out those explicitly computed for an older generation."""
    return {
        c["type"]: c
        for c in status.get("conditions") or []
        if c.get("observedGeneration", generation) >= generation
    }


def _failure(body: Body, goal: Goal) -> str | None:
    status = body.get("status") or {}
    conditions = _conditions(status, goal.generation)
    degraded = conditions.get("Degraded", {})
    ready = conditions.get("Ready", {})
    pinned = conditions.get("Pinned", {})
    if degraded.get("status") == "True":
        return degraded.get("message") or degraded.get("reason") or "Degraded"
    if ready.get("status") == "False" and ready.get("reason") == "ProgressDeadlineExceeded":
        return ready.get("message") or "progress deadline exceeded"
    if pinned.get("status") == "False" and pinned.get("reason") == "RevisionNotFound":
        return pinned.get("message") or "pinned revision not found"
    if status.get("phase") == "Degraded":
        return ready.get("message") or "phase Degraded"
    if status.get("phase") == "Paused":
        return "the release is paused (spec.paused: true); nothing rolls out until it is resumed"
    if goal.tag is not None and not _runs_tag(status, goal.tag):
        newest = next((e for e in history_of(body) if e.get("tag") == goal.tag), None)
        if newest is not None and newest.get("outcome") == "Failed":
            return (
                f"revision {newest.get('revision')} (tag {goal.tag}) failed; "
                f"running revision {status.get('revision')} ({status.get('image')})"
            )
    return None


def _runs_tag(status: Mapping[str, Any], tag: str) -> bool:
    return str(status.get("image", "")).endswith(":" + tag)


def judge(body: Body, goal: Goal) -> Verdict:
    """Decide from one read of the release whether a write has landed, failed, or is on its way."""
    status = body.get("status") or {}
    if status.get("observedGeneration", 0) < goal.generation:
        return Verdict(WAITING, f"waiting for the operator to observe generation {goal.generation}")
    failure = _failure(body, goal)
    if failure is not None:
        return Verdict(FAILED, failure)
    arrived = (
        status.get("phase") == "Ready"
        and (goal.tag is None or _runs_tag(status, goal.tag))
        and (goal.revision is None or status.get("revision") == goal.revision)
        and (goal.tag is not None or goal.revision is not None or not status.get("pinned"))
    )
    if arrived:
        return Verdict(
            SUCCEEDED, f"revision {status.get('revision')} is Ready, image {status.get('image')}"
        )
    return Verdict(WAITING, progress_line(body))


def progress_line(body: Body) -> str:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    ready = _conditions(status, 0).get("Ready", {})
    line = (
        f"phase {status.get('phase', '-')}, revision {status.get('revision', '-')}, "
        f"ready {status.get('readyReplicas') or 0}/{spec.get('replicas', '-')}, "
        f"image {status.get('image', '-')}"
    )
    return f"{line}: {ready['message']}" if ready.get("message") else line


def wait_for(
    read: Callable[[], Body],
    goal: Goal,
    timeout: float,
    emit: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Poll until the verdict is final or `timeout` passes; emit a line only when it changes."""
    deadline = clock() + timeout
    last = ""
    while True:
        try:
            verdict = judge(read(), goal)
        except TransientError as error:
            verdict = Verdict(WAITING, f"retrying: {error}")
        if verdict.state != WAITING:
            return verdict
        if verdict.message != last:
            emit(verdict.message)
            last = verdict.message
        remaining = deadline - clock()
        if remaining <= 0:
            return Verdict(FAILED, f"timed out after {timeout:g}s; last seen: {last}")
        sleep(min(POLL_SECONDS, remaining))


# --- pure: output -----------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """kubectl-style columns: left aligned, three spaces apart, no trailing blanks."""
    cells = [list(headers)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ("   ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
    return "\n".join(line.rstrip() for line in lines)


def human_age(created: str | None, now: datetime) -> str:
    """kubectl's short age (45s, 3m20s, 5h, 12d) from an RFC3339 timestamp."""
    if not created:
        return "-"
    start = datetime.fromisoformat(created.replace("Z", "+00:00"))
    seconds = max(0, int((now - start).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d" if days < 730 else f"{days // 365}y"


def _env_rank(body: Body) -> tuple[int, str]:
    env = (body.get("spec") or {}).get("env") or env_of(body["metadata"]["name"])
    rank = ENVS.index(env) if env in ENVS else len(ENVS)
    return rank, body["metadata"]["name"]


def status_records(releases: Iterable[Body]) -> list[dict[str, Any]]:
    """One record per release in pipeline order (dev, stg, ppd, prd): what runs where."""
    records = []
    for body in sorted(releases, key=_env_rank):
        spec, status = body.get("spec") or {}, body.get("status") or {}
        records.append(
            {
                "name": body["metadata"]["name"],
                "env": spec.get("env"),
                "tag": split_image(status["image"])[1] if status.get("image") else None,
                "image": status.get("image"),
                "revision": status.get("revision"),
                "readyReplicas": status.get("readyReplicas") or 0,
                "desiredReplicas": spec.get("replicas"),
                "pinned": bool(status.get("pinned")),
                "phase": status.get("phase"),
                "created": body["metadata"].get("creationTimestamp"),
            }
        )
    return records


def status_table(records: Sequence[Mapping[str, Any]], now: datetime) -> str:
    headers = ("ENV", "TAG", "REVISION", "READY", "PINNED", "PHASE", "AGE")
    rows = [
        (
            r["env"],
            r["tag"],
            r["revision"],
            f"{r['readyReplicas']}/{r['desiredReplicas']}",
            str(r["pinned"]).lower(),
            r["phase"],
            human_age(r["created"], now),
        )
        for r in records
    ]
    return format_table(headers, rows)


def history_records(body: Body) -> list[dict[str, Any]]:
    deployed = (body.get("status") or {}).get("revision")
    return [{**entry, "deployed": entry.get("revision") == deployed} for entry in history_of(body)]


def history_table(records: Sequence[Mapping[str, Any]]) -> str:
    # The unnamed first column marks the deployed revision, like `kubectl config get-contexts`.
    headers = ("", "REVISION", "TAG", "CREATED", "CAUSE", "OUTCOME")
    rows = [
        (
            "*" if r["deployed"] else "",
            r.get("revision"),
            r.get("tag"),
            r.get("created"),
            r.get("changeCause"),
            r.get("outcome"),
        )
        for r in records
    ]
    return format_table(headers, rows)


def render(data: Any, output: str, table: Callable[[], str]) -> str:
    if output == "json":
        return json.dumps(data, indent=2)
    if output == "yaml":
        return yaml.safe_dump(data, sort_keys=False).rstrip("\n")
    return table()


def revision_diff(release: str, a: int, b: int, data_a: Any, data_b: Any) -> str:
    """Unified diff of two revision snapshots as YAML; empty when they are the same."""
    lines_a = yaml.safe_dump(data_a, sort_keys=True).splitlines(keepends=True)
    lines_b = yaml.safe_dump(data_b, sort_keys=True).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(lines_a, lines_b, fromfile=f"{release}-{a}", tofile=f"{release}-{b}")
    )


# --- I/O: the API server ---------------------------------------------------------------------


class TransientError(Exception):
    """An API failure worth retrying while waiting (server error, lost connection)."""


def _status_message(error: ApiException) -> tuple[str, bool]:
    """The Status message of an API error, and whether the body was a Status at all."""
    try:
        body = json.loads(error.body or "")
    except ValueError:
        return (error.body or error.reason or "").strip(), False
    if not isinstance(body, dict) or body.get("kind") != "Status":
        return str(body), False
    return body.get("message") or body.get("reason") or "", True


def api_error(error: ApiException, what: str) -> CliError:
    """One line that names the object and the reason, for each way a request fails."""
    message, is_status = _status_message(error)
    if error.status == 404:
        if what.startswith(KIND) and not is_status:
            return CliError(
                f"{what}: the CRD {PLURAL}.{GROUP} is not installed "
                "(kubectl apply -f crds/ installs it)"
            )
        return CliError(f"{what} not found")
    if error.status == 403:
        return CliError(f"{what}: forbidden: {message}")
    if error.status == 401:
        return CliError(f"{what}: unauthorized: check the credentials in the kubeconfig")
    if error.status == 422:
        return CliError(f"{what}: rejected: {message}")
    return CliError(f"{what}: {error.status} {error.reason}: {message}")


def load_api_client(kubeconfig: str | None, context: str | None) -> client.ApiClient:
    """Like kubectl: --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else in-cluster."""
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except ConfigException as error:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise CliError(
            f"no usable kubeconfig at {where} ({str(error).rstrip('.')}); "
            "pass --kubeconfig or set KUBECONFIG"
        ) from error


class Kube:
    """The few reads and writes the plugin makes, with errors turned into CliError."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.objects = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)

    def get_release(self, name: str) -> dict[str, Any]:
        try:
            return self.objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except ApiException as error:
            raise api_error(error, f"{KIND} {name}") from error

    def read_release_retrying(self, name: str) -> dict[str, Any]:
        """get_release for wait loops: server errors and lost connections are retried."""
        try:
            return self.objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except ApiException as error:
            if error.status is not None and error.status >= 500:
                raise TransientError(f"{error.status} {error.reason}") from error
            raise api_error(error, f"{KIND} {name}") from error
        except urllib3.exceptions.HTTPError as error:
            raise TransientError(str(error)) from error

    def list_releases(self) -> list[dict[str, Any]]:
        try:
            return self.objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        except ApiException as error:
            raise api_error(error, f"{KIND} list") from error

    def patch_release(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.objects.patch_cluster_custom_object(
                GROUP,
                VERSION,
                PLURAL,
                name,
                dict(patch),
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except ApiException as error:
            raise api_error(error, f"{KIND} {name}") from error

    def revision_data(self, release: str, revision: int) -> Any:
        """The snapshot (`data`) of ControllerRevision <release>-<N> in the release namespace."""
        name = f"{release}-{revision}"
        try:
            response = self.apps.read_namespaced_controller_revision(
                name, release, _preload_content=False
            )
        except ApiException as error:
            if error.status == 404:
                raise CliError(
                    f"{KIND} {release} has no revision {revision} "
                    f"(controllerrevision {name} not found in namespace {release}; "
                    f"revisions: {self._revision_numbers(release)})"
                ) from error
            raise api_error(error, f"controllerrevision {release}/{name}") from error
        return json.loads(response.data)["data"]

    def _revision_numbers(self, release: str) -> str:
        try:
            response = self.apps.list_namespaced_controller_revision(
                release, label_selector=f"{RELEASE_LABEL}={release}", _preload_content=False
            )
        except ApiException:
            return "unknown"
        numbers = sorted(item["revision"] for item in json.loads(response.data)["items"])
        return ", ".join(map(str, numbers)) or "none"


# --- commands ---------------------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _finish(
    kube: Kube,
    name: str,
    written: Body,
    args: argparse.Namespace,
    tag: str | None = None,
    revision: int | None = None,
) -> int:
    """After a write: wait for the operator (unless --no-wait) and report the outcome."""
    generation = written["metadata"]["generation"]
    goal = Goal(generation, tag=tag, revision=revision)
    if args.no_wait:
        print(f"{KIND} {name} patched (generation {generation}); not waiting")
        return 0
    verdict = wait_for(
        lambda: kube.read_release_retrying(name),
        goal,
        args.timeout,
        emit=lambda line: _say(f"{name}: {line}"),
    )
    if verdict.state == SUCCEEDED:
        print(f"{name}: {verdict.message}")
        return 0
    _say(f"error: {KIND} {name}: {verdict.message}")
    return 1


def _deploy(
    kube: Kube,
    name: str,
    tag: str,
    image: str | None,
    cause: str,
    args: argparse.Namespace,
    digest: str | None = None,
) -> int:
    kube.get_release(name)  # a clear "not found" before anything is written
    _say(f"{name}: deploying tag {tag}{f'@{digest}' if digest else ''} ({cause})")
    written = kube.patch_release(name, deploy_patch(tag, cause, image, digest))
    return _finish(kube, name, written, args, tag=tag)


def cmd_status(kube: Kube, args: argparse.Namespace) -> int:
    records = status_records(kube.list_releases())
    if not records and args.output == "table":
        _say(f"no {PLURAL} found")
        return 0
    now = datetime.now(UTC)
    print(render(records, args.output, lambda: status_table(records, now)))
    return 0


def cmd_history(kube: Kube, args: argparse.Namespace) -> int:
    records = history_records(kube.get_release(release_name(args.env)))
    print(render(records, args.output, lambda: history_table(records)))
    return 0


def cmd_deploy(kube: Kube, args: argparse.Namespace) -> int:
    cause = args.cause or default_cause(os.environ)
    return _deploy(kube, release_name(args.env), args.tag, args.image, cause, args, args.digest)


def cmd_rollback(kube: Kube, args: argparse.Namespace) -> int:
    name = release_name(args.env)
    target = rollback_target(kube.get_release(name), args.to_revision)
    _say(f"{name}: pinning revision {target}")
    written = kube.patch_release(name, pin_patch(target))
    return _finish(kube, name, written, args, revision=target)


def cmd_unpin(kube: Kube, args: argparse.Namespace) -> int:
    name = release_name(args.env)
    kube.get_release(name)
    _say(f"{name}: removing the pin, back to the latest revision")
    written = kube.patch_release(name, pin_patch(None))
    return _finish(kube, name, written, args)


def cmd_diff(kube: Kube, args: argparse.Namespace) -> int:
    name = release_name(args.env)
    kube.get_release(name)
    before = kube.revision_data(name, args.rev_a)
    after = kube.revision_data(name, args.rev_b)
    sys.stdout.write(revision_diff(name, args.rev_a, args.rev_b, before, after))
    return 0


def cmd_promote(kube: Kube, args: argparse.Namespace) -> int:
    source_name, target_name = release_name(args.from_env), release_name(args.to_env)
    if source_name == target_name:
        raise CliError(f"cannot promote {KIND} {source_name} to itself")
    source = promote_source(kube.get_release(source_name))
    cause = args.cause or f"promoted from {env_of(source_name)} revision {source.revision}"
    return _deploy(kube, target_name, source.tag, source.image, cause, args, source.digest)


# --- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Connection flags work before or after the command; SUPPRESS keeps a subcommand from
    # overwriting a value given before it (main() reads them with a None fallback).
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file")
    connection.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout", type=float, default=300, help="seconds to wait for Ready (default 300)"
    )
    waiting.add_argument("--no-wait", action="store_true", help="return once the patch is made")
    env_help = "environment (dev) or release name (test-app-dev)"

    parser = argparse.ArgumentParser(
        prog="kubectl testapp",
        description="See and move test-app releases (TestAppRelease objects).",
        parents=[connection],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], text: str, *parents: Any) -> Any:
        sub = commands.add_parser(name, help=text, description=text, parents=[connection, *parents])
        sub.set_defaults(handler=handler)
        return sub

    command("status", cmd_status, "what runs in every environment", output)
    sub = command("history", cmd_history, "revisions of one release, * marks the deployed", output)
    sub.add_argument("env", help=env_help)
    sub = command("deploy", cmd_deploy, "deploy a tag (clears any pin) and wait", waiting)
    sub.add_argument("env", help=env_help)
    sub.add_argument("--tag", required=True, help="image tag to deploy")
    sub.add_argument("--image", help="image repository, without tag (default: keep)")
    sub.add_argument(
        "--digest", help="the tag's image digest, sha256:<hex>: Pods run exactly it (default: none)"
    )
    sub.add_argument("--cause", help="change cause (default: from GitLab CI variables or $USER)")
    sub = command("rollback", cmd_rollback, "pin the previous Ready revision and wait", waiting)
    sub.add_argument("env", help=env_help)
    sub.add_argument("--to-revision", type=int, metavar="N", help="pin revision N instead")
    sub = command("unpin", cmd_unpin, "remove the pin: back to the latest revision", waiting)
    sub.add_argument("env", help=env_help)
    sub = command("diff", cmd_diff, "unified diff of two revision snapshots")
    sub.add_argument("env", help=env_help)
    sub.add_argument("rev_a", type=int, metavar="REV_A")
    sub.add_argument("rev_b", type=int, metavar="REV_B")
    sub = command("promote", cmd_promote, "deploy what runs in one env to another", waiting)
    sub.add_argument("from_env", metavar="FROM", help=env_help)
    sub.add_argument("to_env", metavar="TO", help=env_help)
    sub.add_argument("--cause", help="change cause (default: promoted from FROM revision N)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        api_client = load_api_client(
            getattr(args, "kubeconfig", None), getattr(args, "context", None)
        )
        return args.handler(Kube(api_client), args)
    except CliError as error:
        _say(f"error: {error}")
    except urllib3.exceptions.HTTPError as error:
        _say(f"error: cannot reach the Kubernetes API server: {error}")
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
