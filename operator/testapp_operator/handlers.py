"""Kopf wiring, and nothing else: watches fill indexes and trigger the reconciler.

Only stateless `on.event` handlers and indexes are used: they never write to the objects (no
progress annotations, no finalizers), so a reconcile that changes nothing writes nothing. Kopf
calls no handler before every index has its initial listing, so a restarted operator sees all
the children it made before deciding anything.
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from testapp_operator import (
    GROUP,
    OPERATOR_NAME,
    PLURAL,
    RELEASE_LABEL,
    VERSION,
    health,
    metrics,
    render,
)
from testapp_operator.drift import compact
from testapp_operator.events import EventRecorder
from testapp_operator.kube import Kube
from testapp_operator.prometheus import Prometheus
from testapp_operator.queue import WorkQueue
from testapp_operator.reconciler import Cache, Reconciler, no_prometheus

MANAGED = {"app.kubernetes.io/managed-by": OPERATOR_NAME}
# Spec changes are reconciled at once; child events wait a little so a rollout's burst of status
# updates becomes one reconcile and one status write.
CHILD_DELAY = 1.0


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf keeps an object's last handled state to tell change handlers (on.create, on.update,
    on.field) what changed. We register none, yet Kopf built that state, a deep copy of the whole
    body, for every event of every watched object: the largest cost of an event. A change handler
    added one day needs Kopf's own storage back (kopf.AnnotationsDiffBaseStorage)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@dataclass
class Shell:
    """What every handler shares. Kopf hands each object a shallow copy of the startup memo, so
    the reconciler and its queue hang off this one object, made at startup: one queue for every
    release (one reconcile of a release at a time, one bound), one cache of our writes."""

    kube: Kube
    reconciler: Reconciler | None = None
    queue: WorkQueue | None = None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Should Kopf ever store state, it goes under our own prefix, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # We record our own events, one per decision; Kopf would post one per log line.
    settings.posting.enabled = False
    # A watch that silently stops delivering is the classic operator failure: bound every one.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    # A replica that dies without saying goodbye is replaced after this many seconds.
    settings.peering.lifetime = 15
    # Kopf keeps a worker (task, queue, last event) per object until it has been idle this long;
    # with its 5 s, a burst of new releases had a worker alive for every child it touched, and
    # the process kept that peak as resident memory (docs/benchmarks.md).
    settings.queueing.idle_timeout = 0.5
    # The API client does discovery on creation: keep that I/O off the event loop.
    memo.shell = Shell(await asyncio.to_thread(Kube))
    if memo.get("readiness"):
        memo.health = await health.serve(memo.readiness, functools.partial(ready, memo))


async def ready(memo: kopf.Memo) -> health.Readiness:
    if memo.standalone:
        return health.Readiness(True, "standalone: started")
    status = await memo.shell.kube.peering_status(memo.peering)
    return health.readiness(status, memo.priority, memo.watch_clock.since(), datetime.now(UTC))


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("health"):
        await memo.health.cleanup()
    memo.shell.kube.close()


# Every peer's keep-alive changes the peering object every few seconds; Kopf delivers it here only
# while this replica is active and every index has its initial listing: the readiness of the
# active replica (health.py).
@kopf.on.event("kopf.dev", "v1", "clusterkopfpeerings")
async def peering_seen(name: str, memo: kopf.Memo, **_: Any) -> None:
    if name == memo.get("peering"):
        memo.watch_clock.tick()


def kept(body: kopf.Body) -> str:
    """What an index keeps of an object: its compact body (no managedFields but our label keys)
    as JSON text, decoded when a reconcile reads it. The indexes hold every child of every
    release, and as text a body takes a quarter of the memory of its tree of small dicts."""
    return json.dumps(compact(body), separators=(",", ":"))


# Indexers are coroutines: Kopf runs plain functions in a thread, one hop per watch event.
@kopf.index(GROUP, VERSION, PLURAL)
async def releases(name: str, body: kopf.Body, **_: Any) -> dict[str, str]:
    return {name: kept(body)}


def _child_index(child: render.Child) -> Any:
    """An index of one kind of child, by name: only the objects a release of that name would
    have (a Deployment `x` in namespace `x`; a NetworkPolicy `x-default-deny` in `x`)."""

    async def index(
        name: str, namespace: str | None, body: kopf.Body, **_: Any
    ) -> dict[str, str] | None:
        if name not in child.names(namespace or name):
            return None
        return {render.index_key(namespace, name): kept(body)}

    return index


@kopf.index("apps", "v1", "controllerrevisions", labels={RELEASE_LABEL: kopf.PRESENT})
async def controllerrevisions(labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[str, str]:
    return {labels[RELEASE_LABEL]: kept(body)}


def bind(memo: kopf.Memo, indexes: dict[str, kopf.Index]) -> tuple[Reconciler, WorkQueue]:
    """The reconciler and its queue, made on the first event: they read the indexes Kopf passes
    to every handler (the same objects on every call)."""
    shell: Shell = memo.shell
    if shell.reconciler is None or shell.queue is None:

        def one(index: kopf.Index) -> Any:
            def lookup(key: str) -> dict[str, Any] | None:
                text = next(iter(index.get(key, ())), None)
                return None if text is None else json.loads(text)

            return lookup

        revisions = indexes["controllerrevisions"]
        world = Cache(
            release=one(indexes["releases"]),
            children={
                child.kind.kind: one(indexes[child.kind.plural]) for child in render.CHILDREN
            },
            revisions=lambda key: [json.loads(text) for text in revisions.get(key, ())],
        )
        prometheus = memo.get("prometheus")
        query = Prometheus(prometheus).query if prometheus else no_prometheus
        shell.reconciler = Reconciler(shell.kube, world, EventRecorder(shell.kube.event), query)
        # As many reconciles at once as the API client has threads.
        shell.queue = WorkQueue(shell.reconciler.reconcile, limit=shell.kube.threads)
        metrics.track_phases(shell.reconciler.phases)
        metrics.track_releases(shell.reconciler.running)
        metrics.track_canaries(shell.reconciler.canary_weights)
    return shell.reconciler, shell.queue


INDEXES = ("releases", *(child.kind.plural for child in render.CHILDREN), "controllerrevisions")


@kopf.on.event(GROUP, VERSION, PLURAL)
async def release_changed(name: str, type: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    reconciler, queue = bind(memo, {key: kwargs[key] for key in INDEXES})
    if type == "DELETED":
        reconciler.forget(name)
    else:
        queue.add(name)


# A release's children all carry its name: the Namespace is named after it, the others live in
# that namespace.
async def child_changed(
    name: str,
    namespace: str | None,
    type: str | None,
    resource: kopf.Resource,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    reconciler, queue = bind(memo, {key: kwargs[key] for key in INDEXES})
    release = namespace or name
    if type == "DELETED":
        reconciler.child_deleted(release, resource.kind, name)
    queue.add(release, CHILD_DELAY)


def _watch(child: render.Child) -> None:
    """Index one kind of child under its plural, and reconcile its release when one changes."""
    group, version, plural = child.kind.group, child.kind.version, child.kind.plural
    kopf.index(group, version, plural, labels=MANAGED, id=plural)(_child_index(child))
    kopf.on.event(group, version, plural, labels=MANAGED, id=f"{plural}_changed")(child_changed)


# Every kind a release produces (render.CHILDREN) is indexed and watched.
for child in render.CHILDREN:
    _watch(child)
