"""Every kustomization renders and validates; `make manifests` sets the image and tag."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.pipeline.gitlab import REPO
from tests.pipeline.make import make

ENVS = ("dev", "stg", "ppd", "prd")
KUBERNETES_VERSION = "1.36.0"  # the local control plane's minor version
CRD = yaml.safe_load((REPO / "crds" / "testapp.dev_testappreleases.yaml").read_text())
PROMETHEUS_OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
KUSTOMIZATIONS = sorted(path.parent for path in (REPO / "k8s").rglob("kustomization.yaml"))
RELEASES = [REPO / "k8s" / "base", *(REPO / "k8s" / "overlays" / env for env in ENVS)]
# The fields the pipeline owns; Argo CD / Flux users ignore them (README).
DEPLOYED_FIELDS = {"image", "tag", "digest", "revision"}
AS_DEPLOYED = {"image": "europe-west1-docker.pkg.dev/demo/test-app/test-app", "tag": "0123abc"}


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def custom_resource_schemas(crds: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> the openAPIV3Schema that a CustomResourceDefinition gives it."""
    return {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]): version[
            "schema"
        ]["openAPIV3Schema"]
        for crd in crds
        for version in crd["spec"]["versions"]
    }


def validate(resource: dict[str, Any], rendered_with: Sequence[dict[str, Any]] = ()) -> None:
    """Built-in kinds against Kubernetes' own schemas (strict), custom resources against the
    CRD that defines them (ours, or one rendered in the same kustomization). The Prometheus
    operator's kinds have no schema here: tests/observability checks their content."""
    crds = [CRD, *(r for r in rendered_with if r["kind"] == "CustomResourceDefinition")]
    schema = custom_resource_schemas(crds).get((resource["apiVersion"], resource["kind"]))
    if schema is not None:
        jsonschema.validate(resource, schema)
    elif (resource["apiVersion"], resource["kind"]) in PROMETHEUS_OPERATOR_KINDS:
        assert resource["metadata"]["name"] and resource["spec"], resource
    else:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_kustomization_renders_valid_resources(directory: Path) -> None:
    resources = kustomize(directory)
    assert resources
    for resource in resources:
        if resource["kind"] == "TestAppRelease":
            # What CI deploys comes on top of the overlay (`make manifests`, `make deploy`).
            resource = {**resource, "spec": {**resource["spec"], **AS_DEPLOYED}}
        validate(resource, rendered_with=resources)


@pytest.mark.parametrize("directory", RELEASES, ids=lambda p: str(p.relative_to(REPO)))
def test_base_and_overlays_carry_nothing_that_ci_deploys(directory: Path) -> None:
    (release,) = kustomize(directory)
    assert not DEPLOYED_FIELDS & release["spec"].keys()


@pytest.mark.parametrize("env", ENVS)
def test_each_overlay_is_one_release_named_after_its_environment(env: str) -> None:
    (release,) = kustomize(REPO / "k8s" / "overlays" / env)
    assert release["kind"] == "TestAppRelease"
    assert release["metadata"]["name"] == f"test-app-{env}"
    assert release["spec"]["env"] == env


@pytest.mark.parametrize("env", ENVS)
def test_make_manifests_renders_the_overlay_with_the_tag_and_image_set(env: str) -> None:
    result = make("manifests", f"ENV={env}", "TAG=0123abc", f"IMAGE={AS_DEPLOYED['image']}")
    assert result.returncode == 0, result.stderr
    (release,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    (overlay,) = kustomize(REPO / "k8s" / "overlays" / env)
    assert release["spec"] == {**overlay["spec"], **AS_DEPLOYED}
    assert release["metadata"] == overlay["metadata"]
    validate(release)


def test_make_manifests_can_write_a_file(tmp_path: Path) -> None:
    out = tmp_path / "dev.yaml"
    result = make(
        "manifests", "ENV=dev", "TAG=v1.2.3", "IMAGE=127.0.0.1:5000/test-app", f"OUT={out}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    release = yaml.safe_load(out.read_text())
    assert release["spec"]["tag"] == "v1.2.3"
    assert release["spec"]["image"] == "127.0.0.1:5000/test-app"


def test_the_image_comes_from_the_artifact_registry_when_the_project_is_known() -> None:
    result = make("manifests", "ENV=ppd", "TAG=abc", GCP_REGION="europe-west1", GCP_PROJECT="demo")
    assert result.returncode == 0, result.stderr
    release = yaml.safe_load(result.stdout)
    assert release["spec"]["image"] == "europe-west1-docker.pkg.dev/demo/test-app/test-app"
