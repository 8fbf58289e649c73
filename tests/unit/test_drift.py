"""drift.needs_apply: write only when the server does not already hold what we render."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from testapp_operator import FIELD_MANAGER
from testapp_operator.drift import compact, needs_apply

DESIRED: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "rel", "namespace": "rel", "labels": {"app": "test-app", "team": "a"}},
    "spec": {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "test-app", "team": "a"}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "r/app:1",
                        "resources": {"requests": {"cpu": "0.5", "memory": "64Mi"}},
                    }
                ]
            },
        },
    },
}


def owned(labels: list[str], template_labels: list[str]) -> dict[str, Any]:
    """managedFields as the API server writes them after our server-side apply."""
    return {
        "manager": FIELD_MANAGER,
        "operation": "Apply",
        "fieldsV1": {
            "f:metadata": {"f:labels": {f"f:{key}": {} for key in labels}},
            "f:spec": {
                "f:template": {
                    "f:metadata": {"f:labels": {f"f:{key}": {} for key in template_labels}}
                }
            },
        },
    }


def observed_from(desired: dict[str, Any]) -> dict[str, Any]:
    """What the server returns: our fields, server defaults around them, our managedFields."""
    observed = copy.deepcopy(desired)
    observed["metadata"]["uid"] = "1234"
    observed["metadata"]["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {}},
        owned(["app", "team"], ["app", "team"]),
    ]
    observed["spec"]["strategy"] = {"type": "RollingUpdate"}
    container = observed["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = "IfNotPresent"
    container["resources"]["requests"]["cpu"] = "500m"  # the server's canonical form of 0.5
    observed["status"] = {"replicas": 2}
    return observed


def test_a_missing_object_needs_apply() -> None:
    assert needs_apply(DESIRED, None)


def test_an_object_with_our_fields_and_server_defaults_needs_no_apply() -> None:
    assert not needs_apply(DESIRED, observed_from(DESIRED))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), 5),
        (("metadata", "labels", "team"), "b"),
        (("spec", "template", "metadata", "labels", "app"), "other"),
    ],
)
def test_a_changed_field_needs_apply(path: tuple[str, ...], value: Any) -> None:
    observed = observed_from(DESIRED)
    node = observed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value

    assert needs_apply(DESIRED, observed)


def test_a_changed_image_in_a_list_needs_apply() -> None:
    observed = observed_from(DESIRED)
    observed["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/app:1"

    assert needs_apply(DESIRED, observed)


def test_a_different_number_of_list_items_needs_apply() -> None:
    observed = observed_from(DESIRED)
    containers = observed["spec"]["template"]["spec"]["containers"]
    containers.append({"name": "sidecar", "image": "x"})

    assert needs_apply(DESIRED, observed)


def test_a_different_quantity_needs_apply() -> None:
    observed = observed_from(DESIRED)
    observed["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "1"

    assert needs_apply(DESIRED, observed)


def test_a_label_we_no_longer_render_needs_apply_to_be_removed() -> None:
    desired = copy.deepcopy(DESIRED)
    del desired["metadata"]["labels"]["team"]
    del desired["spec"]["template"]["metadata"]["labels"]["team"]

    assert needs_apply(desired, observed_from(DESIRED))


POLICY: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "rel-allow-http", "namespace": "rel", "labels": {"app": "test-app"}},
    "spec": {
        "podSelector": {"matchLabels": {"app": "test-app"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}],
    },
}


def applied(desired: dict[str, Any]) -> dict[str, Any]:
    """`desired` as the server holds it after our apply, with our managedFields."""
    observed = copy.deepcopy(desired)
    fields = {"f:metadata": {"f:labels": {f"f:{k}": {} for k in desired["metadata"]["labels"]}}}
    fields["f:spec"] = {f"f:{key}": {} for key in desired["spec"]}
    observed["metadata"]["managedFields"] = [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields}
    ]
    return observed


def test_a_spec_field_we_no_longer_render_needs_apply_to_be_removed() -> None:
    # spec.ingressFrom emptied: the allow policy is rendered without `ingress`.
    admits_nobody = {**POLICY, "spec": {k: v for k, v in POLICY["spec"].items() if k != "ingress"}}

    assert needs_apply(admits_nobody, applied(POLICY))
    assert needs_apply(admits_nobody, compact(applied(POLICY)))
    assert not needs_apply(admits_nobody, applied(admits_nobody))
    assert not needs_apply(POLICY, compact(applied(POLICY)))


def test_a_spec_field_someone_else_added_is_left_alone() -> None:
    observed = applied(POLICY)
    observed["spec"]["egress"] = [{}]
    observed["metadata"]["managedFields"].append(
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:egress": {}}}}
    )

    assert not needs_apply(POLICY, observed)


def test_a_label_someone_else_added_is_left_alone() -> None:
    observed = observed_from(DESIRED)
    observed["metadata"]["labels"]["added-by-someone"] = "yes"

    assert not needs_apply(DESIRED, observed)


def test_an_object_we_never_applied_is_judged_by_its_fields_alone() -> None:
    observed = observed_from(DESIRED)
    observed["metadata"]["managedFields"] = []

    assert not needs_apply(DESIRED, observed)


# compact: what the indexes keep of an observed object.


def full_observed() -> dict[str, Any]:
    """observed_from(DESIRED) with our Apply entry as the server writes it: every field we own."""
    observed = observed_from(DESIRED)
    ours = observed["metadata"]["managedFields"][1]
    ours["fieldsV1"]["f:spec"]["f:replicas"] = {}
    ours["fieldsV1"]["f:spec"]["f:template"]["f:spec"] = {"f:containers": {'k:{"name":"app"}': {}}}
    return observed


def test_compact_keeps_only_our_label_keys_and_spec_keys_of_the_managed_fields() -> None:
    expected = owned(["app", "team"], ["app", "team"])
    expected["fieldsV1"]["f:spec"]["f:replicas"] = {}

    assert compact(full_observed())["metadata"]["managedFields"] == [expected]


def test_compact_keeps_everything_else_and_leaves_its_input_alone() -> None:
    observed = full_observed()
    before = copy.deepcopy(observed)

    kept = compact(observed)

    assert observed == before
    assert {k: v for k, v in kept["metadata"].items() if k != "managedFields"} == {
        k: v for k, v in observed["metadata"].items() if k != "managedFields"
    }
    assert {k: v for k, v in kept.items() if k != "metadata"} == {
        k: v for k, v in observed.items() if k != "metadata"
    }


def test_compact_of_an_object_we_never_applied_has_no_managed_fields() -> None:
    observed = observed_from(DESIRED)
    observed["metadata"]["managedFields"] = observed["metadata"]["managedFields"][:1]

    assert "managedFields" not in compact(observed)["metadata"]
    assert "managedFields" not in compact({"metadata": {"name": "x"}})["metadata"]


def test_compact_of_our_object_without_labels_still_marks_it_ours() -> None:
    observed = observed_from(DESIRED)
    observed["metadata"]["managedFields"] = [owned([], [])]

    kept = compact(observed)["metadata"]["managedFields"]

    # Only the spec keys it owns (`owned` marks the template as ours).
    fields = {"f:spec": {"f:template": {}}}
    assert kept == [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields}]


@pytest.mark.parametrize(
    "desired",
    [
        DESIRED,
        {**DESIRED, "spec": {**DESIRED["spec"], "replicas": 3}},
        {
            **DESIRED,
            "metadata": {**DESIRED["metadata"], "labels": {"app": "test-app"}},
        },
    ],
    ids=["same", "changed field", "label dropped"],
)
def test_needs_apply_judges_a_compact_body_like_the_full_one(desired: dict[str, Any]) -> None:
    observed = full_observed()

    assert needs_apply(desired, compact(observed)) == needs_apply(desired, observed)
