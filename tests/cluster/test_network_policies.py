"""NetworkPolicies on the real API server: accepted, applied with every release, selecting exactly
its Pods on the `http` port, drift-corrected, changed by spec.ingressFrom, removed with it; and the
operator's own policies.

Enforcement is not tested here: kwok runs no network, so the API server stores the policies and
nothing applies them. What is tested is what a plugin enforces: which Pods each policy selects
(the API server's own label selection), which ports, which peers, no egress; and, through a
model of the NetworkPolicy rules (netpol_model.py), what a plugin would let through. The packets
are tested on the real node, where kube-router enforces (tests/node/test_network_policies.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from testapp_dev import LiveCluster, OperatorProcess, wait_until

from tests.cluster.netpol_model import EXTERNAL, Endpoint, allowed
from tests.cluster.test_operator import create, patch, unique, wait_ready

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
RESTRICTED_POD_SPEC = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "c",
            "image": "registry.example.com/other:1",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
}


def policies(cluster: LiveCluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.get("networkpolicies", "-n", namespace)["items"]
    return {p["metadata"]["name"]: p for p in items}


def selected_pods(cluster: LiveCluster, namespace: str, pod_selector: dict[str, Any]) -> set[str]:
    """The Pods of `namespace` a policy's podSelector selects, as the API server selects them."""
    labels = ",".join(f"{k}={v}" for k, v in (pod_selector.get("matchLabels") or {}).items())
    args = ("pods", "-n", namespace, *(("-l", labels) if labels else ()))
    return {p["metadata"]["name"] for p in cluster.get(*args)["items"]}


def pod(cluster: LiveCluster, namespace: str, name: str, labels: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": RESTRICTED_POD_SPEC,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def test_every_release_gets_a_default_deny_and_one_way_in_on_http(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("np")
    create(cluster, name, replicas=2, labels={"team": "web"})

    found = policies(cluster, name)

    assert set(found) == {f"{name}-default-deny", f"{name}-allow-http"}
    deny, allow = found[f"{name}-default-deny"], found[f"{name}-allow-http"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert allow["spec"]["policyTypes"] == ["Ingress"]
    assert "egress" not in allow["spec"]
    (rule,) = allow["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"testapp.dev/client": "true"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    for policy in found.values():
        assert policy["metadata"]["ownerReferences"][0]["name"] == name
        assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "testapp-operator"


def test_the_allow_policy_selects_exactly_the_release_pods_on_their_http_port(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("np")
    create(cluster, name, replicas=2)
    deployment = cluster.get("deployment", name, "-n", name)
    release_pods = selected_pods(cluster, name, deployment["spec"]["selector"])
    wait_until(lambda: len(selected_pods(cluster, name, {})) == 2, what="2 release Pods")
    # A Pod that is not the release's, in its namespace: only the default deny may select it.
    pod(cluster, name, "stranger", {"app": "other"})
    found = policies(cluster, name)

    allow = found[f"{name}-allow-http"]["spec"]
    assert selected_pods(cluster, name, allow["podSelector"]) == release_pods
    assert len(release_pods) == 2
    assert selected_pods(cluster, name, found[f"{name}-default-deny"]["spec"]["podSelector"]) == (
        release_pods | {"stranger"}
    )
    # The port the policy opens is the one the container names `http` and the Service targets.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    service = cluster.get("service", name, "-n", name)
    assert [p["name"] for p in container["ports"]] == [allow["ingress"][0]["ports"][0]["port"]]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_ingress_from_in_the_spec_changes_the_policy_without_a_new_revision(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("np")
    create(cluster, name)
    peers = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "prober"}}},
    ]

    patch(cluster, name, {"spec": {"ingressFrom": peers}})
    wait_until(
        lambda: (
            policies(cluster, name)[f"{name}-allow-http"]["spec"]["ingress"][0]["from"] == peers
        ),
        timeout=30,
        what="the allow policy to take the new peers",
    )
    patch(cluster, name, {"spec": {"ingressFrom": []}})
    wait_until(
        lambda: "ingress" not in policies(cluster, name)[f"{name}-allow-http"]["spec"],
        timeout=30,
        what="an empty ingressFrom to admit nobody",
    )

    assert wait_ready(cluster, name, revision=1)["status"]["revision"] == 1


def test_a_changed_or_deleted_policy_is_restored(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("np")
    create(cluster, name)
    allow = f"{name}-allow-http"
    opened = {"spec": {"ingress": [{"from": [{"namespaceSelector": {}}]}]}}

    cluster.kubectl(
        "patch", "networkpolicy", allow, "-n", name, "--type=merge", "-p", json.dumps(opened)
    )
    wait_until(
        lambda: policies(cluster, name)[allow]["spec"]["ingress"][0].get("ports"),
        timeout=30,
        what="the opened allow policy restored to port http only",
    )
    cluster.kubectl("delete", "networkpolicy", f"{name}-default-deny", "-n", name)
    wait_until(
        lambda: f"{name}-default-deny" in policies(cluster, name),
        timeout=30,
        what="the deleted default deny recreated",
    )


def test_the_policies_go_with_the_release(cluster: LiveCluster, operator: OperatorProcess) -> None:
    name = unique("np")
    create(cluster, name)
    assert len(policies(cluster, name)) == 2

    cluster.kubectl("delete", "tar", name)

    def gone() -> bool:
        result = cluster.kubectl("get", "networkpolicies", "-n", name, "-o", "name", check=False)
        return result.returncode != 0 or not result.stdout.strip()

    wait_until(gone, timeout=90, what=f"the policies of {name} garbage-collected")


@pytest.mark.parametrize(
    "ingress_from",
    [
        [{}],
        [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        [{"podSelector": {"matchLabels": {"a": "b c"}}}],
        [{"namespaceSelector": {"matchLabels": {"bad key": "x"}}}],
        [{"namespaceSelector": {}}] * 17,
        {"namespaceSelector": {}},
    ],
)
def test_the_crd_rejects_an_ingress_peer_the_operator_cannot_render(
    cluster: LiveCluster, crd: None, ingress_from: Any
) -> None:
    body = {
        "apiVersion": "testapp.dev/v1",
        "kind": "TestAppRelease",
        "metadata": {"name": unique("np")},
        "spec": {"env": "dev", "image": "registry.example.com/test-app", "tag": "1"},
    }
    body["spec"]["ingressFrom"] = ingress_from

    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False
    )

    assert result.returncode != 0
    assert "ingressFrom" in result.stderr


def operator_objects() -> list[dict[str, Any]]:
    text = (REPO / "k8s" / "operator" / "networkpolicy.yaml").read_text()
    deployment = yaml.safe_load((REPO / "k8s" / "operator" / "deployment.yaml").read_text())
    return [*(doc for doc in yaml.safe_load_all(text) if doc), deployment]


def test_the_operator_policies_are_accepted_and_open_only_its_probe_and_metrics_ports(
    cluster: LiveCluster,
) -> None:
    *netpols, deployment = operator_objects()
    cluster.kubectl("apply", "-f", str(REPO / "k8s" / "operator" / "namespace.yaml"))
    for policy in netpols:
        applied = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(policy))
        assert applied.returncode == 0

    deny, allow = sorted(netpols, key=lambda p: p["spec"]["podSelector"] != {})
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    template = deployment["spec"]["template"]
    assert (
        allow["spec"]["podSelector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    (container,) = template["spec"]["containers"]
    (ingress,) = allow["spec"]["ingress"]
    assert "from" not in ingress  # kubelet probes and Prometheus, wherever they run
    assert {p["port"] for p in ingress["ports"]} == {p["name"] for p in container["ports"]}
    (egress,) = allow["spec"]["egress"]
    assert "to" not in egress
    assert egress["ports"] == [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]


HTTP = 8000


def endpoint(
    cluster: LiveCluster,
    namespace: str,
    labels: dict[str, str],
    ports: dict[str, int] | None = None,
) -> Endpoint:
    """A Pod's identity as a network plugin sees it: its namespace's labels as stored."""
    namespace_labels = cluster.get("namespace", namespace)["metadata"].get("labels") or {}
    return Endpoint(namespace, namespace_labels, labels, ports or {})


def test_what_an_enforcing_plugin_would_let_through_to_and_from_a_release(
    cluster: LiveCluster, operator: OperatorProcess
) -> None:
    name = unique("np")
    client_namespace, other_namespace = unique("client"), unique("other")
    create(cluster, name)
    for namespace in (client_namespace, other_namespace):
        cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", client_namespace, "testapp.dev/client=true")
    try:
        template = cluster.get("deployment", name, "-n", name)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        app = endpoint(cluster, name, template["metadata"]["labels"], ports)
        client = endpoint(cluster, client_namespace, {"role": "web"})
        other = endpoint(cluster, other_namespace, {"role": "web"})
        neighbour = endpoint(cluster, name, {"app": "other"}, {"http": HTTP})
        every = cluster.get("networkpolicies", "-A")["items"]

        assert allowed(client, app, HTTP, every)
        assert not allowed(client, app, 9090, every), "only the http port"
        assert not allowed(other, app, HTTP, every), "a namespace not labelled as a client"
        assert not allowed(neighbour, app, HTTP, every), "a Pod beside it (its own namespace)"
        assert not allowed(client, neighbour, HTTP, every), "a Pod beside it accepts nothing"
        for api_server_port in (443, 6443):
            assert not allowed(app, EXTERNAL, api_server_port, every), "the app reaches no API"
        assert not allowed(app, client, HTTP, every), "the app opens no connection"
        assert not allowed(app, EXTERNAL, 53, every), "not even DNS"
    finally:
        for namespace in (client_namespace, other_namespace):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_what_an_enforcing_plugin_would_let_through_to_and_from_the_operator() -> None:
    *policies, deployment = operator_objects()
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    operator_pod = Endpoint("testapp-system", {}, template["metadata"]["labels"], ports)
    prometheus = Endpoint("monitoring", {}, {"app": "prometheus"})

    for port in ports.values():
        assert allowed(prometheus, operator_pod, port, policies)
    assert not allowed(prometheus, operator_pod, 9999, policies)
    assert allowed(operator_pod, EXTERNAL, 443, policies)
    assert allowed(operator_pod, EXTERNAL, 6443, policies)
    assert not allowed(operator_pod, EXTERNAL, 53, policies), "no DNS"
    assert not allowed(operator_pod, prometheus, 9090, policies), "nothing but the API server"
