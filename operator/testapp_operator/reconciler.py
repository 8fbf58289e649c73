"""The reconcile loop: read what exists, ask the pure core what should, write the difference.

Level-triggered: the same `reconcile(name)` runs for a create, an update, a restart, a drifted or
deleted child and a Deployment whose rollout moved on. Triggers are coalesced per release: a burst
of child events (a rollout reports progress several times a second) becomes one reconcile, and
only one reconcile of a release runs at a time. A reconcile that finds nothing to change writes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from testapp_operator import OUTCOME_ANNOTATION, RELEASE_LABEL, render
from testapp_operator import metrics as m
from testapp_operator.deploylog import log_after
from testapp_operator.drift import compact, needs_apply
from testapp_operator.kube import ApiException, Body, Kube
from testapp_operator.release import Release, ReleaseError, Snapshot
from testapp_operator.revisions import Decision, Outcome, Plan, Revision, plan
from testapp_operator.status import compute_status, observe_deployment

logger = logging.getLogger("testapp_operator")

# Spec changes are applied at once; child events wait a little so a rollout's burst of status
# updates becomes one status write.
SPEC_DELAY = 0.0
CHILD_DELAY = 1.0
MAX_BACKOFF = 60.0
# A status change that only reports rollout progress (replica counts, messages) is written at most
# this often per release; a change of phase, revision or generation is written at once. Without
# it every new release cost one extra status write per step of its rollout.
PROGRESS_INTERVAL = 30.0

Lookup = Callable[[str], Body | None]


@dataclass(frozen=True)
class World:
    """Read access to what the watches have seen (Kopf indexes), by release name."""

    release: Lookup
    namespace: Lookup
    deployment: Lookup
    service: Lookup
    revisions: Callable[[str], list[Body]]


@dataclass
class Reconciler:
    """Owns the per-release bookkeeping; lives in Kopf's memo for the operator's lifetime."""

    kube: Kube
    world: World | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _pending: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)
    # Bodies returned by our own writes: fresher than the watch until the watch catches up.
    _written: dict[tuple[str, str], Body] = field(default_factory=dict)
    _phases: dict[str, str] = field(default_factory=dict)
    _running: dict[str, dict[str, str]] = field(default_factory=dict)  # testapp_release_info
    _held_back: dict[str, Snapshot | None] = field(default_factory=dict)
    _status_written: dict[str, float] = field(default_factory=dict)
    # Events are telemetry: recorded in the background, off the path to the Deployment.
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    # Reconciles in flight at once: as many as the API client has threads. Unbounded, 300 new
    # releases each held their bodies and rendered objects while queued behind those threads,
    # and the operator kept that peak as its resident memory (Python rarely returns it).
    _slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.kube.threads)

    def trigger(self, name: str, delay: float = SPEC_DELAY) -> None:
        """Reconcile `name` soon; a reconcile already scheduled covers this trigger too, unless
        it is due later (a spec change must not wait for a child's or a progress write's delay)."""
        due = time.monotonic() + delay
        if name in self._pending:
            if self._due[name] <= due:
                return
            self._pending.pop(name).cancel()  # still sleeping: it pops itself before working
        self._due[name] = due
        self._pending[name] = asyncio.create_task(self._run(name, delay), name=f"reconcile {name}")

    def forget(self, name: str) -> None:
        """The release is gone: drop its bookkeeping."""
        self._failures.pop(name, None)
        self._locks.pop(name, None)
        self._phases.pop(name, None)
        m.publish_release(name, self._running.pop(name, None), None)
        self._held_back.pop(name, None)
        self._status_written.pop(name, None)
        m.publish_phases(self._phases)
        for key, written in list(self._written.items()):
            if key[1] == name or _release_of(written) == name:
                del self._written[key]

    async def _run(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        # Triggers from now on schedule another run: this one may already have read the world.
        self._pending.pop(name, None)
        lock = self._locks.setdefault(name, asyncio.Lock())
        started = time.monotonic()
        async with lock, self._slots:
            try:
                await self.reconcile(name)
            except Exception as error:  # transient API errors: retry with backoff, never hot-loop
                failures = self._failures.get(name, 0) + 1
                self._failures[name] = failures
                backoff = min(2.0**failures, MAX_BACKOFF)
                logger.warning(
                    "reconcile of %s failed (attempt %d), retrying in %.0f s: %s",
                    name,
                    failures,
                    backoff,
                    error,
                    extra={"release": name, "reason": "ReconcileError"},
                )
                m.RECONCILES.labels(result="error").inc()
                self.trigger(name, backoff)
            else:
                self._failures.pop(name, None)
                m.RECONCILES.labels(result="ok").inc()
            finally:
                m.RECONCILE_SECONDS.observe(time.monotonic() - started)

    def child_deleted(self, kind: str, name: str) -> None:
        """The watch saw a child go: what our last write returned no longer exists."""
        self._written.pop((kind, name), None)

    def _fresh(self, kind: str, name: str, observed: Body | None) -> Body | None:
        """The newer of what the watch saw and what our last write returned."""
        written = self._written.get((kind, name))
        if written is None:
            return observed
        if observed is None:
            # Not seen by the watch yet (a deletion would have dropped `written`): re-applying
            # it here cost every new release a second Deployment and Namespace write.
            return written
        if _version(written) > _version(observed):
            return written
        del self._written[(kind, name)]
        return observed

    async def reconcile(self, name: str) -> None:
        assert self.world is not None, "the handlers bind the world before any trigger"
        body = self._fresh("TestAppRelease", name, self.world.release(name))
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        try:
            release = Release.from_body(body)
        except ReleaseError as error:
            await self._report_invalid(body, error)
            return
        deployment = self._fresh("Deployment", name, self.world.deployment(name))
        rollout = observe_deployment(deployment)
        stored_revisions = self._stored_revisions(name)
        # Outcomes from the freshest status we know of (our own last write, if the watch lags).
        revisions = _with_recorded_outcomes(stored_revisions, body)
        decided = plan(release, revisions, rollout)
        status = body.get("status") or {}
        new_generation = status.get("observedGeneration") != release.generation
        if decided.decision is not Decision.UNCHANGED and (new_generation or decided.deploy):
            logger.info(
                "%s: %s",
                name,
                decided.message,
                extra={
                    "release": name,
                    "revision": getattr(decided.target, "number", None),
                    "reason": str(decided.decision),
                },
            )

        stored = {r.number: r.outcome for r in stored_revisions}
        for number, outcome in decided.outcomes:
            if Outcome.FAILED in (outcome, stored.get(number)):
                # Failed is also kept on the ControllerRevision, so that an operator that lost the
                # release's status still never retries a failed revision.
                await self.kube.annotate(
                    "ControllerRevision", f"{name}-{number}", name, {OUTCOME_ANNOTATION: outcome}
                )
        deploying = decided.target is not None and not release.paused
        if decided.create is not None or deploying:
            first = decided.create or decided.target
            if self._fresh("Namespace", name, self.world.namespace(name)) is None:
                await self._apply(render.namespace(release, first))  # it holds everything else
        # The Deployment is written first and alone: it is what a change waits for, and every
        # write running beside it slows its apply down on the API server. The revision and the
        # other children follow together. Should the revision's write fail, the next reconcile
        # records what runs under the next number (numbers are never reused), so the history
        # stays strictly increasing and complete.
        changed, drifted = (
            self._changes(release, decided, new_generation) if deploying else ([], [])
        )
        deployment = next((d for d in changed if d["kind"] == "Deployment"), None)
        if deployment is not None:
            await self._apply(deployment)
        *_, created = await asyncio.gather(
            *(self._apply(d) for d in changed if d is not deployment),
            self._create_revision(body, release, decided.create) if decided.create else _none(),
        )
        if drifted:
            m.DRIFT_CORRECTIONS.inc()
            await self._event(body, "Normal", "DriftCorrected", "restored " + ", ".join(drifted))
        if decided.create is not None:
            # History shows the server's creation time at once: no second status write for it.
            decided = replace(decided, create=replace(decided.create, created=created))
        for number in decided.prune:
            await self.kube.delete("ControllerRevision", f"{name}-{number}", name)
            self._written.pop(("ControllerRevision", f"{name}-{number}"), None)
            await self._event(body, "Normal", "Pruned", f"revision {number} pruned")
        await self._announce(body, release, decided, new_generation)

        rollout = observe_deployment(self._fresh("Deployment", name, self.world.deployment(name)))
        now = datetime.now(UTC)
        new_status = compute_status(
            release,
            decided,
            rollout,
            revisions,
            status.get("conditions") or [],
            now,
        )
        new_status["deployments"] = log_after(body, decided, rollout, now)
        if _differs(new_status, status):
            wait = self._progress_wait(name, new_status, status)
            if wait > 0:
                self.trigger(name, wait)
            else:
                patch = {key: new_status.get(key) for key in {*status, *new_status}}
                self._remember(await self.kube.patch_release_status(name, patch))
                self._status_written[name] = time.monotonic()
        self._phases[name] = new_status["phase"]
        m.publish_phases(self._phases)
        running = {
            "env": release.env,
            "tag": new_status.get("tag", ""),
            "revision": str(new_status.get("revision", "")),
            "phase": new_status["phase"],
            "pinned": str(new_status["pinned"]).lower(),
        }
        m.publish_release(name, self._running.get(name), running)
        self._running[name] = running

    def _progress_wait(self, name: str, new: Mapping[str, Any], old: Mapping[str, Any]) -> float:
        """Seconds to hold back a status write that only reports progress (0: write now)."""
        if _decisive(new) != _decisive(old):
            return 0.0
        since = time.monotonic() - self._status_written.get(name, float("-inf"))
        return max(0.0, PROGRESS_INTERVAL - since)

    def _stored_revisions(self, name: str) -> list[Revision]:
        assert self.world is not None
        stored = {obj["metadata"]["name"]: obj for obj in self.world.revisions(name)}
        # A revision we just wrote may not have come back through the watch yet; without it the
        # plan would record the same snapshot again under the next number.
        for key, written in list(self._written.items()):
            if key[0] != "ControllerRevision" or _release_of(written) != name:
                continue
            if key[1] in stored:
                del self._written[key]  # the watch caught up
            else:
                stored[key[1]] = written
        revisions = []
        for obj in stored.values():
            try:
                revisions.append(Revision.from_controller_revision(obj))
            except ReleaseError as error:
                logger.warning(
                    "%s: ignoring ControllerRevision %s: %s",
                    name,
                    obj["metadata"]["name"],
                    error,
                    extra={"release": name},
                )
        return revisions

    async def _create_revision(self, body: Body, release: Release, revision: Revision) -> str:
        """Store the revision (its namespace exists); returns its creationTimestamp."""
        # Server-side apply, not create: the API server then stores `data` re-encoded, and later
        # patches of the outcome annotation pass its immutability check (a create keeps the
        # client's JSON bytes, which a patch re-encodes differently: "field is immutable").
        stored = self._remember(
            await self.kube.apply(render.controller_revision(release, revision))
        )
        m.REVISIONS_CREATED.inc()
        await self._event(
            body,
            "Normal",
            "RevisionCreated",
            f"revision {revision.number} created: {revision.snapshot.image_ref}",
        )
        return stored["metadata"]["creationTimestamp"]

    def _changes(
        self, release: Release, decided: Plan, new_generation: bool
    ) -> tuple[list[Body], list[str]]:
        """The children whose desired state differs from what exists, and which of those
        differences nothing in the spec explains (drift: "Deployment changed")."""
        assert self.world is not None and decided.target is not None
        observed = {
            "Namespace": self.world.namespace(release.name),
            "Service": self.world.service(release.name),
            "Deployment": self.world.deployment(release.name),
        }
        # Nothing in the spec changed since the last reconcile, yet an object differs: drift.
        steady = not new_generation and not decided.deploy
        drifted: list[str] = []
        changed: list[Body] = []
        for desired in (
            render.deployment(release, decided.target),
            render.namespace(release, decided.target),
            render.service(release, decided.target),
        ):
            kind = desired["kind"]
            current = self._fresh(kind, release.name, observed[kind])
            if not needs_apply(desired, current):
                continue
            if steady:
                drifted.append(f"{kind} {'changed' if current else 'missing'}")
            changed.append(desired)
        return changed, drifted

    async def _apply(self, desired: Body) -> None:
        self._remember(await self.kube.apply(desired))

    def _remember(self, written: Body) -> Body:
        """Keep what our write returned (compact, like the indexes) until the watch catches up."""
        kept = compact(written)
        self._written[(kept["kind"], kept["metadata"]["name"])] = kept
        return kept

    async def _announce(
        self, body: Body, release: Release, decided: Plan, new_generation: bool
    ) -> None:
        """One event per decision, emitted when it is first made (not on every resync)."""
        status = body.get("status") or {}
        was_pinned = bool(status.get("pinned"))
        decision = decided.decision
        if decision is Decision.REVISION_NOT_FOUND and new_generation:
            await self._event(body, "Warning", "RevisionNotFound", decided.message)
        elif decision is Decision.PINNED and decided.deploy:
            m.ROLLBACKS.labels(kind="manual").inc()
            await self._event(
                body,
                "Normal",
                "RolledBack",
                f"rolled back to revision {decided.target.number} (pinned)",
            )
        elif decision is Decision.ROLLED_BACK and decided.deploy:
            m.ROLLBACKS.labels(kind="automatic").inc()
            await self._event(body, "Warning", "AutoRolledBack", decided.message)
        if decision is Decision.PINNED and new_generation:
            held_back = release.snapshot != decided.target.snapshot
            # Warn once per spec held back, not on every scale or annotation change.
            if held_back and self._held_back.get(release.name) != release.snapshot:
                await self._event(body, "Warning", "Pinned", decided.message)
            elif not was_pinned:
                await self._event(body, "Normal", "Pinned", decided.message)
            self._held_back[release.name] = release.snapshot if held_back else None
        if release.pin is None and was_pinned and new_generation:
            await self._event(body, "Normal", "Unpinned", "spec.revision cleared: rolling forward")

    async def _event(self, body: Body, type_: str, reason: str, message: str) -> None:
        task = asyncio.create_task(self._record_event(body, type_, reason, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_event(self, body: Body, type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.event(body, type_, reason, message)
        except ApiException as error:  # an event is telemetry: never fail a reconcile over it
            logger.warning("could not record event %s: %s", reason, error.reason)

    async def _report_invalid(self, body: Body, error: ReleaseError) -> None:
        """Bad input that got past the API server: say so in status, change nothing running."""
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        message = str(error)
        condition = {
            "type": "Ready",
            "status": "False",
            "reason": "InvalidSpec",
            "message": message,
            "observedGeneration": body["metadata"].get("generation"),
        }
        old = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if old.get("reason") == "InvalidSpec" and old.get("message") == message:
            return
        condition["lastTransitionTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        others = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
        await self.kube.patch_release_status(
            name, {"phase": "Degraded", "conditions": [condition, *others]}
        )
        await self._event(body, "Warning", "InvalidSpec", message)
        logger.warning("%s: invalid spec: %s", name, message, extra={"release": name})


def _version(body: Mapping[str, Any] | None) -> int:
    try:
        return int((body or {}).get("metadata", {}).get("resourceVersion", 0))
    except ValueError:
        return 0


def _with_recorded_outcomes(revisions: list[Revision], body: Body | None) -> list[Revision]:
    """Outcomes are recorded in status.history, which wins; the ControllerRevision's annotation
    (kept only for Failed) stands in when the status lost a revision. Recording every outcome on
    the ControllerRevisions would cost one more write per rollout."""
    history = ((body or {}).get("status") or {}).get("history") or []
    recorded = {item.get("revision"): item.get("outcome") for item in history}
    return [
        replace(revision, outcome=Outcome(recorded[revision.number]))
        if recorded.get(revision.number) in set(Outcome)
        else revision
        for revision in revisions
    ]


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


async def _none() -> None:
    return None


def _release_of(body: Mapping[str, Any]) -> str | None:
    return ((body.get("metadata") or {}).get("labels") or {}).get(RELEASE_LABEL)
