"""The API server itself rejects bad TestAppReleases (OpenAPI schema + CEL), naming the field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from testapp_dev import LiveCluster, wait_until
from testapp_operator.canary import (
    AnalysisState,
    CanaryState,
    PauseReason,
    Phase,
    StrategyError,
    Verdict,
    parse_strategy,
    start,
)
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


# --- the canary: spec.strategy, spec.canaryCommand, status.canary (docs/canary.md) ---------------

ANALYSIS = {
    "query": 'sum(rate(http_requests_total{namespace="{{namespace}}",track="{{ track }}"}[1m]))',
    "successCondition": "result < 0.05",
}
STRATEGY = {
    "canary": {
        "steps": [
            {"setWeight": 25},
            {"pause": {"duration": "60s"}},
            {"pause": {"duration": 90}},
            {
                "analysis": ANALYSIS
                | {
                    "failureCondition": "result >= 0.2",
                    "interval": "1h30m",
                    "count": 2,
                    "failureLimit": 0,
                    "consecutiveErrorLimit": 4,
                    "onNoData": "fail",
                }
            },
            {"analysis": {"query": "up", "failureCondition": "result[0] > 1", "interval": 86400}},
            {"setWeight": 100},
            {"pause": {}},
            {"pause": None},  # `- pause:` in YAML: until a human, as `pause: {}`
        ]
    }
}


def steps(*items: Any) -> Spec:
    return {"strategy": {"canary": {"steps": list(items)}}}


def analysis(**fields: Any) -> Spec:
    return steps({"analysis": ANALYSIS | fields})


STEP0 = "spec.strategy.canary.steps[0]"
CANARY_REJECTED: list[Any] = [
    pytest.param(steps({"setWeight": 120}), f"{STEP0}.setWeight", id="weight-120"),
    pytest.param(steps({"setWeight": -1}), f"{STEP0}.setWeight", id="weight-negative"),
    pytest.param(
        steps({"setWeight": 10}, {"setWeight": 20, "pause": {}}),
        "spec.strategy.canary.steps[1]: Invalid value: must have exactly one of setWeight, pause, "
        "analysis",
        id="two-kinds",
    ),
    pytest.param(steps({"setWeight": 10, "pause": None}), STEP0, id="two-kinds-one-null"),
    pytest.param(steps({}), STEP0, id="no-kind"),
    pytest.param(
        steps({"analysis": {"query": "up"}}),
        f"{STEP0}.analysis: Invalid value: needs a successCondition, a failureCondition or both",
        id="analysis-without-conditions",
    ),
    pytest.param(
        steps({"analysis": {"query": "up", "successCondition": None}}),
        f"{STEP0}.analysis: Invalid value: needs a successCondition",
        id="analysis-null-condition",
    ),
    pytest.param(
        analysis(successCondition=" "), f"{STEP0}.analysis.successCondition", id="blank-condition"
    ),
    pytest.param(
        steps({"analysis": {"successCondition": "result < 1"}}),
        f"{STEP0}.analysis.query",
        id="analysis-without-query",
    ),
    pytest.param(analysis(query="  "), f"{STEP0}.analysis.query", id="blank-query"),
    pytest.param(
        analysis(query='up{pod="{{ pod }}"}'),
        STEP0
        + '.analysis.query: Invalid value: "up{pod=\\"{{ pod }}\\"}": has an unknown placeholder',
        id="unknown-placeholder",
    ),
    pytest.param(
        analysis(onNoData="ignore"),
        f'{STEP0}.analysis.onNoData: Unsupported value: "ignore"',
        id="on-no-data",
    ),
    pytest.param(
        analysis(interval="0s"),
        f'{STEP0}.analysis.interval: Invalid value: "0s": must be a duration 1s-24h',
        id="interval-0s",
    ),
    pytest.param(
        analysis(interval="25h"),
        f'{STEP0}.analysis.interval: Invalid value: "25h": must be a duration 1s-24h',
        id="interval-25h",
    ),
    pytest.param(
        analysis(interval="abc"),
        f'{STEP0}.analysis.interval: Invalid value: "abc": must be a duration 1s-24h',
        id="interval-abc",
    ),
    pytest.param(analysis(interval=0), f"{STEP0}.analysis.interval", id="interval-0"),
    pytest.param(analysis(interval="90"), f"{STEP0}.analysis.interval", id="interval-no-unit"),
    pytest.param(analysis(interval="1441m"), f"{STEP0}.analysis.interval", id="interval-1441m"),
    pytest.param(
        analysis(interval="9" * 20 + "h"), f"{STEP0}.analysis.interval", id="interval-huge"
    ),
    pytest.param(analysis(interval=None), f"{STEP0}.analysis.interval", id="interval-null"),
    pytest.param(
        steps({"pause": {"duration": 86401}}), f"{STEP0}.pause.duration", id="pause-over-a-day"
    ),
    pytest.param(analysis(count=0), f"{STEP0}.analysis.count", id="count-0"),
    pytest.param(analysis(failureLimit=101), f"{STEP0}.analysis.failureLimit", id="limit-101"),
    pytest.param(
        analysis(consecutiveErrorLimit=-1),
        f"{STEP0}.analysis.consecutiveErrorLimit",
        id="error-limit-negative",
    ),
    pytest.param(
        steps(*[{"setWeight": 10}] * 33),
        "spec.strategy.canary.steps: Too many: 33: must have at most 32 items",
        id="33-steps",
    ),
    pytest.param(steps(), "spec.strategy.canary.steps", id="no-steps"),
    pytest.param({"strategy": {"canary": {}}}, "spec.strategy.canary.steps", id="canary-no-steps"),
    pytest.param({"strategy": {"blueGreen": {}}}, "spec.strategy.blueGreen", id="unknown-strategy"),
    pytest.param(steps({"setWeight": 10, "weight": 5}), f"{STEP0}.weight", id="unknown-step-field"),
]


@pytest.mark.parametrize(("change", "field"), CANARY_REJECTED)
def test_an_invalid_strategy_is_rejected_naming_the_field(
    crd: LiveCluster, name: str, change: Spec, field: str
) -> None:
    """...and the operator's own parser refuses it too, naming the same field."""
    with pytest.raises(StrategyError) as refused:
        parse_strategy(change["strategy"])

    result = apply(crd, manifest(name, change))

    assert result.returncode != 0, f"accepted: {json.dumps(change)[:300]}"
    assert field in result.stderr, result.stderr
    assert field.startswith(refused.value.field), refused.value


def test_a_canary_strategy_is_accepted_and_stored_as_written(crd: LiveCluster, name: str) -> None:
    assert parse_strategy(STRATEGY) is not None

    result = apply(crd, manifest(name, {"strategy": STRATEGY}))

    assert result.returncode == 0, result.stderr
    assert crd.get("testapprelease", name)["spec"]["strategy"] == STRATEGY


@pytest.mark.parametrize(
    "strategy",
    [None, {}, {"canary": None}],
    ids=["null", "empty", "canary-null"],
)
def test_a_strategy_without_canary_is_the_rolling_update(
    crd: LiveCluster, name: str, strategy: Spec | None
) -> None:
    assert parse_strategy(strategy) is None

    result = apply(crd, manifest(name, {"strategy": strategy}))

    assert result.returncode == 0, result.stderr
    assert crd.get("testapprelease", name)["spec"]["strategy"] == strategy


def test_a_release_without_strategy_gets_none(crd: LiveCluster, name: str) -> None:
    result = apply(crd, manifest(name))

    assert result.returncode == 0, result.stderr
    spec = crd.get("testapprelease", name)["spec"]
    assert "strategy" not in spec
    assert "canaryCommand" not in spec


@pytest.mark.parametrize(
    ("command", "field"),
    [
        pytest.param({"revision": 0}, "spec.canaryCommand.revision", id="revision-0"),
        pytest.param({"abort": True}, "spec.canaryCommand.revision: Required", id="no-revision"),
        pytest.param(
            {"revision": 3, "promoteStep": -1}, "spec.canaryCommand.promoteStep", id="step-negative"
        ),
        pytest.param(
            {"revision": 3, "abort": "yes"}, "spec.canaryCommand.abort", id="abort-string"
        ),
        pytest.param({"revision": 3, "skip": 1}, "spec.canaryCommand.skip", id="unknown-field"),
    ],
)
def test_an_invalid_canary_command_is_rejected(
    crd: LiveCluster, name: str, command: Spec, field: str
) -> None:
    result = apply(crd, manifest(name, {"canaryCommand": command}))

    assert result.returncode != 0, f"accepted: {command}"
    assert field in result.stderr, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        {"revision": 7, "promoteStep": 2, "abort": False},
        {"revision": 7, "abort": True},
        {"revision": 7, "promoteStep": None},
        None,
    ],
    ids=["promote-step", "abort", "step-null", "null"],
)
def test_a_canary_command_is_accepted(crd: LiveCluster, name: str, command: Spec | None) -> None:
    result = apply(crd, manifest(name, {"canaryCommand": command}))

    assert result.returncode == 0, result.stderr
    assert crd.get("testapprelease", name)["spec"]["canaryCommand"] == command


@pytest.mark.parametrize("paused", [False, True], ids=["analysing", "paused-no-data"])
def test_the_canary_status_is_stored_unpruned(crd: LiveCluster, name: str, paused: bool) -> None:
    apply(crd, manifest(name, {"strategy": STRATEGY}))
    started = datetime(2026, 12, 3, 12, 0, 10, tzinfo=UTC)
    state = start(7, 6, started)
    state = replace(state, step=3, weight=25, analysis=AnalysisState(started, successful=1))
    if paused:
        state = replace(
            state,
            phase=Phase.PAUSED,
            pause_reason=PauseReason.NO_DATA,
            analysis=replace(
                state.analysis,
                errors=1,
                last_verdict=Verdict.NO_DATA,
                last_value="",
                last_measured_at=started,
                last_message="no data: the query matched no series (onNoData: pause)",
            ),
        )
    status = {"canary": state.to_status(len(STRATEGY["canary"]["steps"]))}

    stored = crd.kubectl(
        "patch", "testapprelease", name, "--subresource=status", "--type=merge",
        "--dry-run=server", "-o", "json", "-p", json.dumps({"status": status}),
    )  # fmt: skip

    assert json.loads(stored.stdout)["status"]["canary"] == status["canary"]
    assert CanaryState.from_status(status["canary"]) == state
