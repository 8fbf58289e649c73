"""What a Deployment says about its rollout (pure: no I/O).

Public interface:
- `Rollout`: the facts of one Deployment rollout (which revision it runs, replica counts, whether
  the controller has seen the latest template, deadline exceeded, complete).
- `observe_deployment(deployment | None) -> Rollout`: decides the way `kubectl rollout status`
  does (generation observed, then deadline, then updated/old/available replicas).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from testapp_operator import REVISION_ANNOTATION, SNAPSHOT_LABEL


@dataclass(frozen=True)
class Rollout:
    """One Deployment's rollout; the defaults describe a Deployment that does not exist."""

    revision: int | None = None  # the Pod template's testapp.dev/revision
    snapshot: str | None = None  # the fingerprint of the snapshot it runs
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
        snapshot=(metadata.get("labels") or {}).get(SNAPSHOT_LABEL),
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


def _revision_number(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None
