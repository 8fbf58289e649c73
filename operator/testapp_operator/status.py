"""The TestAppRelease `status` that follows from a plan and a rollout (pure: no I/O).

Public interface:
- `PHASES`: the values of `status.phase`.
- `compute_status(release, plan, rollout, revisions, previous_conditions, now) -> dict`: the whole
  `status` of docs/design.md. `revisions` are the ones given to `revisions.plan`; the history
  shows them as they are once the plan is carried out. Deterministic: an unchanged world gives an
  equal dict (conditions keep their lastTransitionTime while their status holds), so a caller
  can skip the write when it equals the stored status. Keys without a value (no revision runs)
  are left out, so write the status as a whole rather than merge it.

Phase: Paused while spec.paused; Degraded when pinned to a missing revision, after an automatic
rollback (until the spec changes), when the only candidate failed, or when the running revision
exceeded its progress deadline; Ready when the target revision is fully rolled out; else
Progressing. Conditions Ready, Pinned and Degraded are always present.

`with_reconcile_error(status, message, generation, now)`: the patch that turns Ready False with
reason ReconcileError when a write failed for a reason a retry will not fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from testapp_operator import APP
from testapp_operator.conditions import set_condition, timestamp
from testapp_operator.release import Release
from testapp_operator.revisions import Decision, Plan, Revision, after
from testapp_operator.rollout import Rollout

PHASES = ("Progressing", "Ready", "Degraded", "Paused")
# A condition's message is read in `kubectl get tar -o wide`: an API error's is cut to this.
ERROR_MESSAGE_LIMIT = 512


def with_reconcile_error(
    status: Mapping[str, Any], message: str, generation: int | None, now: datetime
) -> dict[str, Any] | None:
    """The status patch that reports a reconcile a retry will not fix (Ready=False,
    ReconcileError, the error's message cut to ERROR_MESSAGE_LIMIT), or None when the status
    says so already. The next reconcile that succeeds writes the whole status again."""
    if len(message) > ERROR_MESSAGE_LIMIT:
        message = message[: ERROR_MESSAGE_LIMIT - 1] + "…"
    previous = status.get("conditions") or []
    conditions = set_condition(previous, "Ready", False, "ReconcileError", message, generation, now)
    return None if conditions == previous else {"conditions": conditions}


def compute_status(
    release: Release,
    plan: Plan,
    rollout: Rollout,
    revisions: Iterable[Revision],
    previous_conditions: Sequence[Mapping[str, Any]],
    now: datetime,
    canary_progress: str | None = None,
) -> dict[str, Any]:
    """The whole status after this reconcile's plan; see the module docstring for the rules.
    `canary_progress`: the Ready message while a canary is under way (canary_rollout)."""
    target = plan.target
    # The rollout describes the target only once the Deployment runs it.
    settled = target is not None and not plan.deploy
    failing = settled and rollout.deadline_exceeded
    ready = settled and rollout.complete and canary_progress is None

    if ready:
        ready_reason = "RolloutComplete"
        ready_message = f"revision {target.number}: {rollout.message}"
    elif failing:
        ready_reason, ready_message = "ProgressDeadlineExceeded", rollout.message
    elif target is None:
        ready_reason, ready_message = "NothingDeployed", plan.message
    elif canary_progress is not None:
        ready_reason, ready_message = "CanaryInProgress", canary_progress
    elif plan.deploy:
        ready_reason, ready_message = "RolloutInProgress", f"deploying revision {target.number}"
    else:
        ready_reason, ready_message = "RolloutInProgress", rollout.message

    if plan.decision is Decision.REVISION_NOT_FOUND:
        pinned = (False, "RevisionNotFound", plan.message)
    elif release.pin is not None:
        message = f"pinned to revision {release.pin}; clear spec.revision to roll forward"
        pinned = (True, "Pinned", message)
    else:
        pinned = (False, "NotPinned", "spec.revision is not set")

    degraded_reason = {
        Decision.REVISION_NOT_FOUND: "RevisionNotFound",
        Decision.ROLLED_BACK: "RolledBack",
        Decision.FAILED: "RevisionFailed",
    }.get(plan.decision)
    if degraded_reason is not None:
        degraded = (True, degraded_reason, plan.message)
    elif failing:
        message = f"revision {target.number}: {rollout.message}"
        degraded = (True, "ProgressDeadlineExceeded", message)
    else:
        degraded = (False, "AsExpected", "no failure")

    conditions = list(previous_conditions)
    for type_, (ok, reason, message) in (
        ("Ready", (ready, ready_reason, ready_message)),
        ("Pinned", pinned),
        ("Degraded", degraded),
    ):
        conditions = set_condition(conditions, type_, ok, reason, message, release.generation, now)

    if release.paused:
        phase = "Paused"
    elif degraded[0]:
        phase = "Degraded"
    elif ready:
        phase = "Ready"
    else:
        phase = "Progressing"

    status: dict[str, Any] = {
        "observedGeneration": release.generation,
        "phase": phase,
        "conditions": conditions,
        "replicas": rollout.replicas,
        "readyReplicas": rollout.ready,
        "pinned": release.pin is not None,
        "paused": release.paused,
        "selector": f"app={APP},env={release.env}",
        "history": [
            {
                "revision": r.number,
                "tag": r.snapshot.tag,
                "image": r.snapshot.image,
                # A revision created by this very plan has no creationTimestamp yet.
                "created": r.created or timestamp(now),
                "changeCause": r.change_cause,
                "outcome": str(r.outcome),
                **({"digest": r.snapshot.digest} if r.snapshot.digest else {}),
            }
            for r in after(plan, revisions)
        ],
    }
    if target is not None:
        status["revision"] = target.number
        status["image"] = target.snapshot.image_ref
        status["tag"] = target.snapshot.tag
        if target.snapshot.digest:
            status["digest"] = target.snapshot.digest
    return status
