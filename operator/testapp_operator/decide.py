"""One reconcile's decision: from what exists to what to write (pure: no I/O).

`decide(observed, memory, now) -> Actions` is the whole of it. `Observed` is one snapshot of a
release's world (its body, its children by kind and name, its ControllerRevisions); `Memory` is
what the shell remembers of earlier reconciles; `Actions` lists the writes in the order the shell
makes them, the events to record once they succeeded, the log lines, and when to look again.

Children come from `render.children` (and `render.child_keys`): a new kind of child is a row of
`render.CHILDREN` (the watches, indexes and RBAC check follow it), and nothing here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from testapp_operator import GENERATION_LABEL, OUTCOME_ANNOTATION, canary, render
from testapp_operator.canary import CanaryState, Measurement, MeasurementRequest, StrategyError
from testapp_operator.canary_rollout import Steering, steer
from testapp_operator.conditions import set_condition
from testapp_operator.deploylog import Abort, log_after
from testapp_operator.drift import needs_apply
from testapp_operator.release import Release, ReleaseError, Snapshot
from testapp_operator.revisions import Decision, Outcome, Plan, Revision, plan
from testapp_operator.rollout import Rollout, observe_deployment
from testapp_operator.status import compute_status

Body = dict[str, Any]

# A status change that only reports rollout progress (replica counts, messages) is written at most
# this often per release; a change of phase, revision or generation is written at once. Without
# it every new release cost one extra status write per step of its rollout.
PROGRESS_INTERVAL = 30.0
# Our view of the release lags behind what runs (another operator acted on a newer spec): the
# watch catches up within moments. A view still behind after the grace is not lag (someone edited
# the Deployment's generation label): the reconcile goes ahead and restores it.
STALE_RETRY = 0.5
STALE_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class Observed:
    """What exists for one release: None where an object does not."""

    release: Body | None
    children: Mapping[tuple[str, str], Body | None] = field(default_factory=dict)  # (kind, name)
    revisions: Sequence[Body] = ()  # its ControllerRevisions


@dataclass(frozen=True)
class Memory:
    """What earlier reconciles of the release leave for the next one."""

    held_back: Snapshot | None = None  # the spec a pin holds back, already warned about
    stale_since: datetime | None = None  # when our view of the release was first behind
    since_status_write: float = math.inf  # seconds since our last status write


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Note:
    """One log line: a decision, or input the operator had to ignore."""

    level: int
    message: str
    reason: str | None = None
    revision: int | None = None


@dataclass(frozen=True)
class Actions:
    """One reconcile's writes, in the order they are made, and what follows them."""

    memory: Memory = Memory()
    notes: tuple[Note, ...] = ()
    # 1. Outcome annotations on ControllerRevisions, by name.
    annotate: tuple[tuple[str, dict[str, str]], ...] = ()
    # 2. The Namespace when it is missing: it holds everything else.
    namespace: Body | None = None
    # 3. The Deployment, alone: it is what a change waits for, and every write running beside it
    #    slows its apply down on the API server.
    deployment: Body | None = None
    # 4. The other children and the new revision's ControllerRevision, together.
    children: tuple[Body, ...] = ()
    record: Body | None = None
    # 5. ControllerRevisions to delete, each with the event to record if this delete removed it;
    #    children no longer wanted (kind, name): the canary Deployment once the strategy is gone.
    prune: tuple[tuple[str, Event], ...] = ()
    remove: tuple[tuple[str, str], ...] = ()
    # 6. Events, once the writes above succeeded; then the status (a merge patch).
    events: tuple[Event, ...] = ()
    status: Body | None = None
    phase: str | None = None
    requeue_after: float | None = None
    # Nothing is written: run this query, then decide again with its answer.
    measure: MeasurementRequest | None = None
    analysed: tuple[str, ...] = ()  # verdicts of the measurement taken (testapp_analysis_total)
    canary_weight: int | None = None  # the canary's share now, while it has one


def decide(
    observed: Observed, memory: Memory, now: datetime, measurement: Measurement | None = None
) -> Actions:
    body = observed.release
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Actions(memory=memory)
    try:
        release = Release.from_body(body)
    except ReleaseError as error:
        return _invalid(body, error, memory, now)
    name = release.name
    running = observed.children.get(("Deployment", name))
    if _rendered_from_newer_spec(running, release):
        since = memory.stale_since or now
        if now - since < STALE_GRACE:
            return Actions(memory=replace(memory, stale_since=since), requeue_after=STALE_RETRY)
    memory = replace(memory, stale_since=None)
    rollout = observe_deployment(running)
    canary_deployment = observed.children.get(("Deployment", render.canary_name(name)))
    stored, notes = _read_revisions(name, observed.revisions)
    # Outcomes from the freshest status we know of (our own last write, if the watch lags).
    revisions = _with_recorded_outcomes(stored, body)
    decided = plan(release, revisions, rollout)
    status = body.get("status") or {}
    previous_canary = _canary_state(name, status, notes)
    known = [*revisions, *([decided.create] if decided.create else [])]
    steering = steer(
        release,
        decided,
        {r.number: r for r in known},
        previous_canary,
        rollout,
        observe_deployment(canary_deployment),
        measurement,
        now,
    )
    if steering.measure is not None:
        return Actions(memory=memory, notes=tuple(notes), measure=steering.measure)
    ending = steering.ending
    if ending is not None and ending.outcome is canary.Outcome.ABORTED:
        decided = _after_abort(release, revisions, rollout, steering)
    decided = _explained(decided, steering.state)
    new_generation = status.get("observedGeneration") != release.generation
    # A canary under way deploys its target on every reconcile: said once, when it starts.
    canary_going_on = (
        previous_canary is not None
        and previous_canary.phase not in canary.DONE
        and decided.target is not None
        and previous_canary.revision == decided.target.number
    )
    deploying = decided.deploy and not canary_going_on
    if decided.decision is not Decision.UNCHANGED and (new_generation or deploying):
        number = decided.target.number if decided.target else None
        notes.append(
            Note(logging.INFO, f"{name}: {decided.message}", str(decided.decision), number)
        )

    stored_outcomes = {r.number: r.outcome for r in stored}
    # Failed is also kept on the ControllerRevision, so that an operator that lost the release's
    # status still never retries a failed revision.
    annotate = tuple(
        (f"{name}-{number}", {OUTCOME_ANNOTATION: str(outcome)})
        for number, outcome in decided.outcomes
        if Outcome.FAILED in (outcome, stored_outcomes.get(number))
    )
    events: list[Event] = []
    namespace = deployment = record = None
    children: list[Body] = []
    if steering.running is not None and not release.paused:
        # Nothing in the spec or the canary moved since the last reconcile, yet an object
        # differs: drift.
        steady = (
            not new_generation
            and not decided.deploy
            and steering.state == previous_canary
            and (steering.state is None or steering.state.phase in canary.DONE)
        )
        changed, drifted = _changes(release, steering.running, observed, steady)
        for desired in changed:
            kind, child = desired["kind"], desired["metadata"]["name"]
            current = observed.children.get((kind, child))
            if kind == "Namespace" and current is None:
                namespace = desired
            elif kind == "Deployment":
                # Applied only over the version this decision saw (see docs/design.md).
                desired = _precondition(desired, current)
                if child == name:
                    deployment = desired
                else:
                    children.append(desired)
            else:
                children.append(desired)
        if drifted:
            events.append(Event("Normal", "DriftCorrected", "restored " + ", ".join(drifted)))
    events += [_canary_event(event) for event in steering.events]
    if decided.create is not None:
        # Should this write fail, the next reconcile records what runs under the number it runs
        # with (revisions.plan), so the history stays strictly increasing and complete.
        record = render.controller_revision(release, decided.create)
        # A revision recorded after its rollout began had its event from the one that began it.
        if decided.create.number != decided.deployed:
            # What changed, from the snapshot's serialization (revisions.plan), and what runs.
            message = f"{decided.message} ({decided.create.snapshot.image_ref})"
            events.append(Event("Normal", "RevisionCreated", message))
    prune = tuple(
        (f"{name}-{number}", Event("Normal", "Pruned", f"revision {number} pruned"))
        for number in decided.prune
    )
    announced, held_back = _announce(release, decided, status, memory, new_generation)
    events += announced

    new_status = compute_status(
        release,
        decided,
        rollout,
        revisions,
        status.get("conditions") or [],
        now,
        _progress(release, steering.state),
    )
    new_status["deployments"] = log_after(body, decided, rollout, now, _abort(steering))
    if steering.state is not None and release.strategy is not None:
        new_status["canary"] = steering.state.to_status(len(release.strategy.steps))
    patch, requeue_after = None, None
    if _differs(new_status, status):
        wait = _progress_wait(new_status, status, memory.since_status_write)
        if wait > 0:
            requeue_after = wait
        else:
            # Keys the new status no longer has are removed (None in a merge patch).
            patch = {key: new_status.get(key) for key in {*status, *new_status}}
    return Actions(
        memory=replace(memory, held_back=held_back),
        notes=tuple(notes),
        annotate=annotate,
        namespace=namespace,
        deployment=deployment,
        children=tuple(children),
        record=record,
        prune=prune,
        remove=_unwanted(release, canary_deployment),
        events=tuple(events),
        status=patch,
        phase=new_status["phase"],
        requeue_after=_sooner(requeue_after, steering.requeue_after),
        analysed=tuple(e.verdict.value for e in steering.events if e.verdict is not None),
        canary_weight=_weight(steering.state),
    )


def _canary_state(name: str, status: Mapping[str, Any], notes: list[Note]) -> CanaryState | None:
    data = status.get("canary")
    if data is None:
        return None
    try:
        return CanaryState.from_status(data)
    except StrategyError as error:
        notes.append(Note(logging.WARNING, f"{name}: ignoring status.canary: {error}"))
        return None


def _after_abort(
    release: Release, revisions: list[Revision], rollout: Rollout, steering: Steering
) -> Plan:
    """The plan once the aborted canary's revision is Failed: what an automatic rollback does
    (the newest Ready revision runs, the release is Degraded, a Failed revision is not retried),
    and the Failed outcome recorded on its ControllerRevision too."""
    assert steering.state is not None
    aborted = steering.state.revision
    failed = [replace(r, outcome=Outcome.FAILED) if r.number == aborted else r for r in revisions]
    decided = plan(release, failed, rollout)
    outcomes = dict(decided.outcomes) | {aborted: Outcome.FAILED}
    return replace(decided, outcomes=tuple(sorted(outcomes.items())))


def _explained(decided: Plan, state: CanaryState | None) -> Plan:
    """An automatic rollback after an aborted canary says why the canary was aborted."""
    if (
        decided.decision is not Decision.ROLLED_BACK
        or state is None
        or state.phase is not canary.Phase.ABORTED
        or decided.target is None
        or decided.target.number != state.stable_revision
    ):
        return decided
    message = (
        f"revision {state.revision} aborted as a canary ({state.message}); revision "
        f"{state.stable_revision} runs; change the spec or set spec.retryAt (kubectl testapp "
        "retry) to try again"
    )
    return replace(decided, message=message)


def _progress(release: Release, state: CanaryState | None) -> str | None:
    """The Ready condition's message while a canary is under way."""
    if state is None or release.strategy is None or state.phase in canary.DONE:
        return None
    steps = len(release.strategy.steps)
    position = f"step {min(state.step + 1, steps)}/{steps}"
    return f"canary of revision {state.revision}: {position}, weight {state.weight}%: " + (
        state.message or state.phase.value
    )


def _abort(steering: Steering) -> Abort | None:
    ending, state = steering.ending, steering.state
    if ending is None or state is None or ending.outcome is not canary.Outcome.ABORTED:
        return None
    return Abort(state.revision, ending.reason, ending.message, ending.value)


def _canary_event(event: canary.Event) -> Event:
    return Event("Warning" if event.warning else "Normal", event.reason, event.message)


def _unwanted(release: Release, canary_deployment: Body | None) -> tuple[tuple[str, str], ...]:
    """The canary Deployment of a release that no longer has a strategy."""
    if release.strategy is None and canary_deployment is not None:
        return (("Deployment", render.canary_name(release.name)),)
    return ()


def _weight(state: CanaryState | None) -> int | None:
    return None if state is None or state.phase in canary.DONE else state.weight


def _sooner(first: float | None, second: float | None) -> float | None:
    waits = [wait for wait in (first, second) if wait is not None]
    return min(waits) if waits else None


def with_created(status: Body, revision: int, created: str) -> Body:
    """The status patch with the server's creationTimestamp for the revision just recorded, so
    the history shows it at once and needs no second status write."""
    history = [
        {**item, "created": created} if item.get("revision") == revision else item
        for item in status.get("history") or []
    ]
    return {**status, "history": history}


def _rendered_from_newer_spec(deployment: Body | None, release: Release) -> bool:
    """The Deployment was rendered from a later generation of this very release than the one
    we see: acting on ours would deploy an older spec over a newer one."""
    if deployment is None:
        return False
    metadata = deployment["metadata"]
    owners = {owner.get("uid") for owner in metadata.get("ownerReferences") or []}
    generation = (metadata.get("labels") or {}).get(GENERATION_LABEL, "")
    return release.uid in owners and generation.isdigit() and int(generation) > release.generation


def _with_generation_of(current: Body | None, desired: Body, generation: int) -> Body:
    """`desired` with the (older) generation label `current` already carries. The label says
    which spec last wrote the object, so a spec change that leaves the object as it is (a pin to
    a missing revision, a new history limit) does not write it only to move the label."""
    labels = desired["metadata"].get("labels") or {}
    seen = (((current or {}).get("metadata") or {}).get("labels") or {}).get(GENERATION_LABEL, "")
    if GENERATION_LABEL not in labels or not seen.isdigit() or int(seen) > generation:
        return desired
    metadata = {**desired["metadata"], "labels": {**labels, GENERATION_LABEL: seen}}
    return {**desired, "metadata": metadata}


def _precondition(desired: Body, current: Body | None) -> Body:
    """`desired` applied only if the object is still at the version we saw: the API server
    answers 409 Conflict when another writer changed it since."""
    if current is None:
        return desired
    version = current["metadata"]["resourceVersion"]
    return {**desired, "metadata": {**desired["metadata"], "resourceVersion": version}}


def _changes(
    release: Release, running: render.Running, observed: Observed, steady: bool
) -> tuple[list[Body], list[str]]:
    """The children whose desired state differs from what exists, and which of those
    differences nothing in the spec explains (drift: "Deployment changed")."""
    changed, drifted = [], []
    for desired in render.children(release, running):
        current = observed.children.get((desired["kind"], desired["metadata"]["name"]))
        if needs_apply(_with_generation_of(current, desired, release.generation), current):
            changed.append(desired)
            if steady:
                drifted.append(f"{desired['kind']} {'changed' if current else 'missing'}")
    return changed, drifted


def _announce(
    release: Release,
    decided: Plan,
    status: Mapping[str, Any],
    memory: Memory,
    new_generation: bool,
) -> tuple[list[Event], Snapshot | None]:
    """One event per decision, when it is first made (not on every resync); and the spec a pin
    now holds back."""
    events = []
    was_pinned = bool(status.get("pinned"))
    decision = decided.decision
    if decision is Decision.REVISION_NOT_FOUND and new_generation:
        events.append(Event("Warning", "RevisionNotFound", decided.message))
    elif decision is Decision.PINNED and decided.deploy:
        message = f"rolled back to revision {decided.target.number} (pinned)"
        events.append(Event("Normal", "RolledBack", message))
    elif decision is Decision.ROLLED_BACK and decided.deploy:
        events.append(Event("Warning", "AutoRolledBack", decided.message))
    held_back = memory.held_back
    if decision is Decision.PINNED and new_generation:
        holds = release.snapshot != decided.target.snapshot
        # Warn once per spec held back, not on every scale or annotation change.
        if holds and memory.held_back != release.snapshot:
            events.append(Event("Warning", "Pinned", decided.message))
        elif not was_pinned:
            events.append(Event("Normal", "Pinned", decided.message))
        held_back = release.snapshot if holds else None
    if release.pin is None and was_pinned and new_generation:
        events.append(Event("Normal", "Unpinned", "spec.revision cleared: rolling forward"))
    return events, held_back


def _invalid(body: Body, error: ReleaseError, memory: Memory, now: datetime) -> Actions:
    """Bad input that got past the API server: say so in status, change nothing running."""
    name = body["metadata"]["name"]
    message = str(error)
    conditions = (body.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    if ready.get("reason") == "InvalidSpec" and ready.get("message") == message:
        return Actions(memory=memory, phase="Degraded")
    generation = body["metadata"].get("generation")
    return Actions(
        memory=memory,
        notes=(Note(logging.WARNING, f"{name}: invalid spec: {message}"),),
        events=(Event("Warning", "InvalidSpec", message),),
        status={
            "phase": "Degraded",
            "conditions": set_condition(
                conditions, "Ready", False, "InvalidSpec", message, generation, now
            ),
        },
        phase="Degraded",
    )


def _read_revisions(name: str, bodies: Sequence[Body]) -> tuple[list[Revision], list[Note]]:
    revisions, notes = [], []
    for obj in bodies:
        try:
            revisions.append(Revision.from_controller_revision(obj))
        except ReleaseError as error:
            cr_name = obj["metadata"]["name"]
            notes.append(
                Note(logging.WARNING, f"{name}: ignoring ControllerRevision {cr_name}: {error}")
            )
    return revisions, notes


def _with_recorded_outcomes(revisions: list[Revision], body: Body) -> list[Revision]:
    """Outcomes are recorded in status.history, which wins; the ControllerRevision's annotation
    (kept only for Failed) stands in when the status lost a revision. Recording every outcome on
    the ControllerRevisions would cost one more write per rollout."""
    history = (body.get("status") or {}).get("history") or []
    recorded = {item.get("revision"): item.get("outcome") for item in history}
    return [
        replace(revision, outcome=Outcome(recorded[revision.number]))
        if recorded.get(revision.number) in set(Outcome)
        else revision
        for revision in revisions
    ]


def _progress_wait(new: Mapping[str, Any], old: Mapping[str, Any], since: float) -> float:
    """Seconds to hold back a status write that only reports progress (0: write now)."""
    if _decisive(new) != _decisive(old):
        return 0.0
    return max(0.0, PROGRESS_INTERVAL - since)


def _decisive(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status without what a rollout's progress changes: replica counts and messages."""
    kept = {
        k: v
        for k, v in status.items()
        if v is not None and k not in ("replicas", "readyReplicas", "conditions")
    }
    kept["conditions"] = sorted(
        (c.get("type"), c.get("status"), c.get("reason")) for c in status.get("conditions") or []
    )
    return kept


def _differs(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return {k: v for k, v in new.items() if v is not None} != {
        k: v for k, v in old.items() if v is not None
    }
