"""The deployment log: every change of what runs, newest first, bounded (pure: no I/O).

Revisions say *what* could run; the log says what *did* run, when, who asked, why, and how it
went: a roll forward, a pin (rollback), an unpin, an automatic rollback, a promotion, a retry, a
restart. It lives in `status.deployments`, so it survives operator restarts and needs no object of
its own; the bound keeps the release small (at most LIMIT entries of at most FIELD_LIMIT
characters per text field: well under 64 KiB of status).

Who and why come from the release's annotations, which the admission policies in k8s/operator
keep honest: `testapp.dev/changed-by` (and `changed-with`, the client's field manager) is stamped
by the API server on every spec change, and a change-cause the request did not set itself is
removed, so a cause belongs only to the change it came with. An automatic rollback is the
operator's own change: by `testapp-operator`, its cause the failure.

Public interface:
- `Action`, `Entry(at, action, revision, tag, image, ...)`, `Entry.from_data` / `to_data`.
- `Request(by, client, cause, promoted_from, restart_at)`: who asked for the current spec.
- `Abort(revision, reason, message, value)`: a canary aborted by this reconcile.
- `next_log(log, decision, target, outcome, request, was_pinned, now) -> tuple[Entry, ...]`.
- `read_log(status) -> tuple[Entry, ...]`: the stored log; entries it cannot read are dropped.
- `log_after(body, plan, rollout, now) -> list[dict]`: the reconciler's one call: the log to
  store in status.deployments after this reconcile's plan.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from testapp_operator import (
    CHANGE_CAUSE_ANNOTATION,
    CHANGED_BY_ANNOTATION,
    CHANGED_WITH_ANNOTATION,
    OPERATOR_NAME,
    PROMOTED_FROM_ANNOTATION,
)
from testapp_operator.conditions import timestamp
from testapp_operator.revisions import Decision, Outcome, Plan, Revision
from testapp_operator.rollout import Rollout

LIMIT = 50
FIELD_LIMIT = 256
PROGRESSING, READY, FAILED, SUPERSEDED = "Progressing", "Ready", "Failed", "Superseded"


class Action(enum.StrEnum):
    DEPLOY = "Deploy"  # a new revision rolled out (or the first one the log saw)
    ROLLBACK = "Rollback"  # spec.revision pins an older revision
    UNPIN = "Unpin"  # the pin was removed: back to the latest revision
    AUTO_ROLLBACK = "AutoRollback"  # the latest revision failed: the newest Ready one runs
    PROMOTE = "Promote"  # a new revision carried over from the previous stage
    ABORT_CANARY = "AbortCanary"  # a canary aborted (by hand, or on its analysis): stable runs
    RETRY = "Retry"  # a Failed revision attempted again (spec.retryAt)
    RESTART = "Restart"  # the running revision's Pods replaced (spec.restartAt), no new revision


@dataclass(frozen=True)
class Entry:
    at: str  # RFC3339, when the operator carried the change out
    action: Action
    revision: int
    tag: str
    image: str
    digest: str = ""
    by: str = ""  # the requesting user, or testapp-operator for an automatic rollback
    client: str = ""  # the field manager of the request (kubectl-testapp, kubectl-edit, ...)
    cause: str = ""  # why, only when the change came with one
    outcome: str = PROGRESSING  # Progressing until Ready or Failed; Superseded if replaced first
    restart: str = ""  # the spec.restartAt in force when it was made (carried out by it)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "at": self.at,
            "action": str(self.action),
            "revision": self.revision,
            "tag": self.tag,
            "image": self.image,
            "digest": self.digest,
            "by": self.by,
            "client": self.client,
            "cause": self.cause,
            "outcome": self.outcome,
            "restart": self.restart,
        }
        return {k: v for k, v in data.items() if v != ""}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Entry:
        """Raises ValueError (KeyError, TypeError) for an entry that is not one of ours."""
        return cls(
            at=str(data["at"]),
            action=Action(data["action"]),
            revision=int(data["revision"]),
            tag=str(data["tag"]),
            image=str(data.get("image", "")),
            digest=str(data.get("digest", "")),
            by=str(data.get("by", "")),
            client=str(data.get("client", "")),
            cause=str(data.get("cause", "")),
            outcome=str(data.get("outcome", PROGRESSING)),
            restart=str(data.get("restart", "")),
        )


@dataclass(frozen=True)
class Abort:
    """A canary this reconcile aborted: its revision, why (canary.Ending's reason and message),
    the measured value that decided it, if one did."""

    revision: int
    reason: str
    message: str
    value: str = ""


@dataclass(frozen=True)
class Request:
    """Who asked for the spec as it is now, from the release's annotations and spec."""

    by: str = ""
    client: str = ""
    cause: str = ""
    promoted_from: str = ""
    restart_at: str | None = None


def log_after(
    body: Mapping[str, Any],
    plan: Plan,
    rollout: Rollout,
    now: datetime,
    aborted: Abort | None = None,
) -> list[dict[str, Any]]:
    """`aborted`: the canary this reconcile aborted, if it did (the entry says why, and by whom:
    the user who asked, or the operator on its analysis)."""
    status = body.get("status") or {}
    entries = next_log(
        read_log(status),
        plan.decision,
        plan.target,
        rollout_outcome(plan, rollout),
        request_of(body),
        was_pinned=bool(status.get("pinned")),
        now=timestamp(now),
        failed=frozenset(n for n, outcome in plan.outcomes if outcome is Outcome.FAILED),
        aborted=aborted,
    )
    return [entry.to_data() for entry in entries]


def request_of(body: Mapping[str, Any]) -> Request:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return Request(
        by=annotations.get(CHANGED_BY_ANNOTATION, ""),
        client=annotations.get(CHANGED_WITH_ANNOTATION, ""),
        cause=annotations.get(CHANGE_CAUSE_ANNOTATION, ""),
        promoted_from=annotations.get(PROMOTED_FROM_ANNOTATION, ""),
        restart_at=(body.get("spec") or {}).get("restartAt"),
    )


def rollout_outcome(plan: Plan, rollout: Rollout) -> str:
    """What the rollout says of the plan's target (it describes the target only once the
    Deployment runs it)."""
    settled = plan.target is not None and not plan.deploy
    if settled and rollout.complete:
        return READY
    if settled and rollout.deadline_exceeded:
        return FAILED
    return PROGRESSING


def read_log(status: Mapping[str, Any]) -> tuple[Entry, ...]:
    entries = []
    for data in status.get("deployments") or []:
        try:
            entries.append(Entry.from_data(data))
        except (KeyError, TypeError, ValueError):
            continue  # hand-edited status: keep the rest of the log
    return tuple(entries)


def next_log(
    log: Sequence[Entry],
    decision: Decision,
    target: Revision | None,
    outcome: str,
    request: Request,
    was_pinned: bool,
    now: str,
    failed: frozenset[int] = frozenset(),
    aborted: Abort | None = None,
) -> tuple[Entry, ...]:
    """The log after this reconcile: a new entry when what runs changed (a new target, or a
    restart asked for and not yet carried out), then the newest entry's outcome brought up to
    date. `outcome` is what the rollout of `target` says (Progressing, Ready or Failed);
    `failed`, the revisions this reconcile found Failed (a rollout replaced because it failed
    is Failed, not Superseded)."""
    entries = list(log)
    if target is None:
        return tuple(entries[:LIMIT])
    new = None
    if not entries or entries[0].revision != target.number:
        if aborted is not None:
            new = _abort_entry(aborted, target, request, now)
        else:
            new = _entry(_action(decision, request, was_pinned), target, request, now)
    elif decision is not Decision.PAUSED and _restart_pending(entries, request.restart_at):
        # (While paused nothing is applied: the restart is carried out, and logged, on resume.)
        new = _entry(Action.RESTART, target, request, now)
    if new is not None:
        if entries and entries[0].outcome == PROGRESSING:
            ended = FAILED if entries[0].revision in failed else SUPERSEDED
            entries[0] = replace(entries[0], outcome=ended)
        entries.insert(0, new)
    if entries[0].outcome == PROGRESSING:
        entries[0] = replace(entries[0], outcome=outcome)
    return tuple(entries[:LIMIT])


def _action(decision: Decision, request: Request, was_pinned: bool) -> Action:
    if decision is Decision.ROLLED_BACK:
        return Action.AUTO_ROLLBACK
    if decision is Decision.PINNED:
        return Action.ROLLBACK
    if decision is Decision.RETRIED:
        return Action.RETRY
    if decision in (Decision.ROLLED_FORWARD, Decision.CREATED) and was_pinned:
        return Action.UNPIN  # back to the latest, or to a spec the pin held back
    if decision is Decision.CREATED and request.promoted_from:
        return Action.PROMOTE
    return Action.DEPLOY


def _entry(action: Action, target: Revision, request: Request, now: str) -> Entry:
    automatic = action is Action.AUTO_ROLLBACK
    snapshot = target.snapshot
    return Entry(
        at=now,
        action=action,
        revision=target.number,
        tag=snapshot.tag,
        image=snapshot.image,
        digest=snapshot.digest or "",
        by=_bounded(OPERATOR_NAME if automatic else request.by),
        client="" if automatic else _bounded(request.client),
        cause=_bounded(_automatic_cause(target) if automatic else request.cause),
        # Any entry made while a restart is asked for carries it out: a new revision's rollout
        # replaces every Pod anyway.
        restart=request.restart_at or "",
    )


def _abort_entry(aborted: Abort, target: Revision, request: Request, now: str) -> Entry:
    """Stable runs on (the entry's revision); the cause says which canary, why, what was seen."""
    by_hand = aborted.reason == "AbortedByUser"
    measured = f" (measured {aborted.value})" if aborted.value else ""
    entry = _entry(Action.ABORT_CANARY, target, request, now)
    return replace(
        entry,
        by=_bounded(request.by if by_hand else OPERATOR_NAME),
        client=_bounded(request.client) if by_hand else "",
        cause=_bounded(
            f"canary revision {aborted.revision} {aborted.reason}: {aborted.message}{measured}"
        ),
    )


def _automatic_cause(target: Revision) -> str:
    return f"the latest revision failed its progress deadline; revision {target.number} is Ready"


def _restart_pending(entries: Sequence[Entry], restart_at: str | None) -> bool:
    """A spec.restartAt not carried out yet. Once its entry has left the bounded log, a request
    older than the oldest entry still left is taken as carried out."""
    if not restart_at or any(e.restart == restart_at for e in entries):
        return False
    return len(entries) < LIMIT or restart_at > entries[-1].at


def _bounded(text: str) -> str:
    return text if len(text) <= FIELD_LIMIT else text[: FIELD_LIMIT - 1] + "…"
