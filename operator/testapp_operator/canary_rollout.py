"""What the two Deployments of a canaried release run, after `revisions.plan` (pure: no I/O).

`plan` says which revision the release should end up running (its target) and which runs now
(`deployed`, the stable Deployment's). `steer` decides how to get there:
- no `spec.strategy`: straight to the target, one Deployment (today's rolling update);
- a target that was Ready once (a pin, `kubectl testapp rollback`, an automatic rollback), a
  first deploy, or a stable revision that is not Ready itself: straight to the target, the canary
  Deployment empty (the fast rollback: no steps for going back);
- any other new target: a canary of it against the stable revision, step by step
  (`canary.advance`). A canary whose revision is no longer the target ends, superseded; a
  revision aborted as a canary is not tried again until a new revision (or a retry) is made.

Public interface:
- `Steering(running, state, events, ending, measure, requeue_after)`.
- `steer(release, plan, revisions, previous, stable, canary_rollout, measurement, now)`.
- `ready_pods(rollout) -> int`: the Pods of a Deployment's current template that are ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from testapp_operator import canary
from testapp_operator.canary import CANARY, STABLE, CanaryState, Measurement, Phase
from testapp_operator.release import Release
from testapp_operator.render import Running
from testapp_operator.revisions import Outcome, Plan, Revision
from testapp_operator.rollout import Rollout


@dataclass(frozen=True)
class Steering:
    running: Running | None  # None: nothing can run (no target)
    state: CanaryState | None = None  # status.canary to store
    events: tuple[canary.Event, ...] = ()
    ending: canary.Ending | None = None  # set on the reconcile that ends the canary
    measure: canary.MeasurementRequest | None = None  # run it, then steer again with its answer
    requeue_after: float | None = None


def ready_pods(rollout: Rollout) -> int:
    """A lower bound of the ready Pods of the current template: while old Pods remain, every
    one of them may be among the ready."""
    if not rollout.exists or not rollout.current:
        return 0
    old = max(rollout.replicas - rollout.updated, 0)
    return min(rollout.updated, max(rollout.ready - old, 0))


def steer(
    release: Release,
    plan: Plan,
    revisions: Mapping[int, Revision],
    previous: CanaryState | None,
    stable: Rollout,
    canary_rollout: Rollout,
    measurement: Measurement | None,
    now: datetime,
) -> Steering:
    target = plan.target
    strategy = release.strategy
    if target is None or release.paused:
        return Steering(None, previous if strategy else None)
    if strategy is None:
        return Steering(Running.only(release, target))
    in_flight = previous is not None and previous.phase not in canary.DONE
    if in_flight and previous.revision == target.number:
        state = previous
    elif _aborted(previous, target) and previous.stable_revision in revisions:
        # A pin to a revision aborted as a canary: stable keeps what it ran.
        stable_revision = revisions[previous.stable_revision]
        return Steering(Running(stable_revision, release.replicas, target, 0), previous)
    elif _canaried(plan, target, revisions):
        state = canary.start(target.number, plan.deployed, now)
    else:
        return _direct(release, target, revisions, previous, in_flight)
    observation = canary.Observation(
        now,
        _ready(stable, canary_rollout),
        measurement,
        release.canary_command,
        canary_failed=_failure(canary_rollout, state.revision),
    )
    request = canary.due_measurement(
        strategy, state, now, canary.QueryContext(release.name, release.namespace, target.number)
    )
    if request is not None and measurement is None:
        return Steering(None, state, measure=request)
    decided = canary.advance(strategy, release.replicas, state, observation)
    return Steering(
        _running(release, decided, revisions, observation),
        decided.state,
        decided.events,
        decided.ending,
        requeue_after=decided.requeue_after,
    )


def _direct(
    release: Release,
    target: Revision,
    revisions: Mapping[int, Revision],
    previous: CanaryState | None,
    in_flight: bool,
) -> Steering:
    """Straight to the target; the canary Deployment keeps its template, at 0 replicas."""
    kept = revisions.get(previous.revision, target) if previous is not None else target
    running = Running(target, release.replicas, kept, 0)
    if not in_flight:
        return Steering(running, previous)
    assert previous is not None
    message = f"superseded: revision {target.number} runs without steps"
    state = replace(previous, phase=Phase.ABORTED, pause_reason=None, message=message)
    event = canary.Event("CanarySuperseded", f"revision {previous.revision}: {message}", True)
    return Steering(running, state, (event,))


def _aborted(previous: CanaryState | None, target: Revision) -> bool:
    return (
        previous is not None
        and previous.phase is Phase.ABORTED
        and previous.revision == target.number
        and target.outcome is not Outcome.READY
    )


def _canaried(plan: Plan, target: Revision, revisions: Mapping[int, Revision]) -> bool:
    """A new target goes through the steps: never Ready, against a stable revision that is."""
    stable = revisions.get(plan.deployed) if plan.deployed is not None else None
    return (
        plan.deploy
        and target.outcome is not Outcome.READY
        and stable is not None
        and stable.outcome is Outcome.READY
    )


def _ready(stable: Rollout, canary_rollout: Rollout) -> dict[tuple[str, int], int]:
    ready = {}
    for track, rollout in ((STABLE, stable), (CANARY, canary_rollout)):
        if rollout.revision is not None:
            ready[(track, rollout.revision)] = ready_pods(rollout)
    return ready


def _failure(canary_rollout: Rollout, revision: int) -> str | None:
    if canary_rollout.revision == revision and canary_rollout.deadline_exceeded:
        return f"the canary Deployment: {canary_rollout.message}"
    return None


def _running(
    release: Release,
    decided: canary.Decision,
    revisions: Mapping[int, Revision],
    observation: canary.Observation,
) -> Running:
    """The split, but stable gives a Pod up only once a canary Pod is ready to take its place:
    the ready Pods never drop below spec.replicas while the weight moves."""
    stable_replicas = decided.stable.replicas
    if decided.stable.revision != decided.canary.revision:
        ready = min(
            observation.ready_pods(CANARY, decided.canary.revision), decided.canary.replicas
        )
        stable_replicas = max(stable_replicas, release.replicas - ready)
    return Running(
        revisions[decided.stable.revision],
        stable_replicas,
        revisions[decided.canary.revision],
        decided.canary.replicas,
    )
