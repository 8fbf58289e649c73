"""What an enforcing network plugin decides for one connection, from NetworkPolicies as the API
server stores them (networking.k8s.io/v1 semantics, the subset our policies use: matchLabels
selectors, TCP ports by name or number, no ipBlock). kwok enforces nothing, so the cluster tests
ask this model; on the real node kube-router enforces, and tests/node/test_network_policies.py
puts every real connection to this model too, failing when the two disagree.

A Pod here is (namespace labels, Pod labels, named container ports); the API server is
`EXTERNAL`: no Pod, so only a rule without `to` admits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Body = Mapping[str, Any]


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number


EXTERNAL = Endpoint(namespace="")  # an address no Pod has (the API server, the internet)


def allowed(source: Endpoint, target: Endpoint, port: int, policies: Sequence[Body]) -> bool:
    """Both ends must agree: the source's egress and the target's ingress."""
    return _egress_allowed(source, target, port, policies) and _ingress_allowed(
        source, target, port, policies
    )


def _ingress_allowed(
    source: Endpoint, target: Endpoint, port: int, policies: Sequence[Body]
) -> bool:
    if target is EXTERNAL:
        return True
    isolating = _isolating(target, "Ingress", policies)
    return not isolating or any(
        _rule_admits(rule.get("from"), source, target, rule.get("ports"), port)
        for policy in isolating
        for rule in policy["spec"].get("ingress") or []
    )


def _egress_allowed(
    source: Endpoint, target: Endpoint, port: int, policies: Sequence[Body]
) -> bool:
    if source is EXTERNAL:
        return True
    isolating = _isolating(source, "Egress", policies)
    return not isolating or any(
        _rule_admits(rule.get("to"), target, source, rule.get("ports"), port, ports_of=target)
        for policy in isolating
        for rule in policy["spec"].get("egress") or []
    )


def _isolating(pod: Endpoint, direction: str, policies: Sequence[Body]) -> list[Body]:
    """The policies of the Pod's namespace that select it for `direction`."""
    return [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and _matches(p["spec"]["podSelector"], pod.labels)
    ]


def _rule_admits(
    peers: Sequence[Body] | None,
    other: Endpoint,
    policy_pod: Endpoint,
    ports: Sequence[Body] | None,
    port: int,
    ports_of: Endpoint | None = None,
) -> bool:
    """A rule admits `other` when a peer matches it (no peers: everyone) and a port matches (no
    ports: every port). Named ports are the destination Pod's."""
    destination = ports_of or policy_pod
    if ports and not any(_port_matches(p, port, destination) for p in ports):
        return False
    return not peers or any(_peer_matches(peer, other, policy_pod) for peer in peers)


def _port_matches(rule: Body, port: int, destination: Endpoint) -> bool:
    if rule.get("protocol", "TCP") != "TCP":
        return False
    wanted = rule.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        return destination.ports.get(wanted) == port
    return wanted == port


def _peer_matches(peer: Body, other: Endpoint, policy_pod: Endpoint) -> bool:
    if other is EXTERNAL or "ipBlock" in peer:
        return False  # our policies name no ipBlock; selectors match Pods only
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_pod.namespace:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], other.labels)


def _matches(selector: Body, labels: Mapping[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise NotImplementedError("matchExpressions: not used by our policies")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
