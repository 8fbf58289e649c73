"""k8s/operator/rbac.yaml grants the operator every verb kinds.py says it needs on each kind (the
kinds of render.CHILDREN among them): a child kind added to the table without its ClusterRole
rule fails here, not in a cluster."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml
from testapp_operator import kinds, render

REPO = Path(__file__).resolve().parents[2]


def granted() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) the operator's ClusterRole allows."""
    documents = yaml.safe_load_all((REPO / "k8s" / "operator" / "rbac.yaml").read_text())
    (role,) = (d for d in documents if d and d["kind"] == "ClusterRole")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def missing(table: Iterable[kinds.Kind], role: set[tuple[str, str, str]]) -> list[str]:
    needed = [
        *((kind.group, kind.plural, verb) for kind in table for verb in kind.verbs),
        *(
            (kind.group, f"{kind.plural}/status", verb)
            for kind in table
            for verb in kind.status_verbs
        ),
    ]
    return [
        f"{verb} {group or 'core'}/{resource}"
        for group, resource, verb in needed
        if (group, resource, verb) not in role
    ]


def test_the_cluster_role_grants_what_the_operator_does() -> None:
    assert missing(kinds.KINDS, granted()) == []


def test_every_child_kind_is_in_the_table_watched_and_applied() -> None:
    for child in render.CHILDREN:
        assert child.kind in kinds.KINDS
        assert set(kinds.WATCH_AND_APPLY) <= set(child.kind.verbs), child.kind.kind


def test_a_child_kind_the_role_lacks_is_named() -> None:
    widget = kinds.Kind("Widget", "example.com", "v1", "widgets", True, kinds.WATCH_AND_APPLY)

    assert missing([*kinds.KINDS, widget], granted()) == [
        f"{verb} example.com/widgets" for verb in kinds.WATCH_AND_APPLY
    ]
