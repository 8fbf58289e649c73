"""The API server itself rejects bad TestAppReleases (OpenAPI schema + CEL), naming the field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from testapp_dev import LiveCluster, wait_until
from testapp_operator.deploylog import log_after
from testapp_operator.release import Release
from testapp_operator.revisions import Outcome, Revision, plan
from testapp_operator.status import Rollout, compute_status

pytestmark = pytest.mark.cluster

Spec = dict[str, Any]


@pytest.fixture(scope="module")
def crd(cluster: LiveCluster, crd: None) -> LiveCluster:
    """The CRD as `make install-crd` installs it (the session's fixture; a second field manager
    on it would be named by every later install), and the cluster."""
    return cluster


@pytest.fixture
def name(crd: LiveCluster) -> Iterator[str]:
    """A fresh release name, deleted afterwards (cluster-scoped: isolate by name)."""
    release = f"crd-{uuid.uuid4().hex[:8]}"
    yield release
    crd.kubectl("delete", "testapprelease", release, "--ignore-not-found", "--wait=false")


def manifest(name: str, spec: Spec | None = None, **top: Any) -> dict[str, Any]:
    base = {"env": "dev", "image": "registry.example.com/test-app", "tag": "1.0.0"}
    return {
        "apiVersion": "testapp.dev/v1",
        "kind": "TestAppRelease",
        "metadata": {"name": name},
        "spec": {**base, **(spec or {})},
        **top,
    }


def without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj["spec"].pop(key)


def apply(cluster: LiveCluster, obj: dict[str, Any]) -> Any:
    """Server-side apply with strict field validation: unknown fields are errors, not dropped."""
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=crd-test",
        "--validate=strict",
        "-f",
        "-",
        input=json.dumps(obj),
        check=False,
    )


REJECTED: list[Any] = [
    pytest.param(without("env"), "spec.env", id="env-missing"),
    pytest.param({"env": "qa"}, "spec.env", id="env-not-in-enum"),
    pytest.param(without("image"), "spec.image", id="image-missing"),
    pytest.param({"image": "registry.example.com/test-app:1.0"}, "spec.image", id="image-tag"),
    pytest.param({"image": "localhost:5000/app:latest"}, "spec.image", id="image-tag-and-port"),
    pytest.param(
        {"image": "registry.example.com/test-app@sha256:" + "a" * 64},
        "spec.image",
        id="image-digest",
    ),
    pytest.param({"image": "Registry/App"}, "spec.image", id="image-uppercase"),
    pytest.param(without("tag"), "spec.tag", id="tag-missing"),
    pytest.param({"tag": ".hidden"}, "spec.tag", id="tag-leading-dot"),
    pytest.param({"tag": "a/b"}, "spec.tag", id="tag-slash"),
    pytest.param({"tag": "x" * 129}, "spec.tag", id="tag-too-long"),
    pytest.param({"tag": 100}, "spec.tag", id="tag-not-a-string"),
    pytest.param({"replicas": -1}, "spec.replicas", id="replicas-negative"),
    pytest.param({"replicas": 101}, "spec.replicas", id="replicas-over-100"),
    pytest.param({"replicas": "three"}, "spec.replicas", id="replicas-not-a-number"),
    pytest.param({"revision": 0}, "spec.revision", id="revision-zero"),
    pytest.param({"revision": "latest"}, "spec.revision", id="revision-not-a-number"),
    pytest.param({"revisionHistoryLimit": 0}, "spec.revisionHistoryLimit", id="limit-zero"),
    pytest.param({"revisionHistoryLimit": 101}, "spec.revisionHistoryLimit", id="limit-over"),
    pytest.param({"progressDeadlineSeconds": 5}, "spec.progressDeadlineSeconds", id="deadline"),
    pytest.param({"paused": "yes"}, "spec.paused", id="paused-not-a-bool"),
    pytest.param({"labels": {"app": "evil"}}, "spec.labels", id="label-app"),
    pytest.param({"labels": {"env": "prd"}}, "spec.labels", id="label-env"),
    pytest.param({"labels": {"app.kubernetes.io/name": "x"}}, "spec.labels", id="label-k8s-io"),
    pytest.param(
        {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
        "spec.labels",
        id="label-pod-security",
    ),
    pytest.param({"labels": {"bad key": "x"}}, "spec.labels", id="label-key-space"),
    pytest.param({"labels": {"a/b/c": "x"}}, "spec.labels", id="label-key-two-slashes"),
    pytest.param({"labels": {"k" * 64: "x"}}, "spec.labels", id="label-key-too-long"),
    pytest.param({"labels": {"team": "bad value"}}, "spec.labels", id="label-value-space"),
    pytest.param({"labels": {"team": "v" * 64}}, "spec.labels", id="label-value-too-long"),
    pytest.param({"labels": {"team": 7}}, "spec.labels", id="label-value-not-a-string"),
    pytest.param({"labels": {f"k{i}": "v" for i in range(33)}}, "spec.labels", id="labels-over-32"),
    pytest.param({"labels": {f"k{i}": "v" for i in range(5000)}}, "spec.labels", id="labels-huge"),
    pytest.param({"resources": {"limits": {"cpu": "lots"}}}, "spec.resources", id="quantity"),
    pytest.param({"resources": {"claims": []}}, "spec.resources.claims", id="resources-claims"),
    pytest.param({"variables": {"A": "1"}}, "spec.variables", id="variables-not-a-list"),
    pytest.param(
        {"variables": [{"name": "1A", "value": "x"}]}, "spec.variables[0].name", id="variable-name"
    ),
    pytest.param({"variables": [{"name": "A"}]}, "spec.variables[0].value", id="variable-no-value"),
    pytest.param(
        {"variables": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        'spec.variables: duplicate entries for key [name="A"]',
        id="variable-twice",
    ),
    pytest.param(
        {"variables": [{"name": "APP_ENV", "value": "prd"}]},
        "spec.variables may not set APP_ENV",
        id="variable-reserved",
    ),
    pytest.param(
        {"variables": [{"name": "A", "value": "x" * 4097}]},
        "spec.variables[0].value",
        id="variable-value-too-long",
    ),
    pytest.param(
        {"variables": [{"name": f"V{i}", "value": ""} for i in range(65)]},
        "spec.variables",
        id="variables-over-64",
    ),
    pytest.param({"replica": 3}, "spec.replica", id="unknown-field-typo"),
    pytest.param({"port": 9000}, "spec.port", id="unknown-field"),
]


@pytest.mark.parametrize(("change", "field"), REJECTED)
def test_an_invalid_release_is_rejected_naming_the_field(
    crd: LiveCluster, name: str, change: Spec | Callable[[dict[str, Any]], None], field: str
) -> None:
    obj = manifest(name)
    if callable(change):
        change(obj)
    else:
        obj["spec"].update(change)

    result = apply(crd, obj)

    assert result.returncode != 0, f"accepted: {json.dumps(obj)[:300]}"
    assert field in result.stderr, result.stderr


def test_a_release_without_spec_is_rejected(crd: LiveCluster, name: str) -> None:
    obj = manifest(name)
    del obj["spec"]

    result = apply(crd, obj)

    assert result.returncode != 0
    assert "spec" in result.stderr


def test_an_unknown_top_level_field_is_rejected(crd: LiveCluster, name: str) -> None:
    result = apply(crd, manifest(name, specs={"env": "dev"}))

    assert result.returncode != 0
    assert "specs" in result.stderr


def test_a_name_that_is_not_a_dns_label_is_rejected(crd: LiveCluster) -> None:
    result = apply(crd, manifest("Test_App"))

    assert result.returncode != 0
    assert "metadata.name" in result.stderr


def test_env_cannot_change_once_set(crd: LiveCluster, name: str) -> None:
    assert apply(crd, manifest(name)).returncode == 0

    result = apply(crd, manifest(name, {"env": "prd"}))

    assert result.returncode != 0
    assert "spec.env is immutable" in result.stderr


def test_a_valid_release_is_accepted_with_defaults_filled(crd: LiveCluster, name: str) -> None:
    result = apply(crd, manifest(name, {"revision": None}))

    assert result.returncode == 0, result.stderr
    spec = crd.get("testapprelease", name)["spec"]
    assert spec == {
        "env": "dev",
        "image": "registry.example.com/test-app",
        "tag": "1.0.0",
        "revision": None,  # nullable: null means "not pinned"
        "replicas": 1,
        "labels": {},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 180,
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "paused": False,
        "ingressFrom": [{"namespaceSelector": {"matchLabels": {"testapp.dev/client": "true"}}}],
        "variables": [],
    }


def test_a_release_using_every_field_is_accepted(crd: LiveCluster, name: str) -> None:
    spec = {
        "image": "localhost:5000/team/test-app",
        "tag": "v1.2.3_rc-1",
        "replicas": 0,
        "labels": {"team": "web", "example.com/tier": "front", "empty": ""},
        "revision": 3,
        "revisionHistoryLimit": 100,
        "progressDeadlineSeconds": 3600,
        "resources": {"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"cpu": "1.5"}},
        "paused": True,
        "digest": "sha256:" + "0123456789abcdef" * 4,
        "variables": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "EMPTY", "value": ""}],
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "prober"}}},
        ],
    }

    result = apply(crd, manifest(name, spec))

    assert result.returncode == 0, result.stderr


def test_scaling_goes_through_the_scale_subresource(crd: LiveCluster, name: str) -> None:
    apply(crd, manifest(name))

    crd.kubectl("scale", "testapprelease", name, "--replicas=3")

    assert crd.get("testapprelease", name)["spec"]["replicas"] == 3


def test_the_printer_columns_show_what_runs_where(crd: LiveCluster, name: str) -> None:
    apply(crd, manifest(name))

    header = crd.kubectl("get", "tar", name).stdout.splitlines()[0].split()

    assert header == [
        "NAME", "ENV", "TAG", "DESIRED", "READY", "REVISION", "PINNED", "PHASE", "AGE"
    ]  # fmt: skip


def test_kubectl_explain_teaches_the_pin(crd: LiveCluster) -> None:
    def explained() -> str:
        result = crd.kubectl("explain", "testapprelease.spec.revision", check=False)
        return result.stdout if result.returncode == 0 else ""

    text = " ".join(wait_until(explained, timeout=30, what="the CRD in OpenAPI v3").split())

    assert "deploys revision N" in text
    assert "Clear it (set it to null or remove it) to roll forward" in text


def test_the_status_the_operator_computes_is_stored_unpruned(crd: LiveCluster, name: str) -> None:
    apply(crd, manifest(name))
    body = crd.get("testapprelease", name)
    release = Release.from_body(body)
    rollout = Rollout(revision=1, exists=True, current=True, desired=1, replicas=1, ready=1)
    revisions = [Revision(1, release.snapshot, Outcome.READY, "first", "2026-01-01T00:00:00Z")]
    planned, now = plan(release, revisions, rollout), datetime.now(UTC)
    status = compute_status(release, planned, rollout, revisions, [], now)
    # As decide() adds it: the deployment log is part of the status the operator writes.
    status["deployments"] = log_after(body, planned, rollout, now)
    status["kopf"] = {"progress": {"reconcile": {"retries": 1}}}

    # Server-side dry run: the object as it would be stored, pruned by the schema, and no race
    # with an operator that may be running in the shared cluster.
    stored = crd.kubectl(
        "patch", "testapprelease", name, "--subresource=status", "--type=merge",
        "--dry-run=server", "-o", "json", "-p", json.dumps({"status": status}),
    )  # fmt: skip

    assert json.loads(stored.stdout)["status"] == status
