"""The `kubectl testapp` commands: parse, decide (core.py), call the API (client.py), show
(views.py). Exit codes are core.Exit, documented in docs/cli.md."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from testapp_operator import PLURAL
from testapp_operator.cli import core, views
from testapp_operator.cli.core import RESOURCE, CanaryGoal, CliError, Exit, Goal
from testapp_operator.conditions import timestamp
from testapp_operator.release import ENVS, ReleaseError

if TYPE_CHECKING:
    from testapp_operator.cli.client import ReleaseClient

WATCH_SECONDS = 2.0
ENV_HELP = f"environment ({', '.join(ENVS)}) or release name (test-app-dev)"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _now() -> str:
    return timestamp(datetime.now(timezone.utc))  # noqa: UP017 (3.10)


# --- writes ----------------------------------------------------------------------------------


def _write(
    kube: ReleaseClient,
    name: str,
    patch: dict[str, Any],
    args: argparse.Namespace,
    what: str,
    tag: str | None = None,
    revision: int | None = None,
    goal: Callable[[int], Goal | CanaryGoal] | None = None,
) -> int:
    """Patch the release (or, with --dry-run=server, only ask the server), then wait for the
    operator unless --no-wait, and report the outcome. What is waited for: `goal` of the
    written generation, else Ready with `tag` and/or `revision`."""
    before = kube.get_release(name)  # a clear "not found" before anything is written
    if args.dry_run == "server":
        after = kube.patch_release(name, patch, dry_run=True)
        print(f"{RESOURCE} {name}: {what} (server dry run, nothing changed)")
        diff = views.revision_diff(
            f"{name} (now)", f"{name} (after)", _shown(before), _shown(after)
        )
        sys.stdout.write(diff)
        return Exit.OK
    _say(f"{name}: {what}")
    written = kube.patch_release(name, patch)
    generation = written["metadata"]["generation"]
    if args.no_wait:
        print(f"{RESOURCE} {name} patched (generation {generation}); not waiting")
        return Exit.OK
    wanted = goal(generation) if goal else Goal(generation, tag=tag, revision=revision)
    return _wait(kube, name, wanted, args.timeout)


def _shown(body: dict[str, Any]) -> dict[str, Any]:
    """What a dry run compares: the spec and our annotations."""
    annotations = body["metadata"].get("annotations") or {}
    ours = {k: v for k, v in annotations.items() if k.startswith("testapp.dev/")}
    return {"annotations": ours, "spec": body.get("spec") or {}}


def _wait(kube: ReleaseClient, name: str, goal: Goal | CanaryGoal, timeout: float | None) -> int:
    verdict = core.wait_for(
        lambda: kube.read_release_retrying(name),
        goal,
        timeout,
        emit=lambda line: _say(f"{name}: {line}"),
    )
    if verdict.state is core.State.SUCCEEDED:
        print(f"{name}: {verdict.message}")
    else:
        _say(f"error: {RESOURCE} {name}: {verdict.message}")
    return verdict.exit_code


def cmd_deploy(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    cause = args.cause or core.default_cause(os.environ, args.tag)
    if args.retry_failed:
        failed = core.failed_revision_of(kube.get_release(name), args.tag, args.digest)
        if failed is not None:
            what = f"retrying failed revision {failed['revision']} (tag {args.tag})"
            patch = core.stamp_patch("retryAt", _now(), cause)
            return _write(kube, name, patch, args, what, tag=args.tag)
    patch = core.deploy_patch(args.tag, cause, args.image, args.digest)
    pinned = f"@{args.digest}" if args.digest else ""
    what = f"deploying tag {args.tag}{pinned} ({cause})"
    return _write(kube, name, patch, args, what, tag=args.tag)


def cmd_retry(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    failed = core.retry_target(kube.get_release(name))
    what = f"retrying failed revision {failed['revision']} (tag {failed['tag']})"
    patch = core.stamp_patch("retryAt", _now(), args.cause)
    return _write(kube, name, patch, args, what, tag=failed["tag"])


def cmd_rollback(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    target = core.rollback_target(kube.get_release(name), args.to_revision)
    patch = core.pin_patch(target)
    if args.cause:
        patch["metadata"] = {"annotations": {core.CHANGE_CAUSE_ANNOTATION: args.cause}}
    return _write(kube, name, patch, args, f"pinning revision {target}", revision=target)


def cmd_unpin(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    what = "removing the pin, back to the latest revision"
    return _write(kube, name, core.pin_patch(None), args, what)


def cmd_pause(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    if args.dry_run == "server":
        return _write(kube, name, core.pause_patch(True), args, "pausing")
    kube.get_release(name)
    kube.patch_release(name, core.pause_patch(True))
    print(f"{RESOURCE} {name} paused: the operator changes nothing until it is resumed")
    return Exit.OK


def cmd_resume(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    return _write(kube, name, core.pause_patch(False), args, "resuming")


def cmd_restart(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    what = "restarting the Pods of the running revision (no new revision)"
    patch = core.stamp_patch("restartAt", _now(), args.cause)
    return _write(kube, name, patch, args, what)


def cmd_promote(kube: ReleaseClient, args: argparse.Namespace) -> int:
    source_name = core.release_name(args.from_env)
    target_name = core.release_name(args.to_env)
    source_env, target_env = core.env_of(source_name), core.env_of(target_name)
    core.check_promotion(source_env, target_env, args.skip_stages)
    source = core.promote_source(kube.get_release(source_name))
    cause = args.cause or f"promoted from {source_env} revision {source.revision}"
    patch = core.deploy_patch(
        source.tag,
        cause,
        source.image,
        source.digest,
        promoted_from=f"{source_env}/{source.revision}",
    )
    what = f"promoting tag {source.tag} from {source_name} revision {source.revision}"
    return _write(kube, target_name, patch, args, what, tag=source.tag)


def cmd_promote_step(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    body = kube.get_release(name)
    state = core.promote_step_target(body)
    what = (
        f"promoting step {core.step_position(body, state)} of the canary of revision "
        f"{state.revision}"
    )
    patch = core.promote_step_patch(state, args.cause)
    goal = lambda generation: CanaryGoal(generation, state.revision, step=state.step)  # noqa: E731
    return _write(kube, name, patch, args, what, goal=goal)


def cmd_abort(kube: ReleaseClient, args: argparse.Namespace) -> int:
    name = core.release_name(args.env)
    body = kube.get_release(name)
    state = core.canary_in_flight(body, "abort")
    what = (
        f"aborting the canary of revision {state.revision} (at step "
        f"{core.step_position(body, state)}); stable stays on revision {state.stable_revision}"
    )
    patch = core.abort_patch(body, state, args.cause)
    goal = lambda generation: CanaryGoal(generation, state.revision, abort=True)  # noqa: E731
    return _write(kube, name, patch, args, what, goal=goal)


# --- reads -----------------------------------------------------------------------------------


def cmd_status(kube: ReleaseClient, args: argparse.Namespace) -> int:
    if args.env is not None:
        name = core.release_name(args.env)
        body = kube.get_release(name)
        if args.wait:
            pin = (body.get("spec") or {}).get("revision")
            goal = Goal(body["metadata"]["generation"], revision=pin)
            return _wait(kube, name, goal, args.timeout)
        read = lambda: [kube.get_release(name)]  # noqa: E731
    else:
        if args.wait:
            raise CliError("--wait: name the release to wait for (status ENV --wait)", Exit.USAGE)
        read = kube.list_releases
    shown = None
    while True:
        # What the kubelet says of each release's Pods: in the wide view (one read per release).
        pods_of = kube.list_pods if args.output == "wide" else None
        records = views.status_records(read(), pods_of)
        now = datetime.now(timezone.utc)  # noqa: UP017 (3.10)
        # A watch prints again only when something other than the age changed.
        key = [{k: v for k, v in r.items() if k != "created"} for r in records]
        if key != shown:
            if not records and args.output in ("table", "wide"):
                _say(f"no {PLURAL} found")
            else:
                table = lambda wide: views.status_table(records, now, wide)  # noqa: B023, E731
                print(views.format_output(records, args.output, table), flush=True)
            shown = key
        if not args.watch:
            return Exit.OK
        time.sleep(WATCH_SECONDS)


def cmd_history(kube: ReleaseClient, args: argparse.Namespace) -> int:
    record = views.history_record(kube.get_release(core.release_name(args.env)))
    print(views.format_output(record, args.output, lambda wide: views.history_table(record, wide)))
    return Exit.OK


def cmd_diff(kube: ReleaseClient, args: argparse.Namespace) -> int:
    """diff ENV: running revision vs what the spec asks; diff ENV N: running vs N;
    diff ENV A B: A vs B; --tag X: running vs the spec with tag X (a deploy preview)."""
    name = core.release_name(args.env)
    body = kube.get_release(name)
    running = (body.get("status") or {}).get("revision")
    if running is None and args.rev_a is None:
        raise CliError(
            f"{RESOURCE} {name} runs no revision yet; name two revisions", Exit.NOT_FOUND
        )
    if args.rev_b is not None:
        left, right = args.rev_a, args.rev_b
    else:
        left, right = running, args.rev_a
    if args.tag is not None and args.rev_a is not None:
        raise CliError("--tag: compares the running revision with a deploy; drop N", Exit.USAGE)
    data_left = kube.revision_data(name, left)
    if right is not None:
        data_right, label = kube.revision_data(name, right), f"{name}-{right}"
    else:
        spec = dict(body.get("spec") or {})
        if args.tag is not None:
            spec["tag"] = args.tag
        try:
            data_right, label = views.spec_snapshot(spec), f"{name} (spec)"
        except ReleaseError as error:
            raise CliError(f"{RESOURCE} {name}: {error}", Exit.USAGE) from error
    sys.stdout.write(views.revision_diff(f"{name}-{left}", label, data_left, data_right))
    return Exit.OK


# --- command line ----------------------------------------------------------------------------


def _duration(text: str) -> float | None:
    try:
        return core.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _revision(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a revision number (1, 2, ...)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # Connection flags work before or after the command; SUPPRESS keeps a subcommand from
    # overwriting a value given before it (main() reads them with a None fallback).
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file")
    connection.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=views.OUTPUTS, default="table")
    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument(
        "--timeout",
        type=_duration,
        default=300.0,
        help="how long to wait: 90s, 5m, 1h30m, seconds; 0 waits forever (default 5m)",
    )
    writing = argparse.ArgumentParser(add_help=False, parents=[timeout])
    writing.add_argument("--no-wait", action="store_true", help="return once the patch is made")
    writing.add_argument(
        "--dry-run",
        nargs="?",
        const="server",
        default="none",
        choices=("none", "server"),
        help="server: the API server validates and admits the change, nothing is stored",
    )
    cause = argparse.ArgumentParser(add_help=False)
    cause.add_argument("--cause", help="why (the deployment log's CAUSE); only for this change")

    parser = argparse.ArgumentParser(
        prog="kubectl testapp",
        description="See and move test-app releases (TestAppRelease objects).",
        epilog="Exit codes: 0 ok, 1 failed or rolled back, 2 bad input, 3 timeout, "
        "4 not found or forbidden, 5 API server unreachable.",
        parents=[connection],
    )
    parser.add_argument("--version", action="store_true", help="print the plugin's version")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable[..., int], text: str, *parents: Any) -> Any:
        sub = commands.add_parser(name, help=text, description=text, parents=[connection, *parents])
        sub.set_defaults(handler=handler)
        return sub

    sub = command("status", cmd_status, "what runs in every environment (or one)", output, timeout)
    sub.add_argument("env", nargs="?", metavar="ENV", help=ENV_HELP)
    sub.add_argument("-w", "--watch", action="store_true", help="print again on every change")
    sub.add_argument("--wait", action="store_true", help="wait until ENV is Ready (exit code)")
    sub = command("history", cmd_history, "revisions and deployments of one release", output)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub = command("deploy", cmd_deploy, "deploy a tag (clears any pin) and wait", writing, cause)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub.add_argument("--tag", required=True, help="image tag to deploy")
    sub.add_argument("--image", help="image repository, without tag (default: keep)")
    sub.add_argument(
        "--digest", help="the tag's image digest, sha256:<hex>: Pods run exactly it (default: none)"
    )
    sub.add_argument(
        "--retry-failed",
        action="store_true",
        help="if TAG is the latest revision and it Failed, retry it (CI: Retry job retries)",
    )
    text = "pin the newest Ready revision older than the running one, and wait"
    sub = command("rollback", cmd_rollback, text, writing, cause)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub.add_argument("--to-revision", type=_revision, metavar="N", help="pin revision N instead")
    sub = command("retry", cmd_retry, "re-attempt the latest revision if it Failed", writing, cause)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub = command("unpin", cmd_unpin, "remove the pin: back to the latest revision", writing)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub = command("pause", cmd_pause, "the operator changes nothing until resume", writing)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub = command("resume", cmd_resume, "undo pause and wait for Ready", writing)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    text = "restart the Pods of the running revision (no new revision)"
    sub = command("restart", cmd_restart, text, writing, cause)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub = command("diff", cmd_diff, "diff revision snapshots, or a deploy preview (--tag)")
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    sub.add_argument("rev_a", type=_revision, nargs="?", metavar="N", help="default: the spec")
    sub.add_argument("rev_b", type=_revision, nargs="?", metavar="M", help="compare N with M")
    sub.add_argument("--tag", help="preview: the running revision vs a deploy of this tag")
    text = "deploy what runs in one env to the next (dev -> stg -> ppd -> prd)"
    sub = command("promote", cmd_promote, text, writing, cause)
    sub.add_argument("from_env", metavar="FROM", help=ENV_HELP)
    sub.add_argument("to_env", metavar="TO", help=ENV_HELP)
    sub.add_argument("--skip-stages", action="store_true", help="allow e.g. dev -> prd")
    text = "let the canary's current step pass (a pause, an analysis, a weight) and wait"
    sub = command("promote-step", cmd_promote_step, text, writing, cause)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    text = "abort the canary in flight: it goes to 0 replicas, stable stays; wait for Aborted"
    sub = command("abort", cmd_abort, text, writing, cause)
    sub.add_argument("env", metavar="ENV", help=ENV_HELP)
    return parser


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    for distribution in ("kubectl-testapp", "testapp-operator"):
        try:
            return installed(distribution)
        except PackageNotFoundError:
            continue
    return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"kubectl-testapp {version()}")
        return Exit.OK
    if args.command is None:
        parser.print_usage(sys.stderr)
        _say("kubectl testapp: error: a COMMAND is required (kubectl testapp --help)")
        return Exit.USAGE
    try:
        for attribute in ("env", "from_env", "to_env"):  # refused before any API call
            if getattr(args, attribute, None) is not None:
                core.release_name(getattr(args, attribute))
        from testapp_operator.cli import client

        try:
            kube = client.connect(getattr(args, "kubeconfig", None), getattr(args, "context", None))
            return args.handler(kube, args)
        except client.ConnectionFailure as error:
            _say(f"error: cannot reach the Kubernetes API server: {error}")
            return Exit.UNREACHABLE
    except CliError as error:
        _say(f"error: {error}")
        return error.code
    except KeyboardInterrupt:
        return 130


# --- shell completion: kubectl runs `kubectl_complete-testapp <words...> <partial>` -----------

NO_FILE_COMPLETION = 4  # cobra's ShellCompDirectiveNoFileComp


def completions(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[str]:
    """Candidates for the last word given the ones before it: commands, flags, environments."""
    *before, partial = list(words) or [""]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    positional = [w for w in before if not w.startswith("-")]
    if before and before[-1] in ("--kubeconfig", "--context", "-o", "--output"):
        choices = views.OUTPUTS if before[-1] in ("-o", "--output") else ()
        return [c for c in choices if c.startswith(partial)]
    if not positional:
        if partial.startswith("-"):
            return [o for o in parser._option_string_actions if o.startswith(partial)]
        return [c for c in subparsers.choices if c.startswith(partial)]
    sub = subparsers.choices.get(positional[0])
    if sub is None:
        return []
    if partial.startswith("-"):
        return sorted(
            o for o in sub._option_string_actions if o.startswith("--") and o.startswith(partial)
        )
    return [env for env in ENVS if env.startswith(partial)]


def complete(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    for candidate in completions(build_parser(), words):
        print(candidate)
    print(f":{NO_FILE_COMPLETION}")
    return Exit.OK
