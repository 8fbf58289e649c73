"""What a release produces: Namespace, Deployment, Service, ControllerRevision (docs/design.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest
from testapp_operator import render
from testapp_operator.release import Release, Resources, Snapshot
from testapp_operator.revisions import Outcome, Revision

IMAGE = "registry.example.com/test-app"
RELEASE = Release(
    name="test-app-prd",
    uid="uid-7",
    generation=4,
    env="prd",
    snapshot=Snapshot(IMAGE, "2.0.0", labels=(("team", "web"),)),
    replicas=3,
    progress_deadline_seconds=120,
)
REVISION = Revision(5, RELEASE.snapshot, Outcome.READY, "pipeline 12")
OURS = {
    "app": "test-app",
    "env": "prd",
    "app.kubernetes.io/name": "test-app",
    "app.kubernetes.io/instance": "test-app-prd",
    "app.kubernetes.io/version": "2.0.0",
    "app.kubernetes.io/managed-by": "testapp-operator",
}
OWNER = {
    "apiVersion": "testapp.dev/v1",
    "kind": "TestAppRelease",
    "name": "test-app-prd",
    "uid": "uid-7",
    "controller": True,
    "blockOwnerDeletion": True,
}
RENDERERS = [render.namespace, render.deployment, render.service, render.controller_revision]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(obj)["containers"]
    return only


@pytest.mark.parametrize("renderer", RENDERERS)
def test_every_object_is_a_valid_kubernetes_object_ready_for_apply(renderer: Any) -> None:
    obj = renderer(RELEASE, REVISION)

    kubernetes_validate.validate(obj, "1.36.0", strict=True)
    assert "status" not in obj
    assert obj["metadata"]["ownerReferences"] == [OWNER]


@pytest.mark.parametrize("renderer", [render.namespace, render.deployment, render.service])
def test_namespace_deployment_and_service_carry_our_labels_and_the_revisions(
    renderer: Any,
) -> None:
    obj = renderer(RELEASE, REVISION)

    assert obj["metadata"]["name"] == "test-app-prd"
    unversioned = {k: v for k, v in OURS.items() if k != "app.kubernetes.io/version"}
    assert obj["metadata"]["labels"].items() >= {**unversioned, "team": "web"}.items()


def test_only_what_runs_carries_the_version() -> None:
    deployment = render.deployment(RELEASE, REVISION)
    assert deployment["metadata"]["labels"].items() >= OURS.items()
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= OURS.items()
    for renderer in (render.namespace, render.service):
        assert "app.kubernetes.io/version" not in renderer(RELEASE, REVISION)["metadata"]["labels"]


def test_a_new_tag_changes_only_what_runs() -> None:
    # One write for a tag change, not one per child: a Service spans two versions in a rollout.
    retagged = Revision(6, replace(RELEASE.snapshot, tag="2.0.1"), Outcome.READY)
    for renderer in (render.namespace, render.service):
        assert renderer(RELEASE, retagged) == renderer(RELEASE, REVISION)
    assert render.deployment(RELEASE, retagged) != render.deployment(RELEASE, REVISION)


def test_the_namespace_enforces_restricted_pod_security() -> None:
    labels = render.namespace(RELEASE, REVISION)["metadata"]["labels"]

    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "latest"


def test_the_deployment_selects_exactly_app_and_env() -> None:
    deployment = render.deployment(RELEASE, REVISION)

    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "test-app", "env": "prd"}}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {**OURS, "team": "web"}


def test_the_pod_template_says_which_revision_it_runs() -> None:
    template = render.deployment(RELEASE, REVISION)["spec"]["template"]

    assert template["metadata"]["annotations"] == {"testapp.dev/revision": "5"}


def test_a_restart_changes_the_pod_template_but_not_the_revision() -> None:
    restarted = replace(RELEASE, restart_at="2025-06-01T12:00:00Z")

    template = render.deployment(restarted, REVISION)["spec"]["template"]

    assert template["metadata"]["annotations"] == {
        "testapp.dev/revision": "5",
        "testapp.dev/restarted-at": "2025-06-01T12:00:00Z",
    }


def test_a_pinned_revision_decides_image_labels_and_resources_but_not_replicas() -> None:
    old = Snapshot(IMAGE, "1.0.0", (("team", "old"),), Resources(limits=(("cpu", "1"),)))
    deployment = render.deployment(RELEASE, Revision(2, old, Outcome.READY))

    app = container(deployment)
    assert app["image"] == f"{IMAGE}:1.0.0"
    assert {"name": "APP_VERSION", "value": "1.0.0"} in app["env"]
    assert app["resources"] == {"limits": {"cpu": "1"}}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert (labels["team"], labels["app.kubernetes.io/version"]) == ("old", "1.0.0")
    assert deployment["spec"]["replicas"] == 3


def test_the_deployment_rolls_out_with_the_release_deadline_and_a_short_history() -> None:
    spec = render.deployment(RELEASE, REVISION)["spec"]

    assert spec["progressDeadlineSeconds"] == 120
    assert spec["revisionHistoryLimit"] == 2


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("securityContext", "runAsNonRoot"), True),
        (("securityContext", "runAsUser"), 10001),
        (("securityContext", "seccompProfile"), {"type": "RuntimeDefault"}),
        (("containers", 0, "securityContext", "allowPrivilegeEscalation"), False),
        (("containers", 0, "securityContext", "capabilities"), {"drop": ["ALL"]}),
        (("containers", 0, "securityContext", "readOnlyRootFilesystem"), True),
        (("containers", 0, "volumeMounts"), [{"name": "tmp", "mountPath": "/tmp"}]),
        (("volumes",), [{"name": "tmp", "emptyDir": {}}]),
        (("automountServiceAccountToken",), False),
        (("terminationGracePeriodSeconds",), 30),
    ],
)
def test_the_pod_is_restricted_pod_security_compliant(path: tuple[Any, ...], expected: Any) -> None:
    value: Any = pod_spec(render.deployment(RELEASE, REVISION))
    for key in path:
        value = value[key]

    assert value == expected


def test_the_container_serves_http_with_probes_and_knows_its_env_and_version() -> None:
    app = container(render.deployment(RELEASE, REVISION))

    assert app["name"] == "app"
    assert app["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert app["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_a_slow_start_is_not_killed_by_the_liveness_probe() -> None:
    app = container(render.deployment(RELEASE, REVISION))
    startup = app["startupProbe"]

    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert all(
        app[p]["timeoutSeconds"] >= 3 for p in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    assert app["env"] == [
        {"name": "APP_ENV", "value": "prd"},
        {"name": "APP_VERSION", "value": "2.0.0"},
    ]


def test_a_digest_pinned_revision_runs_its_bytes_by_digest() -> None:
    digest = "sha256:" + "ab" * 32
    pinned = Revision(6, Snapshot(IMAGE, "2.0.0", digest=digest), Outcome.READY)

    deployment = render.deployment(RELEASE, pinned)

    assert container(deployment)["image"] == f"{IMAGE}:2.0.0@{digest}"
    assert container(deployment)["env"][1] == {"name": "APP_VERSION", "value": "2.0.0"}
    assert render.controller_revision(RELEASE, pinned)["data"]["digest"] == digest


def test_the_service_sends_port_80_to_the_named_http_port() -> None:
    spec = render.service(RELEASE, REVISION)["spec"]

    assert spec["type"] == "ClusterIP"
    assert spec["selector"] == {"app": "test-app", "env": "prd"}
    assert spec["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_the_controller_revision_stores_the_snapshot_and_its_record() -> None:
    obj = render.controller_revision(RELEASE, REVISION)

    assert obj["metadata"]["name"] == "test-app-prd-5"
    assert obj["metadata"]["namespace"] == "test-app-prd"
    assert obj["metadata"]["labels"]["testapp.dev/release"] == "test-app-prd"
    assert obj["metadata"]["annotations"] == {
        "testapp.dev/change-cause": "pipeline 12",
        "testapp.dev/outcome": "Ready",
    }
    assert obj["revision"] == 5
    assert Snapshot.from_data(obj["data"]) == REVISION.snapshot


def test_extra_labels_cannot_override_ours() -> None:
    hostile = Snapshot(IMAGE, "2.0.0", (("app", "evil"), ("app.kubernetes.io/name", "evil")))

    labels = render.labels(RELEASE, Revision(1, hostile))

    assert labels["app"] == "test-app"
    assert labels["app.kubernetes.io/name"] == "test-app"


def parsed(labels: dict[str, str]) -> Release:
    return Release.from_body(
        {
            "metadata": {"name": "test-app-prd", "uid": "uid-7"},
            "spec": {"env": "prd", "image": IMAGE, "tag": "2.0.0", "labels": labels},
        }
    )


@pytest.mark.parametrize("renderer", RENDERERS)
def test_rendering_is_deterministic_whatever_the_label_order(renderer: Any) -> None:
    one = parsed({"team": "web", "tier": "front", "cost": "a"})
    other = parsed({"cost": "a", "tier": "front", "team": "web"})

    first = json.dumps(renderer(one, Revision(1, one.snapshot)))
    second = json.dumps(renderer(other, Revision(1, other.snapshot)))

    assert first == second


# --- network policies ------------------------------------------------------------------------


def policies(release: Release = RELEASE) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in render.network_policies(release)}


def test_network_policies_are_valid_objects_ready_for_apply() -> None:
    for policy in render.network_policies(RELEASE):
        kubernetes_validate.validate(policy, "1.36.0", strict=True)
        assert "status" not in policy
        assert policy["metadata"]["namespace"] == "test-app-prd"
        assert policy["metadata"]["ownerReferences"] == [OWNER]


def test_every_pod_of_the_namespace_is_denied_all_ingress_and_egress() -> None:
    deny = policies()["test-app-prd-default-deny"]

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_the_release_pods_accept_only_http_from_the_allowed_peers() -> None:
    allow = policies()["test-app-prd-allow-http"]

    assert allow["spec"] == {
        "podSelector": {"matchLabels": {"app": "test-app", "env": "prd"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"testapp.dev/client": "true"}}}],
                "ports": [{"protocol": "TCP", "port": "http"}],
            }
        ],
    }
    # The same Pods the Deployment and Service select, on the port the container names.
    assert allow["spec"]["podSelector"]["matchLabels"] == render.selector(RELEASE)
    (port,) = container(render.deployment(RELEASE, REVISION))["ports"]
    assert port["name"] == allow["spec"]["ingress"][0]["ports"][0]["port"]


def test_no_egress_is_allowed_not_even_dns() -> None:
    assert all("egress" not in p["spec"] for p in render.network_policies(RELEASE))


def test_the_ingress_peers_come_from_the_spec() -> None:
    peers = [{"namespaceSelector": {}}, {"podSelector": {"matchLabels": {"role": "prober"}}}]
    release = Release.from_body(
        {
            "metadata": {"name": "test-app-prd", "uid": "uid-7"},
            "spec": {"env": "prd", "image": IMAGE, "tag": "2.0.0", "ingressFrom": peers},
        }
    )

    assert policies(release)["test-app-prd-allow-http"]["spec"]["ingress"][0]["from"] == peers


def test_an_empty_ingress_list_admits_nobody_and_renders_as_the_server_stores_it() -> None:
    allow = policies(replace(RELEASE, ingress_from=()))["test-app-prd-allow-http"]

    assert "ingress" not in allow["spec"]
    assert allow["spec"]["policyTypes"] == ["Ingress"]


def test_network_policies_do_not_change_with_the_revision() -> None:
    # No write for them on every rollout: they carry the release's labels, not the tag.
    retagged = replace(RELEASE, snapshot=Snapshot(IMAGE, "9.9.9", labels=(("team", "other"),)))

    assert render.network_policies(retagged) == render.network_policies(RELEASE)
    for policy in render.network_policies(RELEASE):
        assert "app.kubernetes.io/version" not in policy["metadata"]["labels"]
        assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "testapp-operator"


def test_no_policy_name_of_one_release_is_another_releases() -> None:
    names = {
        name: release
        for release in ("a", "a-default-deny", "a-allow-http", "a-allow", "default")
        for name in policies(replace(RELEASE, name=release))
    }
    assert len(names) == 10


CANARIED = replace(
    RELEASE,
    strategy=Release.from_body(
        {
            "metadata": {"name": "x", "uid": "u", "generation": 1},
            "spec": {
                "env": "prd",
                "image": IMAGE,
                "tag": "1",
                "strategy": {"canary": {"steps": [{"setWeight": 25}]}},
            },
        }
    ).strategy,
)


def test_without_a_strategy_there_is_one_deployment_and_no_track() -> None:
    deployments = [
        o
        for o in render.children(RELEASE, render.Running.only(RELEASE, REVISION))
        if o["kind"] == "Deployment"
    ]
    assert [d["metadata"]["name"] for d in deployments] == ["test-app-prd"]
    assert deployments[0] == render.deployment(RELEASE, REVISION)
    assert "testapp.dev/track" not in deployments[0]["spec"]["template"]["metadata"]["labels"]


def test_a_canary_runs_beside_stable_behind_the_one_selector() -> None:
    new = Revision(6, replace(RELEASE.snapshot, tag="2.1.0"))
    running = render.Running(REVISION, 2, new, 1)
    stable, canary = (o for o in render.children(CANARIED, running) if o["kind"] == "Deployment")
    assert (stable["metadata"]["name"], canary["metadata"]["name"]) == (
        "test-app-prd",
        "test-app-prd-canary",
    )
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (2, 1)
    # Stable's selector never changes; the canary's is narrower; the Service selects both.
    assert stable["spec"]["selector"] == render.deployment(RELEASE, REVISION)["spec"]["selector"]
    assert canary["spec"]["selector"]["matchLabels"] == {
        **render.selector(CANARIED),
        "testapp.dev/track": "canary",
    }
    service = render.service(CANARIED, REVISION)["spec"]["selector"]
    for deployment, track, number in ((stable, "stable", "5"), (canary, "canary", "6")):
        template = deployment["spec"]["template"]["metadata"]
        assert template["labels"]["testapp.dev/track"] == track
        assert template["labels"]["testapp.dev/revision"] == number
        assert template["annotations"]["prometheus.io/scrape"] == "true"
        assert service.items() <= template["labels"].items()
    assert container(canary)["image"] == f"{IMAGE}:2.1.0"


def test_with_a_strategy_and_no_canary_the_canary_deployment_is_empty() -> None:
    running = render.Running.only(CANARIED, REVISION)
    deployments = [o for o in render.children(CANARIED, running) if o["kind"] == "Deployment"]
    assert [d["spec"]["replicas"] for d in deployments] == [3, 0]
