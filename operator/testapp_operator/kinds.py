"""The API kinds the project talks to, and what the operator does with each (pure: no I/O).

One table: the API client finds each kind's URL here (no discovery), render.CHILDREN names the
kinds a release produces (the watches, the indexes and the fake API server follow it), and
tests/contract/test_rbac_covers_the_kinds.py holds k8s/operator/rbac.yaml to `verbs`.
"""

from __future__ import annotations

from dataclasses import dataclass

from testapp_operator import GROUP, KIND, PLURAL, VERSION

# What the operator does with a kind a release produces: watch it, server-side apply it.
WATCH_AND_APPLY = ("get", "list", "watch", "create", "patch")


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ()  # what the operator needs on it (its ClusterRole)
    status_verbs: tuple[str, ...] = ()  # ... and on its status subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, name: str | None = None, namespace: str | None = None, subresource: str = ""
    ) -> str:
        """The REST path of the collection (no name), of one object or of its subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        one = f"/{name}" if name else ""
        return f"{base}{scope}/{self.plural}{one}" + (f"/{subresource}" if subresource else "")


NAMESPACE = Kind("Namespace", "", "v1", "namespaces", False, WATCH_AND_APPLY)
SERVICE = Kind("Service", "", "v1", "services", True, WATCH_AND_APPLY)
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", True, WATCH_AND_APPLY)
NETWORK_POLICY = Kind(
    "NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", True, WATCH_AND_APPLY
)
# Revision history: created, annotated with outcomes, pruned.
CONTROLLER_REVISION = Kind(
    "ControllerRevision", "apps", "v1", "controllerrevisions", True, (*WATCH_AND_APPLY, "delete")
)
EVENT = Kind("Event", "", "v1", "events", True, ("create",))
# The releases: watched, their status written.
RELEASE = Kind(KIND, GROUP, VERSION, PLURAL, False, ("get", "list", "watch"), ("get", "patch"))
# Kopf's: peering between the replicas, and discovering the resources it watches (the installer
# applies CRDs, with its own credentials).
PEERING = Kind(
    "ClusterKopfPeering",
    "kopf.dev",
    "v1",
    "clusterkopfpeerings",
    False,
    ("get", "list", "watch", "patch"),
)
CRD = Kind(
    "CustomResourceDefinition",
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    False,
    ("get", "list", "watch"),
)
# Read by the plugin only (`kubectl testapp status -o wide`); the operator never touches Pods.
POD = Kind("Pod", "", "v1", "pods", True)

KINDS = (
    NAMESPACE,
    SERVICE,
    DEPLOYMENT,
    NETWORK_POLICY,
    CONTROLLER_REVISION,
    EVENT,
    RELEASE,
    PEERING,
    CRD,
    POD,
)
BY_KIND = {(kind.api_version, kind.kind): kind for kind in KINDS}
BY_NAME = {kind.kind: kind for kind in KINDS}
