"""Revisions: when one is born, what to deploy (pin, roll forward, roll back), what to prune.

Pure: no I/O. The rules are those of docs/design.md, section Revisions. A reconcile does:

    release = Release.from_body(body)
    revisions = [Revision.from_controller_revision(cr) for cr in <ControllerRevisions>]
    rollout = rollout.observe_deployment(<Deployment or None>)
    p = plan(release, revisions, rollout)
    p.create      -> apply render.controller_revision(release, p.create)      (if not None)
    p.deploy      -> apply namespace/deployment/service for p.target           (if True)
    p.outcomes    -> set the outcome annotation on those ControllerRevisions
    p.prune       -> delete ControllerRevisions `<release>-<n>` for those numbers
    status.compute_status(release, p, rollout, revisions, previous_conditions, now)

Public interface:
- `Outcome`: Progressing | Ready | Failed | Superseded (the `testapp.dev/outcome` annotation).
- `Revision(number, snapshot, outcome, change_cause, created)` and
  `Revision.from_controller_revision(obj)`.
- `Decision`: why the plan targets what it targets (log line, event and condition reason).
- `Plan(decision, message, target, create, prune, outcomes)`; `Plan.deploy` says whether the
  Deployment must change.
- `plan(release, revisions, rollout) -> Plan`: the whole decision for one reconcile.
- `outcome_after(revision, rollout) -> Outcome`: what the running revision's rollout tells.
- `after(plan, revisions) -> tuple[Revision, ...]`: the history once the plan is carried out,
  newest first.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from testapp_operator import CHANGE_CAUSE_ANNOTATION, OUTCOME_ANNOTATION
from testapp_operator.release import Release, ReleaseError, Snapshot
from testapp_operator.rollout import Rollout


class Outcome(enum.StrEnum):
    PROGRESSING = "Progressing"  # deployed, not yet Ready
    READY = "Ready"  # became Ready at least once; never changes after that
    FAILED = "Failed"  # hit its progress deadline
    SUPERSEDED = "Superseded"  # replaced before it was ever Ready


class Decision(enum.StrEnum):
    CREATED = "Created"  # the spec changed: a new revision is born and deployed
    RETRIED = "Retried"  # spec.retryAt: the failed latest snapshot is born again and deployed
    UNCHANGED = "Unchanged"  # the latest revision runs and the spec matches it
    ROLLED_FORWARD = "RolledForward"  # not pinned (any more): deploy the latest revision
    PINNED = "Pinned"  # spec.revision names an existing revision: deploy it, nothing else
    REVISION_NOT_FOUND = "RevisionNotFound"  # spec.revision names no revision: change nothing
    ROLLED_BACK = "RolledBack"  # the latest failed, the spec did not change: newest Ready runs
    FAILED = "Failed"  # the latest failed and no revision was ever Ready: stay on it
    PAUSED = "Paused"  # spec.paused: change nothing


@dataclass(frozen=True)
class Revision:
    """One ControllerRevision `<release>-<number>`: an immutable snapshot and its outcome."""

    number: int
    snapshot: Snapshot
    outcome: Outcome = Outcome.PROGRESSING
    change_cause: str = ""
    created: str | None = None  # RFC3339 creationTimestamp; None until the API server set it

    @classmethod
    def from_controller_revision(cls, obj: Mapping[str, Any]) -> Revision:
        """Read a ControllerRevision; raises ReleaseError naming the bad field."""
        metadata = obj.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        number = obj.get("revision")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ReleaseError("revision", f"must be an integer >= 1, not {number!r}")
        raw_outcome = annotations.get(OUTCOME_ANNOTATION, Outcome.PROGRESSING)
        try:
            outcome = Outcome(raw_outcome)
        except ValueError:
            allowed = ", ".join(Outcome)
            raise ReleaseError(
                f"metadata.annotations[{OUTCOME_ANNOTATION}]",
                f"must be one of {allowed}, not {raw_outcome!r}",
            ) from None
        return cls(
            number=number,
            snapshot=Snapshot.from_data(obj.get("data")),
            outcome=outcome,
            change_cause=annotations.get(CHANGE_CAUSE_ANNOTATION, ""),
            created=metadata.get("creationTimestamp"),
        )


@dataclass(frozen=True)
class Plan:
    """What one reconcile does. `target` None: nothing can run (e.g. pinned to a missing one)."""

    decision: Decision
    message: str  # one line for logs, events and the condition message
    target: Revision | None  # the revision the Deployment should run
    deployed: int | None  # the revision the Deployment runs now
    create: Revision | None = None  # a new revision to store before deploying it
    prune: tuple[int, ...] = ()  # revision numbers to delete, ascending
    outcomes: tuple[tuple[int, Outcome], ...] = ()  # outcome annotations to change

    @property
    def deploy(self) -> bool:
        """True when the Deployment must be (re)applied to run `target`."""
        return self.target is not None and self.target.number != self.deployed


def outcome_after(revision: Revision, rollout: Rollout) -> Outcome:
    """The outcome of the running `revision` given its rollout; only Progressing ever moves."""
    if revision.outcome is not Outcome.PROGRESSING or not rollout.current:
        return revision.outcome
    if rollout.complete:
        return Outcome.READY
    if rollout.deadline_exceeded:
        return Outcome.FAILED
    return revision.outcome


def plan(release: Release, revisions: Iterable[Revision], rollout: Rollout) -> Plan:
    """Decide which revision runs, which is born, which are pruned (docs/design.md, Revisions)."""
    history = sorted(revisions, key=lambda r: r.number)
    by_number = {r.number: r for r in history}
    deployed = rollout.revision
    outcomes: dict[int, Outcome] = {}
    if deployed in by_number:
        observed = outcome_after(by_number[deployed], rollout)
        if observed is not by_number[deployed].outcome:
            outcomes[deployed] = observed
            by_number[deployed] = replace(by_number[deployed], outcome=observed)
            history = [by_number[r.number] for r in history]
    running = by_number.get(deployed) if deployed is not None else None

    def done(decision: Decision, message: str, target: Revision | None, **kw: Any) -> Plan:
        return Plan(decision, message, target, deployed, outcomes=_sorted(outcomes), **kw)

    if release.paused:
        return done(Decision.PAUSED, "paused: spec.paused is true, nothing changes", running)
    if release.pin is not None:
        pinned = by_number.get(release.pin)
        if pinned is None:
            existing = ", ".join(str(r.number) for r in history) or "none"
            message = (
                f"revision {release.pin} not found; existing revisions: {existing}; nothing changes"
            )
            return done(Decision.REVISION_NOT_FOUND, message, running)
        decision = Decision.PINNED
        message = f"pinned to revision {pinned.number}; clear spec.revision to roll forward"
        target, create = pinned, None
    else:
        decision, message, target, create = _unpinned(release, history, rollout)
    if target.number != deployed:
        outcomes.update(_handover(running, target))
    after_create = [*history, create] if create else history
    prune = _prune(after_create, release.history_limit, keep={target.number, deployed})
    return done(decision, message, target, create=create, prune=prune)


def after(plan: Plan, revisions: Iterable[Revision]) -> tuple[Revision, ...]:
    """The revisions once `plan` is carried out (created, outcomes set, pruned), newest first."""
    changed = dict(plan.outcomes)
    result = [
        replace(r, outcome=changed.get(r.number, r.outcome))
        for r in revisions
        if r.number not in plan.prune
    ]
    if plan.create is not None:
        result.append(plan.create)
    return tuple(sorted(result, key=lambda r: r.number, reverse=True))


def _unpinned(
    release: Release, history: list[Revision], rollout: Rollout
) -> tuple[Decision, str, Revision, Revision | None]:
    latest = history[-1] if history else None
    desired = release.snapshot
    deployed = rollout.revision
    if latest is None or latest.snapshot != desired:
        if (
            deployed is not None
            and deployed > (latest.number if latest else 0)
            and rollout.snapshot == desired.fingerprint
        ):
            # The spec runs under a number no stored revision has: its record was lost (a crash
            # or a failed write after the Deployment's) or is another operator's, not seen yet.
            # Record it under that number: one snapshot, one number.
            recorded = Revision(deployed, desired, Outcome.PROGRESSING, release.change_cause)
            message = f"revision {deployed} recorded: it runs {desired.image_ref}"
            return Decision.CREATED, message, recorded, recorded
        # Never reuse a number, even one whose ControllerRevision was deleted by hand.
        number = max(latest.number if latest else 0, deployed or 0) + 1
        created = Revision(number, desired, Outcome.PROGRESSING, release.change_cause)
        change = _describe(latest.snapshot, desired) if latest else f"tag {desired.tag}"
        return Decision.CREATED, f"revision {number} created: {change}", created, created
    if latest.outcome is Outcome.FAILED and _retry_asked(release, latest):
        # A retry already running whose record was lost keeps its number, as above.
        lost = deployed is not None and deployed > latest.number
        if lost and rollout.snapshot == desired.fingerprint:
            number = deployed
        else:
            number = max(latest.number, deployed or 0) + 1
        created = Revision(number, desired, Outcome.PROGRESSING, release.change_cause)
        message = f"revision {number} created: retry of failed revision {latest.number}"
        return Decision.RETRIED, message, created, created
    if latest.outcome is not Outcome.FAILED:
        if latest.number == deployed:
            return Decision.UNCHANGED, f"revision {latest.number} is deployed", latest, None
        message = f"rolled forward to revision {latest.number}"
        return Decision.ROLLED_FORWARD, message, latest, None
    good = _newest_ready(history)
    if good is None:
        message = (
            f"revision {latest.number} failed (progress deadline exceeded) and no revision was "
            "ever Ready; change the spec to try again"
        )
        return Decision.FAILED, message, latest, None
    message = (
        f"revision {latest.number} failed (progress deadline exceeded); rolled back to revision "
        f"{good.number}; change the spec or set spec.retryAt (kubectl testapp retry) to try again"
    )
    return Decision.ROLLED_BACK, message, good, None


def _retry_asked(release: Release, latest: Revision) -> bool:
    """spec.retryAt asks to retry a revision created before it (a retry's own revision is
    created after it, so a retry that fails too is not retried again)."""
    if release.retry_at is None:
        return False
    return latest.created is not None and _instant(release.retry_at) > _instant(latest.created)


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _describe(old: Snapshot, new: Snapshot) -> str:
    """What changed between two snapshots, for the log line and the event: every key of their
    one serialization that differs, a plain value as `old -> new`, a list or map as `changed`."""
    before, after = old.to_data(), new.to_data()
    changed = [key for key in {**before, **after} if before.get(key) != after.get(key)]
    plain = [key for key in changed if _plain(before.get(key)) and _plain(after.get(key))]
    return ", ".join(
        [f"{key} {before.get(key)} -> {after.get(key)}" for key in plain]
        + [f"{key} changed" for key in changed if key not in plain]
    )


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int)


def _handover(running: Revision | None, target: Revision) -> dict[int, Outcome]:
    """Outcome changes when `target` replaces `running` in the Deployment."""
    changes = {}
    if running is not None and running.outcome is Outcome.PROGRESSING:
        changes[running.number] = Outcome.SUPERSEDED
    # Deployed again (a pin to it): its earlier verdict no longer describes what runs.
    if target.outcome in (Outcome.FAILED, Outcome.SUPERSEDED):
        changes[target.number] = Outcome.PROGRESSING
    return changes


def _prune(history: list[Revision], limit: int, keep: set[int | None]) -> tuple[int, ...]:
    """Oldest first down to `limit`, never `keep`, the newest Ready or the latest."""
    protected = set(keep)
    if history:
        protected.add(history[-1].number)  # the latest: the spec's record, numbering goes on
    good = _newest_ready(history)
    if good is not None:
        protected.add(good.number)
    excess = len(history) - limit
    pruned = []
    for revision in history:
        if len(pruned) >= excess:
            break
        if revision.number not in protected:
            pruned.append(revision.number)
    return tuple(pruned)


def _newest_ready(history: list[Revision]) -> Revision | None:
    return next((r for r in reversed(history) if r.outcome is Outcome.READY), None)


def _sorted(outcomes: dict[int, Outcome]) -> tuple[tuple[int, Outcome], ...]:
    return tuple(sorted(outcomes.items()))
