"""A catalogue of malformed and hostile changes applied to a RUNNING release: each is rejected by
the API server (or, for a field the schema does not know, dropped with a warning), or reported by
the operator, with a message naming the field, and nothing running changes (the release keeps its
generation, the Deployment its generation and image)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from testapp_dev import IMAGE, LiveCluster, OperatorProcess, manifest, unique, wait_until

from tests.chaos.helpers import deployment, image_of, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

# (what, merge patch of the spec, the field the API server's message must name)
REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("empty tag", {"tag": ""}, "spec.tag"),
    ("tag with a space", {"tag": "1.0 ; rm -rf /"}, "spec.tag"),
    ("tag starting with a dash", {"tag": "-latest"}, "spec.tag"),
    ("tag of 200 characters", {"tag": "a" * 200}, "spec.tag"),
    ("tag removed", {"tag": None}, "spec.tag"),
    ("image with a tag", {"image": "registry.example.com/test-app:evil"}, "spec.image"),
    (
        "image by digest",
        {"image": "registry.example.com/test-app@sha256:" + "0" * 64},
        "spec.image",
    ),
    ("image removed", {"image": None}, "spec.image"),
    ("unknown environment", {"env": "qa"}, "spec.env"),
    ("environment changed", {"env": "prd"}, "spec.env"),
    ("negative replicas", {"replicas": -1}, "spec.replicas"),
    ("too many replicas", {"replicas": 101}, "spec.replicas"),
    ("replicas as text", {"replicas": "three"}, "spec.replicas"),
    ("revision zero", {"revision": 0}, "spec.revision"),
    ("revision as text", {"revision": "latest"}, "spec.revision"),
    ("history limit zero", {"revisionHistoryLimit": 0}, "spec.revisionHistoryLimit"),
    ("deadline of 1 s", {"progressDeadlineSeconds": 1}, "spec.progressDeadlineSeconds"),
    ("label overriding app", {"labels": {"app": "other"}}, "spec.labels"),
    (
        "label lifting pod security",
        {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
        "spec.labels",
    ),
    ("label with an invalid key", {"labels": {"bad key!": "x"}}, "spec.labels"),
    ("label with an invalid value", {"labels": {"team": "a b"}}, "spec.labels"),
    ("paused as text", {"paused": "yes"}, "spec.paused"),
    ("resources with claims", {"resources": {"claims": [{"name": "gpu"}]}}, "spec.resources"),
    ("host network smuggled in", {"hostNetwork": True}, "spec.hostNetwork"),
    ("cpu that is no quantity", {"resources": {"requests": {"cpu": "lots"}}}, "spec.resources"),
]


@pytest.fixture(scope="module")
def running(cluster: LiveCluster, operator: OperatorProcess) -> Iterator[str]:
    """One running release that every bad change is tried on."""
    name = unique("badinput")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest(name, tag="good")))
    wait_ready(cluster, name, "good")
    yield name
    cluster.kubectl("delete", "tar", name, "--ignore-not-found", "--wait=false", check=False)


def running_state(cluster: LiveCluster, name: str) -> tuple[int, str]:
    body = deployment(cluster, name)
    return body["metadata"]["generation"], image_of(body)


def test_the_catalogue_is_large_enough() -> None:
    assert len(REJECTED) + 1 >= 20


@pytest.mark.parametrize(
    ("change", "field"), [(c, f) for _, c, f in REJECTED], ids=[w for w, _, _ in REJECTED]
)
def test_a_bad_change_is_rejected_naming_the_field_and_nothing_running_changes(
    cluster: LiveCluster, running: str, change: dict[str, Any], field: str
) -> None:
    before = running_state(cluster, running)
    generation = cluster.get("tar", running)["metadata"]["generation"]
    result = cluster.kubectl(
        "patch", "tar", running, "--type=merge", "-p", json.dumps({"spec": change}), check=False
    )

    assert field in result.stderr, result.stderr
    if result.returncode == 0:  # a field the schema does not know is pruned, never stored
        assert f'unknown field "{field}' in result.stderr, result.stderr
    after = cluster.get("tar", running)
    assert after["metadata"]["generation"] == generation
    assert after["spec"]["tag"] == "good"
    assert running_state(cluster, running) == before


def test_a_pin_to_a_revision_that_does_not_exist_is_reported_and_nothing_running_changes(
    cluster: LiveCluster, running: str
) -> None:
    # Passes the schema (any revision >= 1); only the operator knows revision 99 is nowhere.
    before = running_state(cluster, running)
    cluster.kubectl("patch", "tar", running, "--type=merge", "-p", '{"spec":{"revision":99}}')
    try:

        def reported() -> dict[str, Any] | None:
            body = cluster.get("tar", running)
            status = body.get("status") or {}
            pinned = next(c for c in status.get("conditions", []) if c["type"] == "Pinned")
            current = status.get("observedGeneration") == body["metadata"]["generation"]
            return pinned if current and pinned["reason"] == "RevisionNotFound" else None

        pinned = wait_until(reported, timeout=30, what="Pinned=False RevisionNotFound")
        assert pinned["status"] == "False"
        assert "revision 99" in pinned["message"]
        assert cluster.get("tar", running)["status"]["phase"] == "Degraded"
        assert running_state(cluster, running) == before == (before[0], f"{IMAGE}:good")
    finally:
        cluster.kubectl("patch", "tar", running, "--type=merge", "-p", '{"spec":{"revision":null}}')
    wait_ready(cluster, running, "good")
    assert running_state(cluster, running) == before
