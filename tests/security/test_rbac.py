"""Least privilege, checked by the API server's own authorizer: what the operator's
ServiceAccount (k8s/operator/rbac.yaml) may and may not do (`kubectl auth can-i --as=...`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testapp_dev import LiveCluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
OPERATOR = "system:serviceaccount:testapp-system:testapp-operator"

# (verb, resource, extra kubectl auth can-i arguments)
ALLOWED = [
    ("watch", "testappreleases.testapp.dev", ()),
    ("patch", "testappreleases.testapp.dev", ("--subresource=status",)),
    ("watch", "namespaces", ()),
    ("create", "namespaces", ()),
    ("patch", "deployments.apps", ("-n", "test-app-dev")),
    ("patch", "services", ("-n", "test-app-dev")),
    ("patch", "networkpolicies.networking.k8s.io", ("-n", "test-app-dev")),
    ("create", "controllerrevisions.apps", ("-n", "test-app-dev")),
    ("delete", "controllerrevisions.apps", ("-n", "test-app-dev")),
    ("create", "events", ("-n", "default")),
]
DENIED = [
    # Secrets: not one, not in any namespace, not even its own.
    ("get", "secrets", ("-n", "default")),
    ("list", "secrets", ("-A",)),
    ("watch", "secrets", ("-n", "testapp-system")),
    ("get", "secrets", ("-n", "test-app-prd")),
    # Pods: no exec, no attach, no logs, no port-forward, no creating one to read a Secret.
    ("create", "pods", ("-n", "test-app-prd", "--subresource=exec")),
    ("create", "pods", ("-n", "test-app-prd", "--subresource=attach")),
    ("get", "pods", ("-n", "test-app-prd", "--subresource=log")),
    ("create", "pods", ("-n", "test-app-prd", "--subresource=portforward")),
    ("create", "pods", ("-n", "test-app-prd")),
    ("get", "pods", ("-n", "test-app-prd")),
    # Its own releases' spec is people's: it writes status only, and never deletes one.
    ("update", "testappreleases.testapp.dev", ()),
    ("patch", "testappreleases.testapp.dev", ()),
    ("delete", "testappreleases.testapp.dev", ()),
    # What it manages it never deletes (ownerReferences and the GC do that).
    ("delete", "namespaces", ()),
    ("delete", "deployments.apps", ("-n", "test-app-dev")),
    ("delete", "services", ("-n", "test-app-dev")),
    ("delete", "networkpolicies.networking.k8s.io", ("-n", "test-app-dev")),
    # Outside what it manages.
    ("create", "configmaps", ("-n", "default")),
    ("get", "configmaps", ("-n", "kube-system")),
    ("patch", "nodes", ()),
    ("create", "serviceaccounts", ("-n", "testapp-system", "--subresource=token")),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("create", "daemonsets.apps", ("-n", "default")),
    ("create", "jobs.batch", ("-n", "default")),
    # No escalation: no RBAC writes, no impersonation, no CSRs.
    ("create", "clusterroles.rbac.authorization.k8s.io", ()),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ()),
    ("create", "rolebindings.rbac.authorization.k8s.io", ("-n", "testapp-system")),
    ("impersonate", "users", ()),
    ("impersonate", "serviceaccounts", ("-n", "testapp-system")),
    ("create", "certificatesigningrequests.certificates.k8s.io", ()),
    ("*", "*", ()),
]


@pytest.fixture(scope="module")
def rbac(cluster: LiveCluster) -> LiveCluster:
    for manifest in ("namespace.yaml", "rbac.yaml"):
        cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / manifest))
    return cluster


def can_i(cluster: LiveCluster, verb: str, resource: str, extra: tuple[str, ...]) -> bool:
    result = cluster.kubectl(
        "auth", "can-i", verb, resource, *extra, f"--as={OPERATOR}", check=False
    )
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize(("verb", "resource", "extra"), ALLOWED, ids=lambda v: str(v))
def test_the_operator_may_do_what_it_needs(
    rbac: LiveCluster, verb: str, resource: str, extra: tuple[str, ...]
) -> None:
    assert can_i(rbac, verb, resource, extra)


@pytest.mark.parametrize(("verb", "resource", "extra"), DENIED, ids=lambda v: str(v))
def test_the_operator_may_not_do_anything_else(
    rbac: LiveCluster, verb: str, resource: str, extra: tuple[str, ...]
) -> None:
    assert not can_i(rbac, verb, resource, extra)
