"""One reconcile of one release: observe -> decide -> act.

Level-triggered: the same `reconcile(name)` runs for a create, an update, a restart, a drifted or
deleted child and a Deployment whose rollout moved on. It reads one snapshot of the release's
world (the watches' indexes, or what our own last write returned where that is newer), asks the
pure `decide` what to write, writes it in order, and returns when to look again; the work queue
does the scheduling. A reconcile that finds nothing to change writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from testapp_operator import metrics, render
from testapp_operator.canary import Measurement, QueryFailed, QueryOutcome
from testapp_operator.decide import Actions, Event, Memory, Observed, decide, with_created
from testapp_operator.events import EventRecorder
from testapp_operator.metrics import release_facts
from testapp_operator.queue import Result
from testapp_operator.status import with_reconcile_error
from testapp_operator.writes import Writes

logger = logging.getLogger("testapp_operator")

Body = dict[str, Any]
Lookup = Callable[[str], Body | None]
Query = Callable[[str], Awaitable[QueryOutcome]]  # PromQL in, Prometheus's answer out

# A conditional write found the object changed since we read it: look again once the watch has
# delivered the change.
CONFLICT_RETRY = 0.5
# API answers that the same write will get again until someone changes RBAC, the spec or the code
# (404 and 429 pass, like 5xx: a watch catching up, a busy server).
LASTING_STATUSES = frozenset({400, 401, 403, 405, 406, 413, 415, 422})


def lasting_failure(error: Exception) -> str | None:
    """What to tell the release about an error a retry will not fix, or None for a transient one
    (the work queue retries those quietly)."""
    if isinstance(error, ApiException):
        if error.status not in LASTING_STATUSES:
            return None
        try:
            detail = json.loads(error.body or "{}").get("message") or error.reason
        except (ValueError, AttributeError):
            detail = error.reason
        return f"HTTP {error.status} {error.reason}: {detail}"
    if isinstance(error, OSError | asyncio.TimeoutError) or type(error).__module__.startswith(
        "urllib3"
    ):
        return None
    return f"internal error: {type(error).__name__}: {error}"


class Client(Protocol):
    """The API calls a reconcile makes (kube.Kube, or a fake in the unit tests)."""

    async def apply(self, body: Body) -> Body: ...
    async def annotate(
        self, kind: str, name: str, namespace: str, annotations: Mapping[str, str]
    ) -> Body: ...
    async def delete(self, kind: str, name: str, namespace: str | None) -> bool: ...
    async def patch_release_status(
        self, name: str, status: Body, resource_version: str
    ) -> Body: ...


@dataclass(frozen=True)
class Cache:
    """Read access to what the watches have seen, by release name."""

    release: Lookup
    children: Mapping[str, Lookup]  # by kind, then render.index_key; every kind of render.CHILDREN
    revisions: Callable[[str], list[Body]]


@dataclass
class ReleaseState:
    """Everything the operator keeps about one release between reconciles."""

    writes: Writes = field(default_factory=Writes)
    memory: Memory = field(default_factory=Memory)
    status_written: float = float("-inf")  # time.monotonic() of our last status write
    phase: str | None = None
    facts: dict[str, str] | None = None  # testapp_release_info's labels
    canary_weight: int | None = None  # testapp_canary_weight, while a canary has a share
    failure: str | None = None  # the lasting error the last reconcile reported, until one succeeds


async def no_prometheus(query: str) -> QueryOutcome:
    return QueryFailed("no Prometheus to ask: start the operator with --prometheus URL")


class Reconciler:
    def __init__(
        self, kube: Client, world: Cache, events: EventRecorder, query: Query = no_prometheus
    ) -> None:
        self.kube = kube
        self.world = world
        self.events = events
        self.query = query
        self._releases: dict[str, ReleaseState] = {}

    def forget(self, name: str) -> None:
        """The release is gone: drop all it kept."""
        self._releases.pop(name, None)

    def child_deleted(self, release: str, kind: str, name: str) -> None:
        """The watch saw a child go: what our last write returned no longer exists."""
        if release in self._releases:
            self._releases[release].writes.forget(kind, name)

    def phases(self) -> list[str]:
        return [state.phase for state in self._releases.values() if state.phase]

    def running(self) -> list[tuple[str, dict[str, str]]]:
        return [(name, state.facts) for name, state in self._releases.items() if state.facts]

    def canary_weights(self) -> list[tuple[str, int]]:
        return [
            (name, state.canary_weight)
            for name, state in self._releases.items()
            if state.canary_weight is not None
        ]

    async def reconcile(self, name: str) -> Result:
        state = self._releases.get(name) or ReleaseState()
        observed = self.observe(name, state.writes)
        if observed.release is None:
            self.forget(name)
            return Result()
        self._releases[name] = state
        since = time.monotonic() - state.status_written
        memory, now = replace(state.memory, since_status_write=since), datetime.now(UTC)
        actions = decide(observed, memory, now)
        if actions.measure is not None:
            request = actions.measure
            outcome = await self.query(request.query)
            measured = Measurement(request.revision, request.step, outcome)
            actions = decide(observed, memory, now, measured)
        try:
            await self.act(name, state, observed.release, actions)
        except Exception as error:
            if isinstance(error, ApiException) and error.status == 409:
                logger.info(
                    "%s: changed since it was read, looking again: %s",
                    name,
                    error.reason,
                    extra={"release": name, "reason": "Conflict", "revision": None},
                )
                return Result(CONFLICT_RETRY)
            await self.report(name, state, observed.release, error)
            raise
        state.failure = None
        return Result(actions.requeue_after)

    async def report(self, name: str, state: ReleaseState, body: Body, error: Exception) -> None:
        """Tell the release about an error a retry will not fix: Ready=False ReconcileError, one
        Warning event and one traceback in the log per distinct error. The work queue still
        retries with backoff; the next reconcile that succeeds clears it."""
        failure = lasting_failure(error)
        if failure is None:
            return
        if failure != state.failure:
            state.failure = failure
            logger.error(
                "%s: reconcile failed: %s",
                name,
                failure,
                exc_info=error,
                extra={"release": name, "reason": "ReconcileError", "revision": None},
            )
            self.events.record(body, Event("Warning", "ReconcileError", failure))
        metadata = body["metadata"]
        patch = with_reconcile_error(
            body.get("status") or {}, failure, metadata.get("generation"), datetime.now(UTC)
        )
        if patch is None:
            return
        try:
            version = metadata["resourceVersion"]
            state.writes.remember(await self.kube.patch_release_status(name, patch, version))
        except Exception as status_error:
            # The status write may be what fails (RBAC on status): the event and log still say it.
            logger.warning("%s: could not report the error on its status: %s", name, status_error)

    def observe(self, name: str, writes: Writes) -> Observed:
        world = self.world
        return Observed(
            release=writes.fresh("TestAppRelease", name, world.release(name)),
            children={
                (kind, child): writes.fresh(
                    kind,
                    child,
                    world.children[kind](
                        render.index_key(None if kind == "Namespace" else name, child)
                    ),
                )
                for kind, child in render.child_keys(name)
            },
            revisions=writes.revisions(world.revisions(name)),
        )

    async def act(self, name: str, state: ReleaseState, body: Body, actions: Actions) -> None:
        for note in actions.notes:
            logger.log(
                note.level,
                note.message,
                extra={"release": name, "reason": note.reason, "revision": note.revision},
            )
        kube, writes = self.kube, state.writes
        for revision, outcome in actions.annotate:
            await kube.annotate("ControllerRevision", revision, name, outcome)
        for first in (actions.namespace, actions.deployment):
            if first is not None:
                writes.remember(await kube.apply(first))
        written = await asyncio.gather(
            *(kube.apply(child) for child in (*actions.children, actions.record) if child)
        )
        for body_written in written:
            writes.remember(body_written)
        status = actions.status
        if actions.record is not None and status is not None:
            created = written[-1]["metadata"]["creationTimestamp"]
            status = with_created(status, actions.record["revision"], created)
        events = list(actions.events)
        for revision, event in actions.prune:
            # Another operator may have pruned it first: only the one that did says so.
            if await kube.delete("ControllerRevision", revision, name):
                events.append(event)
            writes.forget("ControllerRevision", revision)
        for kind, child in actions.remove:
            await kube.delete(kind, child, name)
            writes.forget(kind, child)
        for event in events:
            self.events.record(body, event)
        if status is not None:
            # Only over the release version this decision saw: a status from a lagging view of
            # the spec must not replace a newer one.
            version = body["metadata"]["resourceVersion"]
            body = writes.remember(await kube.patch_release_status(name, status, version))
            state.status_written = time.monotonic()
        state.facts = release_facts(body) or state.facts
        state.canary_weight = actions.canary_weight
        for result in actions.analysed:
            metrics.ANALYSES.labels(result=result).inc()
        state.memory = actions.memory
        state.phase = actions.phase or state.phase
