"""The canary's rules have one source: the CRD's spec.strategy, spec.canaryCommand and
status.canary agree with canary.py (`parse_strategy`, `Command`, `CanaryState.to_status`), and
docs/canary.md's examples are valid for both. The API server's side of it (CEL, nullability):
tests/cluster/test_crd_validation.py."""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from testapp_operator import canary
from testapp_operator.canary import (
    ANALYSIS_FIELDS,
    DEFAULT_CONSECUTIVE_ERROR_LIMIT,
    DEFAULT_INTERVAL,
    DURATION_MAX,
    DURATION_RE,
    MAX_STEPS,
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    AnalysisState,
    CanaryState,
    Command,
    OnNoData,
    PauseReason,
    Phase,
    StrategyError,
    Verdict,
    parse_strategy,
)

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / "testapp.dev_testappreleases.yaml").read_text())
(VERSION,) = CRD["spec"]["versions"]
SPEC = VERSION["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
STATUS = VERSION["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
STRATEGY = SPEC["strategy"]
STEPS = STRATEGY["properties"]["canary"]["properties"]["steps"]
STEP = STEPS["items"]
ANALYSIS = STEP["properties"]["analysis"]
DURATIONS = {
    "pause.duration": STEP["properties"]["pause"]["properties"]["duration"],
    "analysis.interval": ANALYSIS["properties"]["interval"],
}
GOOD_ANALYSIS = {"query": "up", "successCondition": "result < 1"}


def strategy(*steps: Any) -> dict[str, Any]:
    return {"canary": {"steps": list(steps)}}


def refusal(data: Any) -> str | None:
    """The field parse_strategy names when it refuses `data`, None when it accepts it."""
    try:
        parse_strategy(data)
    except StrategyError as error:
        return error.field
    return None


def cel_string(rule: str, function: str) -> str:
    """The raw-string argument of the first `function(r'...')` call in a CEL rule."""
    match = re.search(rf"{function}\(r'([^']*)'\)", rule)
    assert match, f"no {function}(r'...') in {rule!r}"
    return match[1]


def test_the_step_count_is_max_steps() -> None:
    assert (STEPS["minItems"], STEPS["maxItems"]) == (1, MAX_STEPS)
    assert refusal(strategy(*[{"pause": {}}] * MAX_STEPS)) is None
    assert refusal(strategy(*[{"pause": {}}] * (MAX_STEPS + 1))) == "spec.strategy.canary.steps"
    assert refusal(strategy()) == "spec.strategy.canary.steps"
    assert STRATEGY["properties"]["canary"]["required"] == ["steps"]


def test_a_step_is_exactly_one_of_the_kinds_the_parser_knows() -> None:
    kinds = list(STEP["properties"])

    assert kinds == ["setWeight", "pause", "analysis"]
    assert [alternative["required"] for alternative in STEP["oneOf"]] == [[k] for k in kinds]
    (rule,) = STEP["x-kubernetes-validations"]
    assert all(f"has(self.{kind})" in rule["rule"] for kind in kinds)
    assert "exactly one of setWeight, pause, analysis" in rule["message"]
    samples = {"setWeight": 10, "pause": {}, "analysis": GOOD_ANALYSIS}
    for kind in kinds:
        assert refusal(strategy({kind: samples[kind]})) is None
        others = {k: v for k, v in samples.items() if k != kind}
        assert refusal(strategy(others)) == "spec.strategy.canary.steps[0]"


def test_the_analysis_fields_are_the_parsers() -> None:
    assert set(ANALYSIS["properties"]) == set(ANALYSIS_FIELDS)
    assert ANALYSIS["required"] == ["query"]
    (rule,) = ANALYSIS["x-kubernetes-validations"]
    assert rule["rule"] == "has(self.successCondition) || has(self.failureCondition)"
    assert (
        refusal(strategy({"analysis": {"query": "up"}})) == "spec.strategy.canary.steps[0].analysis"
    )


def integer_step(name: str, value: int) -> dict[str, Any]:
    if name == "setWeight":
        return {"setWeight": value}
    return {"analysis": GOOD_ANALYSIS | {name: value}}


@pytest.mark.parametrize(
    ("name", "declared", "where"),
    [
        ("setWeight", STEP["properties"]["setWeight"], "steps[0].setWeight"),
        *(
            (name, ANALYSIS["properties"][name], f"steps[0].analysis.{name}")
            for name in ("count", "failureLimit", "consecutiveErrorLimit")
        ),
    ],
)
def test_integer_bounds_are_the_parsers(name: str, declared: dict[str, Any], where: str) -> None:
    low, high = declared["minimum"], declared["maximum"]

    assert refusal(strategy(integer_step(name, low))) is None
    assert refusal(strategy(integer_step(name, high))) is None
    assert refusal(strategy(integer_step(name, low - 1))) == f"spec.strategy.canary.{where}"
    assert refusal(strategy(integer_step(name, high + 1))) == f"spec.strategy.canary.{where}"


def test_the_weight_is_a_percentage() -> None:
    weight = STEP["properties"]["setWeight"]
    assert (weight["minimum"], weight["maximum"]) == (0, 100)


@pytest.mark.parametrize("where", DURATIONS)
def test_a_duration_is_the_parsers(where: str) -> None:
    declared = DURATIONS[where]
    (rule,) = declared["x-kubernetes-validations"]
    text = rule["rule"]

    assert declared["x-kubernetes-int-or-string"] is True
    assert cel_string(text, "matches") == DURATION_RE.pattern
    assert f"self >= 1 && self <= {DURATION_MAX}" in text
    assert "duration(self) >= duration('1s')" in text
    assert re.search(r"duration\(self\) <= duration\('(\d+)h'\)", text)[1] == str(
        DURATION_MAX // 3600
    )
    assert DURATION_MAX % 3600 == 0
    assert "must be a duration 1s-24h" in rule["messageExpression"]
    # No number of 6 digits or more is a duration of at most a day (it keeps duration() in range).
    assert "!self.matches(r'[1-9][0-9]{5}')" in text
    assert DURATION_MAX < 10**5


def test_both_durations_have_the_same_rules() -> None:
    pause, interval = DURATIONS.values()

    assert pause["x-kubernetes-validations"] == interval["x-kubernetes-validations"]
    assert pause["maxLength"] == interval["maxLength"]
    assert pause.get("nullable") is True  # `pause: {duration: null}` waits for a human
    assert "nullable" not in interval  # parse_strategy refuses `interval: null`


def test_the_defaults_the_crd_describes_are_the_parsers() -> None:
    """The CRD stores the strategy as written (no defaults), and tells the parser's."""
    properties = ANALYSIS["properties"]

    assert not any("default" in p for p in properties.values())
    assert f"(default {DEFAULT_INTERVAL}s)" in properties["interval"]["description"]
    assert (
        f"(default {DEFAULT_CONSECUTIVE_ERROR_LIMIT})"
        in (properties["consecutiveErrorLimit"]["description"])
    )
    assert "pause (default;" in properties["onNoData"]["description"]
    assert canary.Analysis.__dataclass_fields__["on_no_data"].default is OnNoData.PAUSE


def test_on_no_data_is_the_parsers_enum() -> None:
    assert ANALYSIS["properties"]["onNoData"]["enum"] == [choice.value for choice in OnNoData]


def test_the_placeholders_are_the_parsers() -> None:
    (non_empty, placeholders) = ANALYSIS["properties"]["query"]["x-kubernetes-validations"]
    first, known = re.findall(r"findAll\(r'([^']*)'\)", placeholders["rule"])

    assert non_empty["rule"] == "self.trim() != ''"
    assert first == PLACEHOLDER_RE.pattern
    assert known == PLACEHOLDER_RE.pattern.replace(
        "([A-Za-z_][A-Za-z0-9_]*)", f"({'|'.join(PLACEHOLDERS)})"
    )
    assert all(f"{{{{{name}}}}}" in placeholders["message"] for name in PLACEHOLDERS)


def test_what_the_parser_takes_as_null_the_crd_keeps_as_null() -> None:
    """nullable in the CRD exactly where parse_strategy reads null as absent."""
    assert STRATEGY["nullable"] is True and refusal(None) is None
    assert (
        STRATEGY["properties"]["canary"]["nullable"] is True and refusal({"canary": None}) is None
    )
    assert STEP["properties"]["pause"]["nullable"] is True
    assert refusal(strategy({"pause": None})) is None
    assert "nullable" not in STEP["properties"]["setWeight"]
    assert refusal(strategy({"setWeight": None})) is not None
    assert "nullable" not in STEP["properties"]["analysis"]
    assert refusal(strategy({"analysis": None})) is not None
    for name, declared in ANALYSIS["properties"].items():
        if name == "query":
            continue
        nulled = GOOD_ANALYSIS | {"failureCondition": "result > 2", name: None}
        accepted = refusal(strategy({"analysis": nulled})) is None
        assert declared.get("nullable", False) is accepted, name


def test_the_canary_command_is_canary_command() -> None:
    command = SPEC["canaryCommand"]
    properties = command["properties"]

    assert command["nullable"] is True
    assert command["required"] == ["revision"]
    camel = {re.sub(r"_(\w)", lambda m: m[1].upper(), f.name) for f in fields(Command)}
    assert set(properties) == camel
    assert properties["revision"]["minimum"] == 1
    assert properties["promoteStep"]["minimum"] == 0
    assert properties["abort"]["type"] == "boolean"


NOW = datetime(2026, 12, 3, 12, 0, 10, tzinfo=UTC)
FULL = CanaryState(
    revision=7,
    stable_revision=6,
    step=2,
    phase=Phase.PAUSED,
    weight=25,
    step_started_at=NOW,
    pause_reason=PauseReason.NO_DATA,
    analysis=AnalysisState(
        next_measurement_at=NOW,
        successful=1,
        errors=1,
        last_verdict=Verdict.NO_DATA,
        last_value="",
        last_measured_at=NOW,
        last_message="no data",
    ),
    message="paused",
)
BARE = CanaryState(7, 6, 0, Phase.PROGRESSING, 0, NOW)


def test_status_canary_declares_every_field_to_status_writes() -> None:
    declared = STATUS["canary"]
    written = FULL.to_status(steps=5)

    assert set(declared["properties"]) == set(written)
    assert set(declared["properties"]["analysis"]["properties"]) == set(written["analysis"])
    assert set(declared["required"]) <= set(BARE.to_status(steps=5))
    assert declared["nullable"] is True
    jsonschema.validate(written, declared)


def test_status_canary_requires_what_from_status_cannot_do_without() -> None:
    written = FULL.to_status(steps=5)
    declared = STATUS["canary"]

    def needed(path: tuple[str, ...]) -> set[str]:
        names = set()
        for name in written[path[0]] if path else written:
            data = {**written, "analysis": dict(written["analysis"])}
            del (data[path[0]] if path else data)[name]
            try:
                CanaryState.from_status(data)
            except StrategyError:
                names.add(name)
        return names

    assert set(declared["required"]) == needed(())
    assert set(declared["properties"]["analysis"]["required"]) == needed(("analysis",))


def test_status_canary_enums_are_the_machines() -> None:
    properties = STATUS["canary"]["properties"]

    assert properties["phase"]["enum"] == [phase.value for phase in Phase]
    assert properties["pauseReason"]["enum"] == [reason.value for reason in PauseReason]
    last = properties["analysis"]["properties"]["lastResult"]
    assert last["enum"] == [verdict.value for verdict in Verdict]


def yaml_blocks(section: str) -> list[Any]:
    """The ```yaml blocks of one `## ` section of docs/canary.md."""
    text = (REPO / "docs" / "canary.md").read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", body, re.S)]


def test_the_documented_strategy_is_valid_for_the_parser_and_the_crd() -> None:
    (example,) = yaml_blocks("The strategy")
    documented = example["spec"]["strategy"]

    assert parse_strategy(documented) is not None
    jsonschema.validate(documented, STRATEGY)
    kinds = {kind for step in documented["canary"]["steps"] for kind in step}
    assert kinds == set(STEP["properties"])  # the example shows every kind
    assert {"pause": {}} in documented["canary"]["steps"]


def test_the_documented_command_and_status_are_valid() -> None:
    (command,) = yaml_blocks("Commands")
    (status,) = yaml_blocks("Status")

    jsonschema.validate(command["spec"]["canaryCommand"], SPEC["canaryCommand"])
    jsonschema.validate(status["canary"], STATUS["canary"])
    state = CanaryState.from_status(status["canary"])
    assert set(state.to_status(steps=5)) <= set(STATUS["canary"]["properties"])
