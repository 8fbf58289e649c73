"""Release.from_body parses a TestAppRelease once; bad input names the field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from testapp_operator.canary import Command
from testapp_operator.release import (
    DEFAULT_INGRESS_FROM,
    DEFAULT_RESOURCES,
    Peer,
    Release,
    ReleaseError,
    Resources,
    Snapshot,
)


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "testapp.dev/v1",
        "kind": "TestAppRelease",
        "metadata": {"name": "test-app-dev", "uid": "uid-1", "generation": 3},
        "spec": {"env": "dev", "image": "registry.example.com/test-app", "tag": "1.0.0", **spec},
    }


def test_a_minimal_release_gets_the_crd_defaults() -> None:
    release = Release.from_body(body())

    assert release == Release(
        name="test-app-dev",
        uid="uid-1",
        generation=3,
        env="dev",
        snapshot=Snapshot("registry.example.com/test-app", "1.0.0", resources=DEFAULT_RESOURCES),
        replicas=1,
        pin=None,
        history_limit=10,
        progress_deadline_seconds=180,
        paused=False,
        change_cause="",
    )


def test_every_field_is_read() -> None:
    manifest = body(
        replicas=3,
        labels={"team": "web", "tier": "frontend"},
        revision=2,
        revisionHistoryLimit=5,
        progressDeadlineSeconds=60,
        resources={"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi", "cpu": 1}},
        paused=True,
    )
    manifest["metadata"]["annotations"] = {"testapp.dev/change-cause": "pipeline 42"}

    release = Release.from_body(manifest)

    assert (release.replicas, release.pin, release.history_limit) == (3, 2, 5)
    assert release.progress_deadline_seconds == 60
    assert release.snapshot.labels == (("team", "web"), ("tier", "frontend"))
    assert release.snapshot.resources == Resources(
        requests=(("cpu", "100m"),), limits=(("cpu", "1"), ("memory", "1Gi"))
    )
    assert release.paused is True
    assert release.change_cause == "pipeline 42"
    assert release.namespace == "test-app-dev"


def test_a_null_revision_is_no_pin() -> None:
    assert Release.from_body(body(revision=None)).pin is None


def test_the_snapshot_holds_only_pod_template_inputs() -> None:
    release = Release.from_body(body(replicas=7, labels={"team": "web"}, revisionHistoryLimit=3))

    assert release.snapshot == Snapshot(
        image="registry.example.com/test-app",
        tag="1.0.0",
        labels=(("team", "web"),),
        resources=DEFAULT_RESOURCES,
    )
    assert release.snapshot.image_ref == "registry.example.com/test-app:1.0.0"


def test_label_order_does_not_change_the_snapshot() -> None:
    one = Release.from_body(body(labels={"a": "1", "b": "2", "c": "3"}))
    other = Release.from_body(body(labels={"c": "3", "a": "1", "b": "2"}))

    assert one.snapshot == other.snapshot
    assert json.dumps(one.snapshot.to_data()) == json.dumps(other.snapshot.to_data())


def test_a_snapshot_survives_the_controller_revision_round_trip() -> None:
    snapshot = Release.from_body(body(labels={"team": "web"})).snapshot

    data = json.loads(json.dumps(snapshot.to_data()))

    assert Snapshot.from_data(data) == snapshot
    assert data == {
        "image": "registry.example.com/test-app",
        "tag": "1.0.0",
        "labels": {"team": "web"},
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
    }


def test_integer_quantities_compare_equal_to_their_string_form() -> None:
    as_int = Release.from_body(body(resources={"limits": {"cpu": 1}}))
    as_str = Release.from_body(body(resources={"limits": {"cpu": "1"}}))

    assert as_int.snapshot == as_str.snapshot


@pytest.mark.parametrize(
    "image",
    [
        "registry.example.com/test-app",
        "localhost:5000/test-app",
        "registry.example.com:443/team/test-app",
        "test-app",
    ],
)
def test_repositories_without_tag_are_accepted(image: str) -> None:
    assert Release.from_body(body(image=image)).snapshot.image == image


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"env": "qa"}, "spec.env"),
        ({"env": None}, "spec.env"),
        ({"image": None}, "spec.image"),
        ({"image": ""}, "spec.image"),
        ({"image": "registry.example.com/test-app:1.0"}, "spec.image"),
        ({"image": "localhost:5000/test-app:latest"}, "spec.image"),
        ({"image": "registry.example.com/test-app@sha256:" + "a" * 64}, "spec.image"),
        ({"tag": None}, "spec.tag"),
        ({"tag": ".hidden"}, "spec.tag"),
        ({"tag": "-dash"}, "spec.tag"),
        ({"tag": "a/b"}, "spec.tag"),
        ({"tag": "x" * 129}, "spec.tag"),
        ({"tag": 100}, "spec.tag"),
        ({"replicas": -1}, "spec.replicas"),
        ({"replicas": 101}, "spec.replicas"),
        ({"replicas": "3"}, "spec.replicas"),
        ({"replicas": True}, "spec.replicas"),
        ({"labels": ["team"]}, "spec.labels"),
        ({"labels": {"app": "evil"}}, "spec.labels[app]"),
        ({"labels": {"env": "prd"}}, "spec.labels[env]"),
        ({"labels": {"app.kubernetes.io/name": "x"}}, "spec.labels[app.kubernetes.io/name]"),
        (
            {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
            "spec.labels[pod-security.kubernetes.io/enforce]",
        ),
        ({"labels": {"bad key": "x"}}, "spec.labels[bad key]"),
        ({"labels": {"-start": "x"}}, "spec.labels[-start]"),
        ({"labels": {"a/b/c": "x"}}, "spec.labels[a/b/c]"),
        ({"labels": {"Upper.Case/x": "x"}}, "spec.labels[Upper.Case/x]"),
        ({"labels": {"k" * 64: "x"}}, f"spec.labels[{'k' * 64}]"),
        ({"labels": {"team": "bad value"}}, "spec.labels[team]"),
        ({"labels": {"team": "v" * 64}}, "spec.labels[team]"),
        ({"labels": {"team": 1}}, "spec.labels[team]"),
        ({"labels": {f"k{i}": "v" for i in range(33)}}, "spec.labels"),
        ({"revision": 0}, "spec.revision"),
        ({"revision": "2"}, "spec.revision"),
        ({"revisionHistoryLimit": 0}, "spec.revisionHistoryLimit"),
        ({"revisionHistoryLimit": 101}, "spec.revisionHistoryLimit"),
        ({"progressDeadlineSeconds": 9}, "spec.progressDeadlineSeconds"),
        ({"progressDeadlineSeconds": 3601}, "spec.progressDeadlineSeconds"),
        ({"resources": {"claims": []}}, "spec.resources"),
        ({"resources": {"limits": {"cpu": [1]}}}, "spec.resources.limits.cpu"),
        ({"paused": "yes"}, "spec.paused"),
        ({"retryAt": "yesterday"}, "spec.retryAt"),
        ({"restartAt": 5}, "spec.restartAt"),
        ({"digest": "sha256:" + "A" * 64}, "spec.digest"),
        ({"digest": "sha256:" + "a" * 63}, "spec.digest"),
        ({"digest": "sha512:" + "a" * 128}, "spec.digest"),
        ({"digest": "a" * 64}, "spec.digest"),
        ({"digest": ""}, "spec.digest"),
        ({"digest": 7}, "spec.digest"),
        ({"ingressFrom": {"namespaceSelector": {}}}, "spec.ingressFrom"),
        ({"ingressFrom": [{}]}, "spec.ingressFrom[0]"),
        ({"ingressFrom": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, "spec.ingressFrom[0]"),
        ({"ingressFrom": [{"podSelector": []}]}, "spec.ingressFrom[0].podSelector"),
        (
            {"ingressFrom": [{"namespaceSelector": {"matchExpressions": []}}]},
            "spec.ingressFrom[0].namespaceSelector",
        ),
        (
            {"ingressFrom": [{"podSelector": {}}, {"podSelector": {"matchLabels": {"a": "b c"}}}]},
            "spec.ingressFrom[1].podSelector.matchLabels[a]",
        ),
        (
            {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"bad key": "x"}}}]},
            "spec.ingressFrom[0].namespaceSelector.matchLabels[bad key]",
        ),
        ({"ingressFrom": [{"podSelector": {}}] * 17}, "spec.ingressFrom"),
    ],
)
def test_bad_input_raises_an_error_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ReleaseError) as error:
        Release.from_body(body(**spec))

    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("spec"), "spec"),
        (lambda b: b["metadata"].pop("name"), "metadata.name"),
        (lambda b: b["metadata"].pop("uid"), "metadata.uid"),
        (lambda b: b["spec"].pop("image"), "spec.image"),
    ],
)
def test_missing_required_fields_are_named(mutate: Any, field: str) -> None:
    manifest = body()
    mutate(manifest)

    with pytest.raises(ReleaseError, match=f"^{field}: "):
        Release.from_body(manifest)


def test_parsing_does_not_touch_the_body() -> None:
    manifest = body(labels={"b": "2", "a": "1"})
    before = copy.deepcopy(manifest)

    Release.from_body(manifest)

    assert manifest == before


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (None, "data"),
        ({"tag": "1.0"}, "data.image"),
        ({"image": "registry.example.com/test-app"}, "data.tag"),
        (
            {"image": "registry.example.com/test-app", "tag": "1.0", "labels": {"app": "x"}},
            "data.labels[app]",
        ),
        (
            {"image": "registry.example.com/test-app", "tag": "1.0", "digest": "sha256:x"},
            "data.digest",
        ),
    ],
)
def test_a_corrupt_snapshot_names_the_data_field(data: Any, field: str) -> None:
    with pytest.raises(ReleaseError) as error:
        Snapshot.from_data(data)

    assert error.value.field == field


def test_retry_and_restart_times_are_read_as_given() -> None:
    release = Release.from_body(
        body(retryAt="2025-06-01T12:00:00Z", restartAt="2025-06-01T12:00:00.5+02:00")
    )

    assert (release.retry_at, release.restart_at) == (
        "2025-06-01T12:00:00Z",
        "2025-06-01T12:00:00.5+02:00",
    )


DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_a_digest_is_recorded_with_the_tag_and_runs_by_digest() -> None:
    snapshot = Release.from_body(body(digest=DIGEST)).snapshot

    assert (snapshot.tag, snapshot.digest) == ("1.0.0", DIGEST)
    assert snapshot.image_ref == "registry.example.com/test-app:1.0.0"
    assert snapshot.reference == f"registry.example.com/test-app:1.0.0@{DIGEST}"


def test_without_a_digest_the_tag_runs() -> None:
    for manifest in (body(), body(digest=None)):
        snapshot = Release.from_body(manifest).snapshot
        assert snapshot.digest is None
        assert snapshot.reference == "registry.example.com/test-app:1.0.0"


def test_the_digest_is_part_of_the_snapshot_and_survives_the_round_trip() -> None:
    pinned = Release.from_body(body(digest=DIGEST)).snapshot

    assert pinned != Release.from_body(body()).snapshot
    assert Snapshot.from_data(json.loads(json.dumps(pinned.to_data()))) == pinned


def test_a_revision_stored_before_digests_existed_reads_back_equal() -> None:
    # Its data has no digest key: an operator upgrade must not make a new revision of it.
    stored = {"image": "registry.example.com/test-app", "tag": "1.0.0", "labels": {}}
    tag_only = Release.from_body(body(resources={})).snapshot

    assert Snapshot.from_data(stored) == tag_only
    assert "digest" not in tag_only.to_data()


def test_by_default_only_namespaces_labelled_as_clients_reach_the_app() -> None:
    release = Release.from_body(body())

    assert release.ingress_from == DEFAULT_INGRESS_FROM
    assert [peer.to_data() for peer in release.ingress_from] == [
        {"namespaceSelector": {"matchLabels": {"testapp.dev/client": "true"}}}
    ]


@pytest.mark.parametrize(
    "peers",
    [
        [],
        [{"namespaceSelector": {}}],
        [{"namespaceSelector": {"matchLabels": {}}, "podSelector": {}}],
        [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}},
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prober"}}},
        ],
    ],
)
def test_ingress_peers_are_read_as_the_api_server_stores_them(peers: list[Any]) -> None:
    release = Release.from_body(body(ingressFrom=peers))

    stored = [
        {
            key: ({"matchLabels": sel["matchLabels"]} if sel.get("matchLabels") else {})
            for key, sel in peer.items()
        }
        for peer in peers
    ]
    assert [peer.to_data() for peer in release.ingress_from] == stored


def test_an_ingress_peer_keeps_which_selectors_it_has() -> None:
    (peer,) = Release.from_body(body(ingressFrom=[{"podSelector": {}}])).ingress_from

    assert peer == Peer(namespace_labels=None, pod_labels=())


STRATEGY = {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}}


def test_without_a_strategy_the_release_rolls_out_as_before() -> None:
    release = Release.from_body(body())
    assert release.strategy is None and release.canary_command is None


def test_a_canary_strategy_and_a_command_are_read() -> None:
    command = {"revision": 7, "promoteStep": 1}
    release = Release.from_body(body(strategy=STRATEGY, canaryCommand=command))
    assert release.strategy is not None and len(release.strategy.steps) == 2
    assert release.canary_command == Command(revision=7, promote_step=1)
    aborted = Release.from_body(body(canaryCommand={"revision": 7, "abort": True}))
    assert aborted.canary_command == Command(revision=7, abort=True)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (
            {"strategy": {"canary": {"steps": [{"setWeight": 120}]}}},
            "spec.strategy.canary.steps[0].setWeight",
        ),
        ({"strategy": {"canary": {"steps": []}}}, "spec.strategy.canary.steps"),
        ({"strategy": {"rolling": {}}}, "spec.strategy"),
        ({"canaryCommand": {"promoteStep": 1}}, "spec.canaryCommand.revision"),
        ({"canaryCommand": {"revision": 0}}, "spec.canaryCommand.revision"),
        ({"canaryCommand": {"revision": 2, "promoteStep": -1}}, "spec.canaryCommand.promoteStep"),
        ({"canaryCommand": {"revision": 2, "abort": "yes"}}, "spec.canaryCommand.abort"),
        ({"canaryCommand": {"revision": 2, "skip": 1}}, "spec.canaryCommand"),
    ],
)
def test_a_bad_strategy_or_command_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ReleaseError) as error:
        Release.from_body(body(**spec))
    assert error.value.field == field
