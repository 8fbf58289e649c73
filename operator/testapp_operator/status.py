"""What the cluster says, and the TestAppRelease `status` that follows from it (pure: no I/O).

Public interface:
- `Rollout`: the facts of one Deployment rollout (which revision it runs, replica counts, whether
  the controller has seen the latest template, deadline exceeded, complete).
- `observe_deployment(deployment | None) -> Rollout`: decides the way `kubectl rollout status`
  does (generation observed, then deadline, then updated/old/available replicas).
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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from testapp_operator import APP, REVISION_ANNOTATION
from testapp_operator.release import Release
from testapp_operator.revisions import Decision, Plan, Revision, after


@dataclass(frozen=True)
class Rollout:
    """One Deployment's rollout; the defaults describe a Deployment that does not exist."""

    revision: int | None = None  # the Pod template's testapp.dev/revision
    exists: bool = False
    current: bool = False  # the Deployment controller has seen the latest template
    desired: int = 0  # spec.replicas
    replicas: int = 0  # status.replicas: Pods of every template, old and new
    updated: int = 0
    ready: int = 0
    available: int = 0
    deadline_exceeded: bool = False
    complete: bool = False
    message: str = "no Deployment"


def observe_deployment(deployment: Mapping[str, Any] | None) -> Rollout:
    """Read a Deployment body (None when absent) into a Rollout, like kubectl rollout status."""
    if deployment is None:
        return Rollout()
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    template_annotations = ((spec.get("template") or {}).get("metadata") or {}).get(
        "annotations"
    ) or {}
    desired = spec.get("replicas", 1)
    replicas = status.get("replicas", 0)
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    current = status.get("observedGeneration", 0) >= metadata.get("generation", 0)
    deadline_exceeded = current and any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in status.get("conditions") or []
    )
    if not current:
        message = "waiting for the Deployment controller to observe the new template"
    elif deadline_exceeded:
        message = "progress deadline exceeded"
    elif updated < desired:
        message = f"{updated} of {desired} new replicas updated"
    elif replicas > updated:
        message = f"{replicas - updated} old replicas pending termination"
    elif available < updated:
        message = f"{available} of {updated} updated replicas available"
    else:
        message = f"{available} of {desired} replicas available"
    return Rollout(
        revision=_revision_number(template_annotations.get(REVISION_ANNOTATION)),
        exists=True,
        current=current,
        desired=desired,
        replicas=replicas,
        updated=updated,
        ready=status.get("readyReplicas", 0),
        available=available,
        deadline_exceeded=deadline_exceeded,
        complete=current
        and not deadline_exceeded
        and updated >= desired
        and replicas <= updated
        and available >= updated,
        message=message,
    )


def compute_status(
    release: Release,
    plan: Plan,
    rollout: Rollout,
    revisions: Iterable[Revision],
    previous_conditions: Sequence[Mapping[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """The whole status after this reconcile's plan; see the module docstring for the rules."""
    timestamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    target = plan.target
    # The rollout describes the target only once the Deployment runs it.
    settled = target is not None and not plan.deploy
    failing = settled and rollout.deadline_exceeded
    ready = settled and rollout.complete
    previous = {c.get("type"): c for c in previous_conditions}

    def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        status = "True" if ok else "False"
        before = previous.get(kind) or {}
        kept = before.get("status") == status and before.get("lastTransitionTime")
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": kept or timestamp,
            "observedGeneration": release.generation,
        }

    if ready:
        ready_reason = "RolloutComplete"
        ready_message = f"revision {target.number}: {rollout.message}"
    elif failing:
        ready_reason, ready_message = "ProgressDeadlineExceeded", rollout.message
    elif target is None:
        ready_reason, ready_message = "NothingDeployed", plan.message
    elif plan.deploy:
        ready_reason, ready_message = "RolloutInProgress", f"deploying revision {target.number}"
    else:
        ready_reason, ready_message = "RolloutInProgress", rollout.message

    if plan.decision is Decision.REVISION_NOT_FOUND:
        pinned = condition("Pinned", False, "RevisionNotFound", plan.message)
    elif release.pin is not None:
        message = f"pinned to revision {release.pin}; clear spec.revision to roll forward"
        pinned = condition("Pinned", True, "Pinned", message)
    else:
        pinned = condition("Pinned", False, "NotPinned", "spec.revision is not set")

    degraded_reason = {
        Decision.REVISION_NOT_FOUND: "RevisionNotFound",
        Decision.ROLLED_BACK: "RolledBack",
        Decision.FAILED: "RevisionFailed",
    }.get(plan.decision)
    if degraded_reason is not None:
        degraded = condition("Degraded", True, degraded_reason, plan.message)
    elif failing:
        message = f"revision {target.number}: {rollout.message}"
        degraded = condition("Degraded", True, "ProgressDeadlineExceeded", message)
    else:
        degraded = condition("Degraded", False, "AsExpected", "no failure")

    if release.paused:
        phase = "Paused"
    elif degraded["status"] == "True":
        phase = "Degraded"
    elif ready:
        phase = "Ready"
    else:
        phase = "Progressing"

    status: dict[str, Any] = {
        "observedGeneration": release.generation,
        "phase": phase,
        "conditions": [
            condition("Ready", ready, ready_reason, ready_message),
            pinned,
            degraded,
        ],
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
                "created": r.created or timestamp,
                "changeCause": r.change_cause,
                "outcome": str(r.outcome),
            }
            for r in after(plan, revisions)
        ],
    }
    if target is not None:
        status["revision"] = target.number
        status["image"] = target.snapshot.image_ref
        status["tag"] = target.snapshot.tag
    return status


def _revision_number(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None
