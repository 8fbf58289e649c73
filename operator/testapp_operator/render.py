"""Which objects a release produces: pure functions -> plain dicts for server-side apply.

Every dict has apiVersion/kind/metadata and the fields we mean to own, nothing else (no status):
with server-side apply, what we send is what we own, and a field we leave out is left to others.
All objects are named after the release. What runs carries `labels(release, revision)`, with the
version; the Namespace and Service carry the same but the version (a Service spans two versions
during a rollout) and the network policies only ours: a tag change rewrites neither of them.

Public interface (`revision` is the `revisions.Revision` to run: its snapshot decides image, tag,
digest, labels and resources; env, the progress deadline and `ingressFrom` come from the
release):
- `CHILDREN`: the kinds a release produces (kinds.Kind, renderer, names), in apply order.
- `Running(stable, replicas, canary, canary_replicas)`: what the Deployments run; `Running.only`
  for a release without a canary.
- `children(release, running)`: every object the release runs on, each function below once.
- `namespace(release, revision)`: the Namespace, Pod Security `restricted` enforced.
- `deployment(release, revision, replicas, track)`: a Deployment; Pod template annotated with
  the revision. Without a track (no `spec.strategy`) the one Deployment `<release>`; with one,
  `<release>` is the stable track and `<release>-canary` the canary (docs/canary.md), and their
  Pods carry the track and revision labels and the Prometheus scrape annotations.
- `service(release, revision)`: the ClusterIP Service, port 80 `http` -> container port `http`.
- `controller_revision(release, revision)`: the ControllerRevision `<release>-<N>` storing it.
- `network_policies(release)`: in the release's namespace, `<release>-default-deny`
  (every Pod: no ingress, no egress) and `<release>-allow-http` (the release's Pods: ingress to
  port `http` from `spec.ingressFrom`). No egress is allowed, not even DNS: the app opens no
  connection and resolves no name (docs/design.md, Network policies).
- `owner_reference(release)`: the controller owner reference to the release.
- `labels(release, revision)` / `selector(release)`: the labels of what runs / the selector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testapp_operator import (
    API_VERSION,
    APP,
    CHANGE_CAUSE_ANNOTATION,
    CONTAINER,
    GENERATION_LABEL,
    HTTP_PORT,
    KIND,
    OPERATOR_NAME,
    OUTCOME_ANNOTATION,
    RELEASE_LABEL,
    RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
    SNAPSHOT_LABEL,
    kinds,
)
from testapp_operator.canary import CANARY, REVISION_LABEL, STABLE, TRACK_LABEL
from testapp_operator.kinds import Kind
from testapp_operator.release import Release
from testapp_operator.revisions import Revision

RUN_AS = 10001  # the image's non-root user
TERMINATION_GRACE_SECONDS = 30
PROBE_TIMEOUT_SECONDS = 3
DEPLOYMENT_HISTORY = 2  # our ControllerRevisions are the history; ReplicaSets are only for rollout
# On canaried Pods: Prometheus (hack/cluster/prometheus.py, a PodMonitor elsewhere) scrapes them.
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(HTTP_PORT),
    "prometheus.io/path": "/metrics",
}


def owner_reference(release: Release) -> dict[str, Any]:
    """Makes the release the controller of an object: deleting the release deletes it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": release.name,
        "uid": release.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector(release: Release) -> dict[str, str]:
    """The Deployment and Service selector; fixed for the life of the release."""
    return {"app": APP, "env": release.env}


def labels(release: Release, revision: Revision) -> dict[str, str]:
    """The Deployment's and its Pods': `_unversioned_labels` and the version."""
    return {
        **_unversioned_labels(release, revision),
        "app.kubernetes.io/version": revision.snapshot.tag,
    }


def _unversioned_labels(release: Release, revision: Revision) -> dict[str, str]:
    """The revision's extra labels, then ours (ours win; the CRD forbids overriding them)."""
    return {**dict(revision.snapshot.labels), **_release_labels(release)}


def _release_labels(release: Release) -> dict[str, str]:
    """Ours, those that never change with the revision."""
    return {
        **selector(release),
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": release.name,
        "app.kubernetes.io/managed-by": OPERATOR_NAME,
    }


@dataclass(frozen=True)
class Running:
    """What the release's Deployments run: `<release>` always; `<release>-canary` with a
    strategy (`canary` None: no canary Deployment is wanted)."""

    stable: Revision
    replicas: int
    canary: Revision | None = None
    canary_replicas: int = 0

    @classmethod
    def only(cls, release: Release, revision: Revision) -> Running:
        """One revision at `spec.replicas`, and with a strategy an empty canary Deployment."""
        return cls(revision, release.replicas, revision if release.strategy else None)


@dataclass(frozen=True)
class Child:
    """One kind of object a release produces: its API kind (kinds.py), how it is rendered, and
    the names it has for a release (all of them in the release's namespace, but the Namespace)."""

    kind: Kind
    render: Callable[[Release, Running], list[dict[str, Any]]]
    names: Callable[[str], list[str]]


def children(release: Release, running: Running) -> list[dict[str, Any]]:
    return [obj for child in CHILDREN for obj in child.render(release, running)]


def index_key(namespace: str | None, name: str) -> str:
    """How the watches' indexes (handlers.py) and the reconciler's Cache name a child: by
    namespace and name, since `<release>-canary` in `<release>` is also the name of another
    release's Deployment."""
    return name if namespace is None else f"{namespace}/{name}"


def canary_name(release: str) -> str:
    return f"{release}-canary"


def child_keys(name: str) -> list[tuple[str, str]]:
    """(kind, name) of every object `children` produces for the release `name`."""
    return [(child.kind.kind, child_name) for child in CHILDREN for child_name in child.names(name)]


# A release's NetworkPolicies: `<release>-<purpose>`.
POLICY_PURPOSES = ("default-deny", "allow-http")


def _policy_name(release: str, purpose: str) -> str:
    return f"{release}-{purpose}"


def namespace(release: Release, revision: Revision) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": release.namespace,
            "labels": {
                **_unversioned_labels(release, revision),
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
            "ownerReferences": [owner_reference(release)],
        },
    }


def deployments(release: Release, running: Running) -> list[dict[str, Any]]:
    if running.canary is None:
        return [deployment(release, running.stable, running.replicas)]
    return [
        deployment(release, running.stable, running.replicas, STABLE),
        deployment(release, running.canary, running.canary_replicas, CANARY),
    ]


def deployment(
    release: Release, revision: Revision, replicas: int | None = None, track: str | None = None
) -> dict[str, Any]:
    snapshot = revision.snapshot
    pod_labels = labels(release, revision)
    annotations = _template_annotations(release, revision)
    name, match = release.name, selector(release)
    if track is not None:
        pod_labels |= {TRACK_LABEL: track, REVISION_LABEL: str(revision.number)}
        annotations |= SCRAPE_ANNOTATIONS
    if track == CANARY:
        # The stable selector is immutable and already matches every Pod of the release (the
        # Service's too); the canary's ReplicaSets are the canary Deployment's by ownerReference.
        name, match = canary_name(release.name), {**match, TRACK_LABEL: CANARY}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        # What runs and which spec chose it: two operators at once agree on both.
        "metadata": _metadata(
            release,
            name,
            {
                **labels(release, revision),
                SNAPSHOT_LABEL: snapshot.fingerprint,
                GENERATION_LABEL: str(release.generation),
            },
        ),
        "spec": {
            "replicas": release.replicas if replicas is None else replicas,
            "selector": {"matchLabels": match},
            "revisionHistoryLimit": DEPLOYMENT_HISTORY,
            "progressDeadlineSeconds": release.progress_deadline_seconds,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": snapshot.reference,
                            "ports": [
                                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}
                            ],
                            "env": [
                                {"name": "APP_ENV", "value": release.env},
                                {"name": "APP_VERSION", "value": snapshot.tag},
                                *(
                                    {"name": name, "value": value}
                                    for name, value in snapshot.variables
                                ),
                            ],
                            # Liveness waits for the startup probe: a Pod that boots slowly on a
                            # busy node is not restarted before it could ever answer.
                            "startupProbe": _probe("/healthz", period=2, failures=60),
                            "readinessProbe": _probe("/readyz", period=5),
                            "livenessProbe": _probe("/healthz", period=10),
                            "resources": snapshot.resources.to_data(),
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True,
                            },
                            # The root filesystem is read-only; the app may still need scratch.
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def service(release: Release, revision: Revision) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(release, release.name, _unversioned_labels(release, revision)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(release),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def network_policies(release: Release) -> list[dict[str, Any]]:
    """Default deny for the whole namespace, then the one way in. The names end in different
    words, so no policy of one release can share a name with another release's."""
    ours = _release_labels(release)

    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(release, _policy_name(release.name, "default-deny"), ours),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    allow_spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector(release)},
        "policyTypes": ["Ingress"],
    }
    if release.ingress_from:
        # An empty list is stored as absent: rendering it would look like drift forever.
        allow_spec["ingress"] = [
            {
                "from": [peer.to_data() for peer in release.ingress_from],
                "ports": [{"protocol": "TCP", "port": "http"}],
            }
        ]
    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(release, _policy_name(release.name, "allow-http"), ours),
        "spec": allow_spec,
    }
    return [deny, allow]


def controller_revision(release: Release, revision: Revision) -> dict[str, Any]:
    """Stores a revision; `data` is immutable, the outcome annotation is what changes later."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{release.name}-{revision.number}",
            "namespace": release.namespace,
            "labels": {**selector(release), RELEASE_LABEL: release.name},
            "annotations": {
                CHANGE_CAUSE_ANNOTATION: revision.change_cause,
                OUTCOME_ANNOTATION: str(revision.outcome),
            },
            "ownerReferences": [owner_reference(release)],
        },
        "revision": revision.number,
        "data": revision.snapshot.to_data(),
    }


def _metadata(release: Release, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A child in the release's namespace, owned by the release."""
    return {
        "name": name,
        "namespace": release.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(release)],
    }


def _template_annotations(release: Release, revision: Revision) -> dict[str, str]:
    annotations = {REVISION_ANNOTATION: str(revision.number)}
    if release.restart_at is not None:
        # A new value changes the Pod template: the Deployment replaces every Pod, the revision
        # stays the same (what `kubectl rollout restart` does with its own annotation).
        annotations[RESTARTED_AT_ANNOTATION] = release.restart_at
    return annotations


def _probe(path: str, period: int, failures: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        # The default second is too short for a node whose cores are busy.
        "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
        "failureThreshold": failures,
    }


def _one(render: Callable[[Release, Revision], dict[str, Any]]) -> Callable[..., list[Any]]:
    return lambda release, running: [render(release, running.stable)]


def _release_name(release: str) -> list[str]:
    return [release]


def _deployment_names(release: str) -> list[str]:
    return [release, canary_name(release)]


def _policy_names(release: str) -> list[str]:
    return [_policy_name(release, purpose) for purpose in POLICY_PURPOSES]


# The one table of what a release produces, in the order it is applied: the watches, the indexes
# (handlers.py), the fake API server (tests/unit/fake_kube.py) and the RBAC check follow it.
CHILDREN = (
    Child(kinds.NAMESPACE, _one(namespace), _release_name),
    Child(kinds.DEPLOYMENT, deployments, _deployment_names),
    Child(kinds.SERVICE, _one(service), _release_name),
    Child(kinds.NETWORK_POLICY, lambda release, _: network_policies(release), _policy_names),
)
