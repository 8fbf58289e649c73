"""What a `kubectl testapp` command decides before and after it writes (pure: no I/O).

Names, durations, change causes, merge patches, which revision `rollback` pins, whether `retry`
applies, what `promote` carries, which canary step `promote-step` passes (and when `abort` and it
are refused), and the verdict of a wait. Standard library only, so the plugin
starts fast and runs on any Python the plugin supports.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from testapp_operator import APP, CHANGE_CAUSE_ANNOTATION, PROMOTED_FROM_ANNOTATION, canary
from testapp_operator.canary import CanaryState, Phase
from testapp_operator.release import ENVS

# As kubectl names the resource in messages: "testapprelease test-app-dev".
RESOURCE = "testapprelease"
NAME_PREFIX = f"{APP}-"
POLL_SECONDS = 1.0

Body = Mapping[str, Any]


class Exit(enum.IntEnum):
    """The plugin's exit codes (docs/cli.md); argparse exits USAGE on its own."""

    OK = 0
    FAILED = 1  # the change failed or was rolled back, or the API refused it
    USAGE = 2  # bad input: refused before any API call, or by the API server's validation
    TIMEOUT = 3  # still on its way when --timeout passed
    NOT_FOUND = 4  # no such release or revision, or not allowed to see it
    UNREACHABLE = 5  # no usable kubeconfig, or the API server cannot be reached


class CliError(Exception):
    """A failure the user can act on; main() prints it and exits with `code`."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code


class TransientError(Exception):
    """An API failure worth retrying while waiting (server error, lost connection)."""


# --- names and input -------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def release_name(env_or_name: str) -> str:
    """`dev` and `test-app-dev` both name the release `test-app-dev`; anything that cannot be a
    release name is refused here, before any API call."""
    name = env_or_name if env_or_name.startswith(NAME_PREFIX) else NAME_PREFIX + env_or_name
    if len(name) > 63 or not _NAME_RE.match(name):
        raise CliError(
            f"ENV: {env_or_name!r} is neither an environment ({', '.join(ENVS)}) nor a "
            "release name (lowercase letters, digits and '-', at most 63 characters)",
            Exit.USAGE,
        )
    return name


def env_of(name: str) -> str:
    return name.removeprefix(NAME_PREFIX)


_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float | None:
    """kubectl's durations (`90s`, `5m`, `1h30m`, a bare number of seconds) in seconds; `0` means
    no limit and gives None. Raises ValueError with the accepted forms."""
    value = text.strip()
    match = _DURATION_RE.match(value)
    if value and match is None:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
    elif value and any(match.groups()):
        hours, minutes, secs = (float(g or 0) for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        seconds = -1.0
    if seconds < 0 or seconds != seconds:  # NaN
        raise ValueError(
            f"{text!r} is not a duration: use 90s, 5m, 1h30m, seconds, or 0 (no limit)"
        )
    return None if seconds == 0 else seconds


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "no limit"
    return f"{seconds:g}s"


# --- causes and patches ----------------------------------------------------------------------


def default_cause(environ: Mapping[str, str], tag: str) -> str:
    """Who and what triggered a deploy: the GitLab job when there is one, else the user and the
    tag. A cause equal to the previous one is taken for inherited and dropped (k8s/operator
    admission policy), so it names what makes this change differ: the tag, or the job (a retried
    job has its own id)."""
    sha = environ.get("CI_COMMIT_SHORT_SHA") or environ.get("CI_COMMIT_SHA")
    login = environ.get("GITLAB_USER_LOGIN")
    url = environ.get("CI_PIPELINE_URL")
    job = environ.get("CI_JOB_ID")
    if not (sha or login or url or job):
        return f"kubectl-testapp deploy {tag} by {environ.get('USER') or 'unknown'}"
    cause = f"commit {sha}" if sha else "deploy"
    if login:
        cause += f" by {login}"
    if url:
        cause += f", pipeline {url}"
    if job:
        cause += f", job {job}"
    return cause


def deploy_patch(
    tag: str,
    cause: str,
    image: str | None = None,
    digest: str | None = None,
    promoted_from: str | None = None,
) -> dict[str, Any]:
    """One merge patch: the new tag and its digest, no pin (a new release is a deliberate
    roll-forward), why. No digest clears the old one: it belongs to the old tag's bytes."""
    spec: dict[str, Any] = {"tag": tag, "digest": digest, "revision": None}
    if image is not None:
        spec["image"] = image
    annotations = {CHANGE_CAUSE_ANNOTATION: cause}
    if promoted_from is not None:
        annotations[PROMOTED_FROM_ANNOTATION] = promoted_from
    return {"metadata": {"annotations": annotations}, "spec": spec}


def pin_patch(revision: int | None) -> dict[str, Any]:
    """Pin a revision, or (None) remove the pin; merge patch null deletes the field."""
    return {"spec": {"revision": revision}}


def pause_patch(paused: bool) -> dict[str, Any]:
    return {"spec": {"paused": paused}}


def stamp_patch(field: str, now: str, cause: str | None) -> dict[str, Any]:
    """Set a time-stamp field (`restartAt`, `retryAt`): a new value is the request."""
    patch: dict[str, Any] = {"spec": {field: now}}
    if cause:
        patch["metadata"] = {"annotations": {CHANGE_CAUSE_ANNOTATION: cause}}
    return patch


def split_image(ref: str) -> tuple[str, str | None]:
    """`repo:tag` -> (repo, tag); a `:` before the last `/` is a registry port, not a tag."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return repo, tag


# --- history decisions -----------------------------------------------------------------------


def history_of(body: Body) -> list[dict[str, Any]]:
    """status.history, newest revision first whatever order the server stored."""
    history = (body.get("status") or {}).get("history") or []
    return sorted(history, key=lambda entry: entry.get("revision", 0), reverse=True)


def describe_history(history: Iterable[Mapping[str, Any]]) -> str:
    listed = ", ".join(f"{e.get('revision')} ({e.get('outcome', '?')})" for e in history)
    return listed or "none"


def rollback_target(body: Body, to_revision: int | None = None) -> int:
    """The revision `rollback` pins: the one asked for, else the newest Ready revision older than
    the one running now. Run again, it goes further back (never forward)."""
    name = body["metadata"]["name"]
    history = history_of(body)
    if to_revision is not None:
        if any(entry.get("revision") == to_revision for entry in history):
            return to_revision
        raise CliError(
            f"{RESOURCE} {name} has no revision {to_revision} in its history "
            f"(revisions: {describe_history(history)})",
            Exit.NOT_FOUND,
        )
    running = (body.get("status") or {}).get("revision")
    for entry in history:
        older = running is None or entry.get("revision", 0) < running
        if older and entry.get("outcome") == "Ready":
            return entry["revision"]
    raise CliError(
        f"{RESOURCE} {name} has no Ready revision older than the running revision {running} "
        f"to roll back to (revisions: {describe_history(history)})",
        Exit.NOT_FOUND,
    )


def retry_target(body: Body) -> Mapping[str, Any]:
    """The Failed revision `retry` re-attempts: the latest one, if it Failed."""
    name = body["metadata"]["name"]
    history = history_of(body)
    if not history or history[0].get("outcome") != "Failed":
        raise CliError(
            f"{RESOURCE} {name}: nothing to retry, the latest revision is not Failed "
            f"(revisions: {describe_history(history)})"
        )
    return history[0]


def failed_revision_of(body: Body, tag: str, digest: str | None = None) -> Mapping[str, Any] | None:
    """The latest revision, if it Failed with `tag` (and `digest`) and the spec still asks for
    exactly that: a deploy of it changes no spec, so only a retry re-attempts it. Another digest
    of the same tag is a new build, and a plain deploy makes a new revision of it."""
    history = history_of(body)
    spec = body.get("spec") or {}
    latest = history[0] if history else {}
    failed = latest.get("outcome") == "Failed" and latest.get("tag") == tag
    asked = spec.get("tag") == tag and spec.get("digest") == digest
    if failed and asked and spec.get("revision") is None:
        return latest
    return None


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
        raise CliError(f"{RESOURCE} {name} has no deployed revision to promote")
    if entry.get("outcome") != "Ready":
        raise CliError(
            f"{RESOURCE} {name} revision {revision} is {entry.get('outcome')}, not Ready; "
            "promote only what has been Ready"
        )
    repo, _ = split_image(entry.get("image") or status.get("image", ""))
    return Source(revision=revision, image=repo, tag=entry["tag"], digest=entry.get("digest"))


def check_promotion(source_env: str, target_env: str, skip_stages: bool) -> None:
    """dev -> stg -> ppd -> prd, one stage at a time unless --skip-stages."""
    if source_env == target_env:
        raise CliError(f"cannot promote {source_env} to itself", Exit.USAGE)
    if source_env not in ENVS or target_env not in ENVS or skip_stages:
        return
    if ENVS.index(target_env) != ENVS.index(source_env) + 1:
        following = ENVS[ENVS.index(source_env) + 1 :]
        allowed = following[0] if following else "nothing (it is the last stage)"
        raise CliError(
            f"TO: {source_env} promotes to {allowed}, not {target_env} "
            f"(stages {' -> '.join(ENVS)}; --skip-stages to jump)",
            Exit.USAGE,
        )


# --- canary commands: spec.canaryCommand from status.canary (docs/canary.md) ----------------


def canary_of(body: Body) -> CanaryState | None:
    """status.canary, None when the release has none; a damaged one is refused naming the field."""
    data = (body.get("status") or {}).get("canary")
    if data is None:
        return None
    try:
        return CanaryState.from_status(data)
    except canary.StrategyError as error:
        raise CliError(f"{RESOURCE} {body['metadata']['name']}: {error}") from None


def canary_in_flight(body: Body, command: str) -> CanaryState:
    """The canary `promote-step` or `abort` acts on: one under way (not Promoted, not Aborted)."""
    name = body["metadata"]["name"]
    state = canary_of(body)
    if state is None:
        raise CliError(
            f"{RESOURCE} {name}: no canary in flight (no status.canary): "
            f"{command} acts on a canary under way (spec.strategy.canary)"
        )
    if state.phase in canary.DONE:
        raise CliError(
            f"{RESOURCE} {name}: no canary in flight: the canary of revision {state.revision} "
            f"is {state.phase.value}"
        )
    return state


def promote_step_target(body: Body) -> CanaryState:
    """The canary whose current step `promote-step` lets pass; none once every step passed."""
    state = canary_in_flight(body, "promote-step")
    steps = steps_of(body)  # 0: not known (an older status without steps, no spec.strategy)
    if state.phase is Phase.PROMOTING or 0 < steps <= state.step:
        raise CliError(
            f"{RESOURCE} {body['metadata']['name']}: nothing to promote: every step of the "
            f"canary of revision {state.revision} passed, stable is taking it (phase "
            f"{state.phase.value})"
        )
    return state


def _with_cause(patch: dict[str, Any], cause: str | None) -> dict[str, Any]:
    if cause:
        patch["metadata"] = {"annotations": {CHANGE_CAUSE_ANNOTATION: cause}}
    return patch


def promote_step_patch(state: CanaryState, cause: str | None = None) -> dict[str, Any]:
    """spec.canaryCommand: step `state.step` of canary `state.revision` passes, whatever it
    waits for (a level: written twice, it changes nothing)."""
    command = {"revision": state.revision, "promoteStep": state.step, "abort": False}
    return _with_cause({"spec": {"canaryCommand": command}}, cause)


def abort_patch(body: Body, state: CanaryState, cause: str | None = None) -> dict[str, Any]:
    """spec.canaryCommand: abort canary `state.revision`. A promoteStep already written for the
    same canary stays; one about another canary is removed (merge patch null), never carried over
    to this one."""
    before = (body.get("spec") or {}).get("canaryCommand") or {}
    same = isinstance(before, Mapping) and before.get("revision") == state.revision
    step = before.get("promoteStep") if same else None
    command = {"revision": state.revision, "promoteStep": step, "abort": True}
    return _with_cause({"spec": {"canaryCommand": command}}, cause)


def steps_of(body: Body) -> int:
    """How many steps the canary has: status.canary.steps, else the spec's."""
    steps = ((body.get("status") or {}).get("canary") or {}).get("steps")
    if isinstance(steps, int) and not isinstance(steps, bool):
        return steps
    return len(_spec_steps(body))


def _spec_steps(body: Body) -> list[Any]:
    strategy = (body.get("spec") or {}).get("strategy") or {}
    steps = ((strategy.get("canary") if isinstance(strategy, Mapping) else None) or {}).get("steps")
    return steps if isinstance(steps, list) else []


def describe_step(body: Body, index: int) -> str:
    """Step `index` of the spec's strategy in a few words: setWeight 50, pause 60s, analysis."""
    steps = _spec_steps(body)
    step = steps[index] if 0 <= index < len(steps) else None
    if not isinstance(step, Mapping) or len(step) != 1:
        return "?"
    ((kind, value),) = step.items()
    if kind == "setWeight":
        return f"setWeight {value}"
    if kind == "pause":
        duration = value.get("duration") if isinstance(value, Mapping) else None
        return "pause (until promote-step)" if duration is None else f"pause {duration}"
    return str(kind)


def step_position(body: Body, state: CanaryState, index: int | None = None) -> str:
    """`3/5 (setWeight 50)` for step `index` (default: the current one), counted from 1."""
    index = state.step if index is None else index
    return f"{index + 1}/{steps_of(body)} ({describe_step(body, index)})"


# --- waiting ---------------------------------------------------------------------------------


PAUSED_MESSAGE = "the release is paused (spec.paused: true); nothing rolls out until it is resumed"


class State(enum.Enum):
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed out"


@dataclasses.dataclass(frozen=True)
class Goal:
    """What a write waits for: the operator saw `generation`, and then tag and/or revision."""

    generation: int
    tag: str | None = None
    revision: int | None = None


@dataclasses.dataclass(frozen=True)
class CanaryGoal:
    """What a canary command waits for: the operator saw `generation`, then the canary of
    `revision` went past `step` (promote-step) or, with `abort`, is Aborted."""

    generation: int
    revision: int
    step: int | None = None
    abort: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    state: State
    message: str

    @property
    def exit_code(self) -> Exit:
        return {
            State.SUCCEEDED: Exit.OK,
            State.TIMED_OUT: Exit.TIMEOUT,
        }.get(self.state, Exit.FAILED)


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
        return PAUSED_MESSAGE
    if goal.tag is not None and not runs_tag(status, goal.tag):
        newest = next((e for e in history_of(body) if e.get("tag") == goal.tag), None)
        if newest is not None and newest.get("outcome") == "Failed":
            return (
                f"revision {newest.get('revision')} (tag {goal.tag}) failed; "
                f"running revision {status.get('revision')} ({status.get('image')})"
            )
    return None


def runs_tag(status: Mapping[str, Any], tag: str) -> bool:
    return str(status.get("image", "")).endswith(":" + tag)


def judge(body: Body, goal: Goal | CanaryGoal) -> Verdict:
    """Decide from one read of the release whether a write has landed, failed, or is on its way."""
    status = body.get("status") or {}
    if status.get("observedGeneration", 0) < goal.generation:
        return Verdict(
            State.WAITING, f"waiting for the operator to observe generation {goal.generation}"
        )
    if isinstance(goal, CanaryGoal):
        return judge_canary(body, goal)
    failure = _failure(body, goal)
    if failure is not None:
        return Verdict(State.FAILED, failure)
    arrived = (
        status.get("phase") == "Ready"
        and (goal.tag is None or runs_tag(status, goal.tag))
        and (goal.revision is None or status.get("revision") == goal.revision)
        and (goal.tag is not None or goal.revision is not None or not status.get("pinned"))
    )
    if arrived:
        return Verdict(
            State.SUCCEEDED,
            f"revision {status.get('revision')} is Ready, image {status.get('image')}",
        )
    return Verdict(State.WAITING, progress_line(body))


def judge_canary(body: Body, goal: CanaryGoal) -> Verdict:
    """After the operator saw the command: did the step pass, did the canary end?"""
    if (body.get("status") or {}).get("phase") == "Paused":
        return Verdict(State.FAILED, PAUSED_MESSAGE)
    try:
        state = canary_of(body)
    except CliError as error:
        return Verdict(State.FAILED, str(error))
    if state is None:
        return Verdict(State.FAILED, f"the canary of revision {goal.revision} is gone from status")
    if state.revision != goal.revision:
        return Verdict(
            State.FAILED,
            f"revision {goal.revision} is no longer the canary (status.canary is about "
            f"revision {state.revision})",
        )
    ended = f"the canary of revision {state.revision} is {state.phase.value}"
    ended += f": {state.message}" if state.message else ""
    if goal.abort:
        if state.phase is Phase.ABORTED:
            stable = f"stable runs revision {state.stable_revision}"
            return Verdict(State.SUCCEEDED, f"{ended}; {stable}")
        if state.phase is Phase.PROMOTED:
            return Verdict(State.FAILED, f"{ended} (promoted before the abort)")
        return Verdict(State.WAITING, canary_line(body, state))
    if state.phase is Phase.ABORTED:
        return Verdict(State.FAILED, ended)
    if state.phase is Phase.PROMOTED:
        return Verdict(State.SUCCEEDED, ended)
    if goal.step is not None and state.step > goal.step:
        passed = f"step {goal.step + 1}/{steps_of(body)} passed: {describe_step(body, goal.step)}"
        if state.phase is Phase.PROMOTING:
            return Verdict(State.SUCCEEDED, f"{passed}; promoting revision {state.revision}")
        return Verdict(State.SUCCEEDED, f"{passed}; now step {step_position(body, state)}")
    return Verdict(State.WAITING, canary_line(body, state))


def canary_line(body: Body, state: CanaryState) -> str:
    """One progress line of a canary: revision, step, phase, weight, message."""
    phase = state.phase.value
    if state.pause_reason is not None:
        phase += f" ({state.pause_reason.value})"
    if state.step < steps_of(body):
        where = f"step {step_position(body, state)}"
    else:
        where = "every step passed"
    line = f"canary revision {state.revision}: {where}, phase {phase}, weight {state.weight}%"
    return f"{line}: {state.message}" if state.message else line


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
    goal: Goal | CanaryGoal,
    timeout: float | None,
    emit: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Poll until the verdict is final or `timeout` (None: no limit) passes; emit a line only
    when it changes."""
    deadline = None if timeout is None else clock() + timeout
    last = ""
    while True:
        try:
            verdict = judge(read(), goal)
        except TransientError as error:
            verdict = Verdict(State.WAITING, f"retrying: {error}")
        if verdict.state is not State.WAITING:
            return verdict
        if verdict.message != last:
            emit(verdict.message)
            last = verdict.message
        remaining = POLL_SECONDS if deadline is None else deadline - clock()
        if remaining <= 0:
            return Verdict(
                State.TIMED_OUT,
                f"timed out after {format_duration(timeout)}; last seen: {last}",
            )
        sleep(min(POLL_SECONDS, remaining))
