"""The installer's pure parts: reading kustomizations, the operator image, ownership, rollout."""

from __future__ import annotations

from pathlib import Path

import pytest
from testapp_operator.delivery import install

DIGEST = "sha256:" + "ab" * 32
OPERATOR = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "testapp-operator", "namespace": "testapp-system"},
    "spec": {
        "template": {"spec": {"containers": [{"name": "operator", "image": "testapp-operator"}]}}
    },
}


def test_a_kustomization_of_resources_is_read_with_its_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "kustomization.yaml").write_text("resources: [crd.yaml]\n")
    (tmp_path / "crds" / "crd.yaml").write_text(
        "kind: CustomResourceDefinition\nmetadata: {name: c}\n"
    )
    (tmp_path / "all.yaml").write_text(
        "kind: Namespace\nmetadata: {name: n}\n---\nkind: Role\nmetadata: {name: r}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "kind: Kustomization\nresources: [all.yaml, crds]\n"
    )

    objects = install.load(tmp_path)

    assert [o["kind"] for o in objects] == ["Namespace", "Role", "CustomResourceDefinition"]
    assert [o["kind"] for o in install.install_order(objects)] == [
        "CustomResourceDefinition",
        "Namespace",
        "Role",
    ]


def test_a_kustomization_feature_it_cannot_apply_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nimages: [{name: x}]\n")
    with pytest.raises(
        install.InstallError, match=r"only `resources:` is supported here, not \['images'\]"
    ):
        install.load(tmp_path)


def test_the_operator_runs_the_image_by_digest() -> None:
    (deployment,) = install.with_operator_image(
        [OPERATOR], "127.0.0.1:5000/testapp-operator", DIGEST
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"127.0.0.1:5000/testapp-operator@{DIGEST}"
    assert OPERATOR["spec"]["template"]["spec"]["containers"][0]["image"] == "testapp-operator"


MANAGED = [
    {"manager": "kubectl-client-side-apply", "operation": "Update"},
    {"manager": "kubectl", "operation": "Apply"},
    {"manager": install.INSTALLER_FIELD_MANAGER, "operation": "Apply"},
    {"manager": "kube-apiserver", "operation": "Update", "subresource": "status"},
    {"manager": "kube-controller-manager", "operation": "Update"},
]


def test_an_install_takes_over_client_side_and_other_appliers_fields_not_controllers() -> None:
    body = {"metadata": {"managedFields": MANAGED}}
    assert install.managers_taken_over(body) == ["kubectl", "kubectl-client-side-apply"]
    assert install.managers_taken_over(None) == []


def test_the_client_side_applys_entry_is_dropped_once_applied_as_kubectl_migrates_it() -> None:
    kept = install.without_client_side_apply({"metadata": {"managedFields": MANAGED}})
    assert kept == MANAGED[1:]
    assert install.without_client_side_apply({"metadata": {"managedFields": MANAGED[1:]}}) is None


def deployment(generation: int = 2, **status: int) -> dict:
    return {
        "metadata": {"name": "testapp-operator", "generation": generation},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


@pytest.mark.parametrize(
    ("body", "done", "message"),
    [
        (deployment(generation=3), False, "to observe the new template"),
        (deployment(updatedReplicas=1), False, "1 of 2 new replicas updated"),
        (
            deployment(updatedReplicas=2, replicas=3),
            False,
            "1 old replicas pending termination",
        ),
        (deployment(updatedReplicas=2, replicas=2, availableReplicas=1), False, "1 of 2 updated"),
        (
            deployment(updatedReplicas=2, replicas=2, availableReplicas=2),
            True,
            "successfully rolled out",
        ),
    ],
)
def test_rollout_is_judged_as_the_operator_judges_its_deployments(
    body: dict, done: bool, message: str
) -> None:
    assert install.rollout_progress(body)[0] is done
    assert message in install.rollout_progress(body)[1]


def test_a_rollout_past_its_deadline_fails() -> None:
    body = deployment()
    body["status"]["conditions"] = [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]
    with pytest.raises(install.InstallError, match="exceeded its progress deadline"):
        install.rollout_progress(body)
