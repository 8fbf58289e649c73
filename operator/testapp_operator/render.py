"""Which objects a release produces: pure functions -> plain dicts for server-side apply.

Every dict has apiVersion/kind/metadata and the fields we mean to own, nothing else (no status):
with server-side apply, what we send is what we own, and a field we leave out is left to others.
All objects are named after the release and carry `labels(release, revision)`.

Public interface (`revision` is the `revisions.Revision` to run: its snapshot decides image, tag,
labels and resources; replicas, env and the progress deadline come from the release):
- `namespace(release, revision)`: the Namespace, Pod Security `restricted` enforced.
- `deployment(release, revision)`: the Deployment; Pod template annotated with the revision.
- `service(release, revision)`: the ClusterIP Service, port 80 `http` -> container port `http`.
- `controller_revision(release, revision)`: the ControllerRevision `<release>-<N>` storing it.
- `owner_reference(release)`: the controller owner reference to the release.
- `labels(release, revision)` / `selector(release)`: the labels on everything / the selector.
"""

from __future__ import annotations

from typing import Any

from testapp_operator import (
    API_VERSION,
    APP,
    CHANGE_CAUSE_ANNOTATION,
    CONTAINER,
    FIELD_MANAGER,
    HTTP_PORT,
    KIND,
    OUTCOME_ANNOTATION,
    RELEASE_LABEL,
    RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
)
from testapp_operator.release import Release
from testapp_operator.revisions import Revision

RUN_AS = 10001  # the image's non-root user
TERMINATION_GRACE_SECONDS = 30
DEPLOYMENT_HISTORY = 2  # our ControllerRevisions are the history; ReplicaSets are only for rollout


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
    """The revision's extra labels, then ours (ours win; the CRD forbids overriding them)."""
    return {
        **dict(revision.snapshot.labels),
        **selector(release),
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": release.name,
        "app.kubernetes.io/version": revision.snapshot.tag,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
    }


def namespace(release: Release, revision: Revision) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": release.namespace,
            "labels": {
                **labels(release, revision),
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
            "ownerReferences": [owner_reference(release)],
        },
    }


def deployment(release: Release, revision: Revision) -> dict[str, Any]:
    snapshot = revision.snapshot
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(release, revision, release.name),
        "spec": {
            "replicas": release.replicas,
            "selector": {"matchLabels": selector(release)},
            "revisionHistoryLimit": DEPLOYMENT_HISTORY,
            "progressDeadlineSeconds": release.progress_deadline_seconds,
            "template": {
                "metadata": {
                    "labels": labels(release, revision),
                    "annotations": _template_annotations(release, revision),
                },
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
                            "image": snapshot.image_ref,
                            "ports": [
                                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}
                            ],
                            "env": [
                                {"name": "APP_ENV", "value": release.env},
                                {"name": "APP_VERSION", "value": snapshot.tag},
                            ],
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
        "metadata": _metadata(release, revision, release.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(release),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


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


def _metadata(release: Release, revision: Revision, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": release.namespace,
        "labels": labels(release, revision),
        "ownerReferences": [owner_reference(release)],
    }


def _template_annotations(release: Release, revision: Revision) -> dict[str, str]:
    annotations = {REVISION_ANNOTATION: str(revision.number)}
    if release.restart_at is not None:
        # A new value changes the Pod template: the Deployment replaces every Pod, the revision
        # stays the same (what `kubectl rollout restart` does with its own annotation).
        annotations[RESTARTED_AT_ANNOTATION] = release.restart_at
    return annotations


def _probe(path: str, period: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period}
