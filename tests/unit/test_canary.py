"""The canary of docs/canary.md: the strategy, the replica split, every transition of the step
machine, the conditions, the query templates and Prometheus's answers (all pure)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import promql_parser
import pytest
from testapp_operator import canary
from testapp_operator.canary import (
    CANARY,
    STABLE,
    Analysis,
    Canary,
    CanaryState,
    Command,
    Measurement,
    NoData,
    Observation,
    OnNoData,
    Outcome,
    Pause,
    PauseReason,
    Phase,
    QueryContext,
    QueryFailed,
    SetWeight,
    StrategyError,
    Track,
    Values,
    Verdict,
)

T0 = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
REPLICAS = 4
NEW, OLD = 7, 6  # the canary's revision and what stable runs
QUERY = 'sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}"}[1m]))'


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def analysis(**fields: Any) -> Analysis:
    spec = {"query": QUERY, "successCondition": "result < 0.05", **fields}
    step = canary.parse_strategy({"canary": {"steps": [{"analysis": spec}]}})
    assert step is not None
    only = step.steps[0]
    assert isinstance(only, Analysis)
    return only


def strategy(*steps: dict[str, Any]) -> Canary:
    parsed = canary.parse_strategy({"canary": {"steps": list(steps)}})
    assert parsed is not None
    return parsed


def ready(canary_pods: int = 0, stable_pods: int = 0, **more: int) -> dict[tuple[str, int], int]:
    counts = {(CANARY, NEW): canary_pods, (STABLE, OLD): stable_pods}
    if "promoted" in more:
        counts[(STABLE, NEW)] = more["promoted"]
    return counts


def observe(
    seconds: float = 0,
    ready_pods: dict[tuple[str, int], int] | None = None,
    outcome: canary.QueryOutcome | None = None,
    step: int | None = None,
    command: Command | None = None,
    state: CanaryState | None = None,
) -> Observation:
    measurement = None
    if outcome is not None:
        if step is None:
            assert state is not None, "a measurement is for a step: give step or state"
            step = state.step
        measurement = Measurement(NEW, step, outcome)
    return Observation(at(seconds), ready_pods or {}, measurement, command)


def begin() -> CanaryState:
    return canary.start(NEW, OLD, T0)


def reasons(decision: canary.Decision) -> list[str]:
    return [event.reason for event in decision.events]


# --- the strategy ------------------------------------------------------------------------------


def test_no_strategy_or_no_canary_is_the_rolling_update() -> None:
    assert canary.parse_strategy(None) is None
    assert canary.parse_strategy({}) is None
    assert canary.parse_strategy({"canary": None}) is None


def test_a_full_strategy_parses_into_its_steps_with_the_defaults_filled_in() -> None:
    parsed = strategy(
        {"setWeight": 25},
        {"pause": {"duration": "1m30s"}},
        {"pause": {}},
        {"analysis": {"query": QUERY, "failureCondition": "result[0] > 0.1"}},
    )

    assert parsed.steps[:3] == (SetWeight(25), Pause(90), Pause(None))
    step = parsed.steps[3]
    assert isinstance(step, Analysis)
    assert step.success is None and step.failure == canary.parse_condition("result[0] > 0.1")
    assert (step.interval, step.count, step.failure_limit) == (30, 1, 0)
    assert step.consecutive_error_limit == 4
    assert step.on_no_data is OnNoData.PAUSE


def test_every_analysis_field_is_read() -> None:
    step = analysis(
        failureCondition="result > 0.5",
        interval="2m",
        count=5,
        failureLimit=2,
        consecutiveErrorLimit=0,
        onNoData="fail",
    )

    assert (step.interval, step.count, step.failure_limit, step.consecutive_error_limit) == (
        120,
        5,
        2,
        0,
    )
    assert step.on_no_data is OnNoData.FAIL
    assert step.success is not None and step.success.text == "result < 0.05"


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [(45, 45), ("45s", 45), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2m5s", 125)],
)
def test_durations_read_as_seconds(duration: Any, seconds: int) -> None:
    assert strategy({"pause": {"duration": duration}}).steps == (Pause(seconds),)


BAD_STRATEGIES = [
    ([], "spec.strategy.canary.steps", "non-empty list"),
    ([{"setWeight": 120}], "spec.strategy.canary.steps[0].setWeight", "integer 0-100, not 120"),
    ([{"setWeight": True}], "spec.strategy.canary.steps[0].setWeight", "integer 0-100"),
    ([{"setWeight": 10}, {"setWeight": "50"}], "spec.strategy.canary.steps[1].setWeight", "'50'"),
    ([{"setWeight": 10, "pause": {}}], "spec.strategy.canary.steps[0]", "exactly one of"),
    ([{}], "spec.strategy.canary.steps[0]", "exactly one of setWeight, pause, analysis"),
    ([{"wait": 1}], "spec.strategy.canary.steps[0]", "unknown field(s) wait"),
    ([{"pause": {"duration": "0s"}}], "spec.strategy.canary.steps[0].pause.duration", "1s-24h"),
    ([{"pause": {"duration": "25h"}}], "spec.strategy.canary.steps[0].pause.duration", "1s-24h"),
    ([{"pause": {"duration": "1d"}}], "spec.strategy.canary.steps[0].pause.duration", "'1d'"),
    ([{"pause": {"duration": ""}}], "spec.strategy.canary.steps[0].pause.duration", "''"),
    ([{"pause": {"duration": "60s\n"}}], "steps[0].pause.duration", "'60s\\n'"),
    ([{"pause": {"until": "x"}}], "spec.strategy.canary.steps[0].pause", "unknown field(s) until"),
    ([{"pause": 5}], "spec.strategy.canary.steps[0].pause", "must be an object"),
    ([{"analysis": {"successCondition": "result < 1"}}], "steps[0].analysis.query", "non-empty"),
    ([{"analysis": {"query": QUERY}}], "steps[0].analysis", "a successCondition, a failure"),
    (
        [{"analysis": {"query": "up{job='{{job}}'}", "successCondition": "result > 0"}}],
        "steps[0].analysis.query",
        "unknown placeholder {{job}}",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "result <"}}],
        "steps[0].analysis.successCondition",
        "found the end at column 9",
    ),
    (
        [{"analysis": {"query": QUERY, "failureCondition": 1}}],
        "steps[0].analysis.failureCondition",
        "must be a string",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "result < 1", "onNoData": "skip"}}],
        "steps[0].analysis.onNoData",
        "pause, fail, pass, not 'skip'",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "result < 1", "count": 0}}],
        "steps[0].analysis.count",
        "integer 1-100, not 0",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "result < 1", "failureLimit": -1}}],
        "steps[0].analysis.failureLimit",
        "integer 0-100",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "r", "consecutiveErrorLimit": 1}}],
        "steps[0].analysis.successCondition",
        "unknown name 'r'",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "result < 1", "interval": "1x"}}],
        "steps[0].analysis.interval",
        "'1x'",
    ),
    (
        [{"analysis": {"query": QUERY, "successCondition": "result < 1", "timeout": 3}}],
        "steps[0].analysis",
        "unknown field(s) timeout",
    ),
    ([{"setWeight": 1}] * 33, "spec.strategy.canary.steps", "at most 32 steps, not 33"),
]


@pytest.mark.parametrize(("steps", "where", "message"), BAD_STRATEGIES)
def test_a_bad_strategy_is_refused_naming_the_field(
    steps: list[Any], where: str, message: str
) -> None:
    with pytest.raises(StrategyError) as raised:
        canary.parse_strategy({"canary": {"steps": steps}})

    assert raised.value.field.endswith(where)
    assert raised.value.field.startswith("spec.strategy.canary.steps")
    assert message in str(raised.value)


def test_unknown_strategy_fields_are_refused() -> None:
    with pytest.raises(StrategyError, match=r"^spec.strategy: unknown field\(s\) blueGreen"):
        canary.parse_strategy({"blueGreen": {}})
    with pytest.raises(StrategyError, match=r"^spec.strategy.canary: unknown field\(s\) weights"):
        canary.parse_strategy({"canary": {"steps": [{"setWeight": 5}], "weights": []}})
    with pytest.raises(StrategyError, match=r"^spec.strategy: must be an object, not list"):
        canary.parse_strategy([])


# --- the replica split --------------------------------------------------------------------------

SPLITS = [
    # weight, replicas -> canary, stable
    (0, 4, 0, 4),
    (25, 4, 1, 3),
    (50, 4, 2, 2),
    (75, 4, 3, 1),
    (100, 4, 4, 0),
    (10, 4, 1, 3),  # 0.4 rounds to 0: at least one while the weight is above 0
    (1, 100, 1, 99),  # 1 % needs 100 replicas
    (1, 10, 1, 9),
    (12, 4, 1, 3),  # 0.48 -> 0 -> at least 1
    (13, 4, 1, 3),  # 0.52 -> 1
    (50, 3, 2, 1),  # 1.5 rounds half up
    (50, 5, 3, 2),  # 2.5 rounds half up, not to even
    (33, 3, 1, 2),
    (67, 3, 2, 1),
    (99, 4, 4, 1),  # all would be canary below 100 %: stable keeps one, the total is 5
    (25, 1, 1, 1),  # one replica: one of each while the canary runs
    (100, 1, 1, 0),
    (0, 1, 0, 1),
    (50, 0, 0, 0),  # scaled to zero stays at zero
    (100, 0, 0, 0),
]


@pytest.mark.parametrize(("weight", "replicas", "canary_replicas", "stable_replicas"), SPLITS)
def test_the_replica_split(
    weight: int, replicas: int, canary_replicas: int, stable_replicas: int
) -> None:
    assert canary.split(weight, replicas) == (canary_replicas, stable_replicas)


@pytest.mark.parametrize("replicas", range(0, 101))
def test_the_split_never_serves_fewer_than_the_replicas_asked_for(replicas: int) -> None:
    for weight in range(0, 101):
        canary_replicas, stable_replicas = canary.split(weight, replicas)
        assert canary_replicas + stable_replicas in (replicas, replicas + 1)
        assert (canary_replicas > 0) == (weight > 0 and replicas > 0)
        assert (stable_replicas == 0) == (weight == 100 or replicas == 0)


# --- the step machine: weights ------------------------------------------------------------------


def test_a_new_canary_sets_the_first_weight_and_waits_for_its_pods() -> None:
    plan = strategy({"setWeight": 25}, {"pause": {}})

    decision = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4)))

    assert decision.state.weight == 25
    assert decision.state.step == 0 and decision.state.phase is Phase.PROGRESSING
    assert (decision.stable, decision.canary) == (Track(OLD, 3), Track(NEW, 1))
    assert reasons(decision) == ["CanaryWeight"]
    assert decision.requeue_after is None  # the Pods' watch brings the next look
    assert "0/1 canary" in decision.state.message


def test_a_weight_step_passes_once_both_tracks_have_their_pods_ready() -> None:
    plan = strategy({"setWeight": 25}, {"pause": {}})
    waiting = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4))).state

    not_yet = canary.advance(plan, REPLICAS, waiting, observe(5, ready(1, 2)))
    passed = canary.advance(plan, REPLICAS, waiting, observe(5, ready(1, 3)))

    assert not_yet.state.step == 0 and not_yet.events == ()
    assert passed.state.step == 1
    assert passed.state.phase is Phase.PAUSED
    assert reasons(passed) == ["CanaryStep", "CanaryPaused"]


def test_a_lower_weight_waits_for_the_stable_pods_it_gives_back() -> None:
    plan = strategy({"setWeight": 75}, {"setWeight": 25}, {"pause": {}})
    state = canary.advance(plan, REPLICAS, begin(), observe(0, ready(3, 1))).state
    assert (state.step, state.weight) == (1, 25)

    waiting = canary.advance(plan, REPLICAS, state, observe(1, ready(3, 1)))
    passed = canary.advance(plan, REPLICAS, state, observe(2, ready(1, 3)))

    assert waiting.state.step == 1 and (waiting.stable, waiting.canary) == (
        Track(OLD, 3),
        Track(NEW, 1),
    )
    assert passed.state.step == 2


def test_steps_that_are_already_satisfied_pass_in_one_call() -> None:
    plan = strategy({"setWeight": 0}, {"setWeight": 0}, {"pause": {}})

    decision = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4)))

    assert decision.state.step == 2 and decision.state.phase is Phase.PAUSED
    assert reasons(decision) == ["CanaryStep", "CanaryStep", "CanaryPaused"]


def test_the_split_follows_a_change_of_replicas_during_the_canary() -> None:
    plan = strategy({"setWeight": 50}, {"pause": {}})
    state = canary.advance(plan, 4, begin(), observe(0, ready(2, 2))).state

    decision = canary.advance(plan, 10, state, observe(1, ready(2, 2)))

    assert (decision.stable, decision.canary) == (Track(OLD, 5), Track(NEW, 5))


# --- pauses -------------------------------------------------------------------------------------


def test_a_timed_pause_waits_its_duration_then_passes() -> None:
    plan = strategy({"pause": {"duration": "60s"}}, {"pause": {}})

    early = canary.advance(plan, REPLICAS, begin(), observe(20))
    on_time = canary.advance(plan, REPLICAS, early.state, observe(60))

    assert early.state.step == 0 and early.state.phase is Phase.PROGRESSING
    assert early.requeue_after == 40
    assert "pausing until 2026-12-03T12:01:00Z" in early.state.message
    assert on_time.state.step == 1


def test_a_timed_pause_counts_from_its_own_start_not_the_canary_start() -> None:
    plan = strategy({"setWeight": 25}, {"pause": {"duration": "60s"}}, {"pause": {}})
    waiting = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4))).state
    pausing = canary.advance(plan, REPLICAS, waiting, observe(100, ready(1, 3)))

    still = canary.advance(plan, REPLICAS, pausing.state, observe(150, ready(1, 3)))
    done = canary.advance(plan, REPLICAS, pausing.state, observe(160, ready(1, 3)))

    assert pausing.state.step == 1 and pausing.requeue_after == 60
    assert still.state.step == 1 and still.requeue_after == 10
    assert done.state.step == 2


def test_an_open_pause_waits_for_promote_step_however_long() -> None:
    plan = strategy({"pause": {}}, {"setWeight": 50})
    paused = canary.advance(plan, REPLICAS, begin(), observe(0))

    a_day_later = canary.advance(plan, REPLICAS, paused.state, observe(86400))

    assert paused.state.phase is Phase.PAUSED and paused.state.pause_reason is PauseReason.STEP
    assert paused.requeue_after is None
    assert a_day_later.state == paused.state
    assert a_day_later.events == ()  # the pause is announced once, not on every look


def test_promote_step_passes_the_paused_step() -> None:
    plan = strategy({"pause": {}}, {"setWeight": 50})
    paused = canary.advance(plan, REPLICAS, begin(), observe(0)).state

    decision = canary.advance(
        plan, REPLICAS, paused, observe(10, ready(0, 4), command=Command(NEW, promote_step=0))
    )

    assert decision.state.step == 1 and decision.state.weight == 50
    assert decision.state.phase is Phase.PROGRESSING and decision.state.pause_reason is None
    assert reasons(decision)[:2] == ["CanaryStepPromoted", "CanaryStep"]


def test_promote_step_is_a_level_applying_it_again_changes_nothing() -> None:
    plan = strategy({"pause": {}}, {"pause": {}})
    paused = canary.advance(plan, REPLICAS, begin(), observe(0)).state
    promote = Command(NEW, promote_step=0)
    once = canary.advance(plan, REPLICAS, paused, observe(1, command=promote))

    again = canary.advance(plan, REPLICAS, once.state, observe(2, command=promote))

    assert once.state.step == 1 and once.state.phase is Phase.PAUSED
    assert again.state == once.state and again.events == ()


def test_promote_step_skips_a_step_that_is_not_paused() -> None:
    plan = strategy({"setWeight": 50}, {"pause": {}})
    waiting = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4))).state

    decision = canary.advance(
        plan, REPLICAS, waiting, observe(1, ready(0, 4), command=Command(NEW, promote_step=0))
    )

    assert decision.state.step == 1 and decision.state.weight == 50


def test_a_command_for_another_revision_is_ignored() -> None:
    plan = strategy({"pause": {}}, {"setWeight": 50})
    paused = canary.advance(plan, REPLICAS, begin(), observe(0)).state

    promoted_elsewhere = canary.advance(
        plan, REPLICAS, paused, observe(1, command=Command(NEW - 1, promote_step=0))
    )
    aborted_elsewhere = canary.advance(
        plan, REPLICAS, paused, observe(1, command=Command(NEW + 1, abort=True))
    )

    assert promoted_elsewhere.state == paused
    assert aborted_elsewhere.state == paused and aborted_elsewhere.ending is None


# --- abort and promotion ------------------------------------------------------------------------


@pytest.mark.parametrize("at_step", [0, 1, 2])
def test_abort_empties_the_canary_and_leaves_stable_untouched_from_any_step(at_step: int) -> None:
    plan = strategy(
        {"setWeight": 25},
        {"pause": {}},
        {"analysis": {"query": QUERY, "successCondition": "result < 1"}},
    )
    state = replace(begin(), step=at_step, weight=25)

    decision = canary.advance(plan, REPLICAS, state, observe(5, command=Command(NEW, abort=True)))

    assert decision.state.phase is Phase.ABORTED
    assert (decision.stable, decision.canary) == (Track(OLD, REPLICAS), Track(NEW, 0))
    assert decision.ending == canary.Ending(
        Outcome.ABORTED, "AbortedByUser", "aborted by kubectl testapp abort", ""
    )
    assert reasons(decision) == ["AbortCanary"] and decision.events[0].warning


@pytest.mark.parametrize("phase", [Phase.PROGRESSING, Phase.PAUSED])
def test_a_canary_whose_pods_cannot_become_ready_is_aborted(phase: Phase) -> None:
    plan = strategy({"setWeight": 25}, {"pause": {}})
    state = replace(begin(), weight=25, phase=phase)
    failed = replace(observe(700, ready(0, 3)), canary_failed="progress deadline exceeded")

    decision = canary.advance(plan, REPLICAS, state, failed)

    assert decision.state.phase is Phase.ABORTED
    assert (decision.stable, decision.canary) == (Track(OLD, REPLICAS), Track(NEW, 0))
    assert decision.ending == canary.Ending(
        Outcome.ABORTED, "CanaryFailed", "progress deadline exceeded", ""
    )


def test_a_failed_canary_deployment_during_promotion_leaves_the_verdict_to_stable() -> None:
    """Once promoting, stable runs the new revision: its own rollout decides (revisions.plan)."""
    plan = strategy({"setWeight": 50})
    promoting = replace(begin(), step=1, weight=50, phase=Phase.PROMOTING)
    failed = replace(observe(9, ready(2, 0, promoted=4)), canary_failed="deadline")

    assert canary.advance(plan, REPLICAS, promoting, failed).state.phase is Phase.PROMOTED


def test_after_the_last_step_stable_takes_the_canary_revision_then_the_canary_empties() -> None:
    plan = strategy({"setWeight": 50})
    waiting = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4))).state

    promoting = canary.advance(plan, REPLICAS, waiting, observe(5, ready(2, 2)))
    rolling = canary.advance(plan, REPLICAS, promoting.state, observe(6, ready(2, 0, promoted=3)))
    promoted = canary.advance(plan, REPLICAS, rolling.state, observe(9, ready(2, 0, promoted=4)))

    assert promoting.state.phase is Phase.PROMOTING
    # The canary keeps serving its share until stable runs the new revision in full.
    assert (promoting.stable, promoting.canary) == (Track(NEW, 4), Track(NEW, 2))
    assert reasons(promoting) == ["CanaryStep", "CanaryPromoting"]
    assert rolling.state.phase is Phase.PROMOTING and "3/4 stable Pods" in rolling.state.message
    assert promoted.state.phase is Phase.PROMOTED
    assert (promoted.stable, promoted.canary) == (Track(NEW, 4), Track(NEW, 0))
    assert promoted.ending is not None and promoted.ending.outcome is Outcome.PROMOTED
    assert reasons(promoted) == ["CanaryPromoted"]


def test_abort_during_promotion_puts_stable_back_on_its_revision() -> None:
    plan = strategy({"setWeight": 50})
    promoting = replace(begin(), step=1, weight=50, phase=Phase.PROMOTING)

    decision = canary.advance(
        plan, REPLICAS, promoting, observe(1, command=Command(NEW, abort=True))
    )

    assert decision.stable == Track(OLD, REPLICAS) and decision.canary == Track(NEW, 0)


@pytest.mark.parametrize("phase", [Phase.PROMOTED, Phase.ABORTED])
def test_an_ended_canary_stays_ended_whatever_happens(phase: Phase) -> None:
    plan = strategy({"setWeight": 50})
    ended = replace(begin(), step=1, weight=50, phase=phase)

    for command in (Command(NEW, abort=True), Command(NEW, promote_step=0), None):
        decision = canary.advance(plan, REPLICAS, ended, observe(1, ready(4, 4), command=command))
        assert decision.state == ended and decision.events == () and decision.ending is None


# --- analysis -----------------------------------------------------------------------------------


def analysing(**fields: Any) -> tuple[Canary, CanaryState]:
    """A strategy of setWeight 25 then one analysis (then a pause), at the analysis step."""
    spec = {"query": QUERY, "successCondition": "result < 0.05", "interval": "30s", **fields}
    plan = strategy({"setWeight": 25}, {"analysis": spec}, {"pause": {}})
    waiting = canary.advance(plan, REPLICAS, begin(), observe(0, ready(0, 4))).state
    state = canary.advance(plan, REPLICAS, waiting, observe(10, ready(1, 3))).state
    assert state.step == 1 and state.analysis is not None
    return plan, state


def measure(
    plan: Canary, state: CanaryState, seconds: float, outcome: canary.QueryOutcome
) -> canary.Decision:
    return canary.advance(
        plan, REPLICAS, state, observe(seconds, ready(1, 3), outcome=outcome, state=state)
    )


CONTEXT = QueryContext("test-app-dev", "test-app-dev", NEW)


def test_the_first_measurement_is_due_one_interval_after_the_step_began() -> None:
    plan, state = analysing()

    assert canary.due_measurement(plan, state, at(39), CONTEXT) is None
    request = canary.due_measurement(plan, state, at(40), CONTEXT)

    assert request == canary.MeasurementRequest(
        NEW,
        1,
        'sum(rate(http_requests_total{namespace="test-app-dev",track="canary"}[1m]))',
    )
    looked = canary.advance(plan, REPLICAS, state, observe(20, ready(1, 3)))
    assert looked.requeue_after == 20 and looked.state == state


def test_no_measurement_is_due_outside_an_analysis_step() -> None:
    plan, state = analysing()
    paused = replace(state, phase=Phase.PAUSED, pause_reason=PauseReason.NO_DATA)
    weighing = replace(state, step=0)

    assert canary.due_measurement(plan, paused, at(100), CONTEXT) is None
    assert canary.due_measurement(plan, weighing, at(100), CONTEXT) is None
    assert canary.due_measurement(plan, replace(state, step=3), at(100), CONTEXT) is None


def test_a_successful_analysis_passes_its_step() -> None:
    plan, state = analysing()

    decision = measure(plan, state, 40, Values((0.01,)))

    assert decision.state.step == 2 and decision.state.phase is Phase.PAUSED
    assert reasons(decision) == ["AnalysisMeasured", "CanaryStep", "CanaryPaused"]
    assert decision.events[0].message == "step 2/3: Successful: 0.01: result < 0.05"
    assert not decision.events[0].warning


def test_a_failed_measurement_aborts_with_the_measured_value() -> None:
    plan, state = analysing()

    decision = measure(plan, state, 40, Values((0.5,)))

    assert decision.state.phase is Phase.ABORTED
    assert (decision.stable, decision.canary) == (Track(OLD, REPLICAS), Track(NEW, 0))
    assert decision.ending is not None
    assert (decision.ending.outcome, decision.ending.reason, decision.ending.value) == (
        Outcome.ABORTED,
        "AnalysisFailed",
        "0.5",
    )
    assert "result < 0.05 does not hold" in decision.ending.message
    assert decision.state.analysis is not None and decision.state.analysis.failed == 1
    assert reasons(decision) == ["AnalysisMeasured", "AbortCanary"]
    assert decision.events[0].verdict is Verdict.FAILED  # testapp_analysis_total{result}


def test_failures_up_to_the_limit_are_tolerated_then_one_more_aborts() -> None:
    plan, state = analysing(count=4, failureLimit=1)
    first = measure(plan, state, 40, Values((0.5,)))
    second = measure(plan, first.state, 70, Values((0.01,)))

    third = measure(plan, second.state, 100, Values((0.9,)))

    assert first.state.phase is Phase.PROGRESSING and first.requeue_after == 30
    assert second.state.phase is Phase.PROGRESSING
    assert third.state.phase is Phase.ABORTED
    assert third.ending is not None and third.ending.value == "0.9"


def test_count_measurements_with_a_verdict_pass_the_step() -> None:
    plan, state = analysing(count=3, failureLimit=1)
    for seconds, value in ((40, 0.01), (70, 0.2), (100, 0.02)):
        decision = measure(plan, state, seconds, Values((value,)))
        state = decision.state

    assert state.step == 2
    assert reasons(decision)[:2] == ["AnalysisMeasured", "CanaryStep"]


def test_a_measurement_taken_early_or_for_another_step_or_revision_is_ignored() -> None:
    plan, state = analysing()
    early = measure(plan, state, 39, Values((0.9,)))
    other_step = canary.advance(
        plan, REPLICAS, state, observe(40, ready(1, 3), outcome=Values((0.9,)), step=0)
    )
    other_revision = canary.advance(
        plan,
        REPLICAS,
        state,
        Observation(at(40), ready(1, 3), Measurement(NEW + 1, 1, Values((0.9,)))),
    )

    for decision in (early, other_step, other_revision):
        assert decision.state.phase is Phase.PROGRESSING
        assert decision.state.analysis == state.analysis


def test_errors_are_retried_up_to_the_consecutive_limit_then_abort() -> None:
    plan, state = analysing(consecutiveErrorLimit=2)
    error = QueryFailed("HTTP 503: unavailable")
    decisions = []
    for index in range(3):
        decision = measure(plan, state, 40 + 30 * index, error)
        decisions.append(decision)
        state = decision.state

    assert [d.state.phase for d in decisions] == [Phase.PROGRESSING] * 2 + [Phase.ABORTED]
    assert decisions[0].requeue_after == 30
    assert decisions[2].ending is not None and decisions[2].ending.reason == "AnalysisError"
    assert "HTTP 503: unavailable" in decisions[2].ending.message


def test_a_verdict_between_errors_resets_the_consecutive_count() -> None:
    plan, state = analysing(count=3, consecutiveErrorLimit=1)
    error = QueryFailed("timeout")
    for seconds, outcome in ((40, error), (70, Values((0.01,))), (100, error)):
        state = measure(plan, state, seconds, outcome).state

    assert state.phase is Phase.PROGRESSING
    assert state.analysis is not None
    assert (state.analysis.errors, state.analysis.consecutive_errors) == (2, 1)


def test_a_consecutive_error_limit_of_zero_aborts_at_the_first_error() -> None:
    plan, state = analysing(consecutiveErrorLimit=0)

    assert measure(plan, state, 40, QueryFailed("x")).state.phase is Phase.ABORTED


def test_no_data_pauses_by_default_with_an_event_saying_so() -> None:
    plan, state = analysing()

    decision = measure(plan, state, 40, NoData("the query matched no series"))

    assert decision.state.phase is Phase.PAUSED
    assert decision.state.pause_reason is PauseReason.NO_DATA
    assert "no data: the query matched no series" in decision.state.message
    assert reasons(decision) == ["AnalysisMeasured", "CanaryPaused"]
    assert all(event.warning for event in decision.events)
    assert canary.due_measurement(plan, decision.state, at(1000), CONTEXT) is None


def test_a_pause_for_no_data_waits_for_a_human_then_promote_step_goes_on() -> None:
    plan, state = analysing()
    paused = measure(plan, state, 40, NoData("none")).state

    later = canary.advance(plan, REPLICAS, paused, observe(500, ready(1, 3)))
    promoted = canary.advance(
        plan, REPLICAS, paused, observe(500, ready(1, 3), command=Command(NEW, promote_step=1))
    )
    aborted = canary.advance(
        plan, REPLICAS, paused, observe(500, ready(1, 3), command=Command(NEW, abort=True))
    )

    assert later.state == paused and later.events == ()
    assert promoted.state.step == 2
    assert aborted.state.phase is Phase.ABORTED


def test_no_data_fails_or_passes_when_the_step_says_so() -> None:
    plan, failing = analysing(onNoData="fail")
    plan_passing, passing = analysing(onNoData="pass")

    failed = measure(plan, failing, 40, NoData("none"))
    passed = measure(plan_passing, passing, 40, NoData("none"))

    assert failed.state.phase is Phase.ABORTED
    assert failed.ending is not None and "onNoData: fail" in failed.ending.message
    assert passed.state.step == 2


def test_every_value_nan_is_no_data_not_a_failure() -> None:
    plan, state = analysing()

    decision = measure(plan, state, 40, Values((math.nan,)))

    assert decision.state.pause_reason is PauseReason.NO_DATA
    assert "every value is NaN" in decision.state.message


def test_neither_condition_holding_is_inconclusive_and_pauses() -> None:
    plan, state = analysing(successCondition="result < 0.01", failureCondition="result > 0.1")

    decision = measure(plan, state, 40, Values((0.05,)))

    assert decision.state.phase is Phase.PAUSED
    assert decision.state.pause_reason is PauseReason.INCONCLUSIVE
    assert decision.state.analysis is not None and decision.state.analysis.inconclusive == 1


def test_a_condition_that_cannot_be_evaluated_is_an_error_not_a_verdict() -> None:
    plan, state = analysing(successCondition="result[1] < 0.05")

    decision = measure(plan, state, 40, Values((0.01,)))

    assert decision.state.analysis is not None
    assert decision.state.analysis.last_verdict is Verdict.ERROR
    assert "result[1]: the query gave 1 value(s)" in decision.state.analysis.last_message
    assert decision.state.phase is Phase.PROGRESSING


@pytest.mark.parametrize(
    ("success", "failure", "value", "verdict"),
    [
        ("result < 0.05", None, 0.01, Verdict.SUCCESSFUL),
        ("result < 0.05", None, 0.5, Verdict.FAILED),
        (None, "result > 0.1", 0.5, Verdict.FAILED),
        (None, "result > 0.1", 0.01, Verdict.SUCCESSFUL),
        ("result < 0.05", "result > 0.1", 0.01, Verdict.SUCCESSFUL),
        ("result < 0.05", "result > 0.1", 0.5, Verdict.FAILED),
        ("result < 0.05", "result > 0.1", 0.07, Verdict.INCONCLUSIVE),
        # A failure condition wins when both hold.
        ("result < 1", "result > 0.1", 0.5, Verdict.FAILED),
    ],
)
def test_the_verdict_rules(
    success: str | None, failure: str | None, value: float, verdict: Verdict
) -> None:
    fields: dict[str, Any] = {"query": QUERY}
    if success is not None:
        fields["successCondition"] = success
    if failure is not None:
        fields["failureCondition"] = failure
    step = strategy({"analysis": fields}).steps[0]
    assert isinstance(step, Analysis)

    assert canary.judge(step, Values((value,))).verdict is verdict


# --- restarts and two operators -----------------------------------------------------------------


def status_round_trip(state: CanaryState, plan: Canary) -> CanaryState:
    return CanaryState.from_status(state.to_status(len(plan.steps)))


def journey() -> list[tuple[Canary, CanaryState, Observation]]:
    """Every kind of state a canary passes through, each with the observation that moves it."""
    plan = strategy(
        {"setWeight": 25},
        {"pause": {"duration": "60s"}},
        {"analysis": {"query": QUERY, "successCondition": "result < 0.05", "count": 2}},
        {"pause": {}},
        {"setWeight": 100},
    )
    looks = [
        observe(0.4, ready(0, 4)),
        observe(10.9, ready(1, 3)),
        observe(50, ready(1, 3)),
        observe(71, ready(1, 3)),
        observe(101, ready(1, 3), outcome=Values((0.01,)), step=2),
        observe(131, ready(1, 3), outcome=QueryFailed("timeout"), step=2),
        observe(161, ready(1, 3), outcome=Values((0.02,)), step=2),
        observe(200, ready(1, 3)),
        observe(300, ready(1, 3), command=Command(NEW, promote_step=3)),
        observe(310, ready(4, 0)),
        observe(320, ready(4, 0, promoted=4)),
    ]
    steps = []
    state = begin()
    for look in looks:
        steps.append((plan, state, look))
        state = canary.advance(plan, REPLICAS, state, look).state
    assert state.phase is Phase.PROMOTED, state
    return steps


def test_a_restarted_operator_resumes_every_state_from_status() -> None:
    for plan, state, look in journey():
        resumed = status_round_trip(state, plan)

        assert resumed == state
        assert canary.advance(plan, REPLICAS, resumed, look) == canary.advance(
            plan, REPLICAS, state, look
        )


def test_a_restart_in_the_middle_of_a_timed_pause_keeps_its_deadline() -> None:
    plan = strategy({"pause": {"duration": "5m"}}, {"pause": {}})
    pausing = canary.advance(plan, REPLICAS, begin(), observe(10)).state

    resumed = status_round_trip(pausing, plan)
    decision = canary.advance(plan, REPLICAS, resumed, observe(200))

    assert decision.state.step == 0 and decision.requeue_after == 100


def test_a_restart_in_the_middle_of_an_analysis_keeps_its_counts_and_next_measurement() -> None:
    plan, state = analysing(count=3, failureLimit=1)
    state = measure(plan, state, 40, Values((0.5,))).state

    resumed = status_round_trip(state, plan)

    assert resumed.analysis == state.analysis
    assert canary.due_measurement(plan, resumed, at(69), CONTEXT) is None
    assert canary.due_measurement(plan, resumed, at(70), CONTEXT) is not None
    assert measure(plan, resumed, 70, Values((0.7,))).state.phase is Phase.ABORTED


def test_two_operators_seeing_the_same_status_decide_the_same_thing() -> None:
    for plan, state, look in journey():
        status = state.to_status(len(plan.steps))
        first = canary.advance(plan, REPLICAS, CanaryState.from_status(dict(status)), look)
        second = canary.advance(plan, REPLICAS, CanaryState.from_status(dict(status)), look)

        assert first == second
        assert first.state.to_status(len(plan.steps)) == second.state.to_status(len(plan.steps))


def test_the_status_holds_what_status_wide_shows() -> None:
    plan, state = analysing()
    state = measure(plan, state, 40, NoData("none")).state

    status = state.to_status(len(plan.steps))

    assert {key: status[key] for key in ("revision", "stableRevision", "step", "steps")} == {
        "revision": NEW,
        "stableRevision": OLD,
        "step": 1,
        "steps": 3,
    }
    assert (status["phase"], status["pauseReason"], status["weight"]) == ("Paused", "NoData", 25)
    assert status["analysis"]["lastResult"] == "NoData"
    assert status["analysis"]["lastMeasuredAt"] == "2026-12-03T12:00:40Z"
    assert status["analysis"]["nextMeasurementAt"] == "2026-12-03T12:01:10Z"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"revision": 0}, "status.canary.revision", "integer >= 1"),
        ({"phase": "Done"}, "status.canary.phase", "Progressing, Paused, Promoting"),
        ({"weight": 101}, "status.canary.weight", "0-100"),
        ({"stepStartedAt": "yesterday"}, "status.canary.stepStartedAt", "RFC 3339"),
        ({"stepStartedAt": "2026-12-03T12:00:00"}, "status.canary.stepStartedAt", "RFC 3339"),
        ({"pauseReason": "Bored"}, "status.canary.pauseReason", "PauseStep, NoData"),
        ({"analysis": {"nextMeasurementAt": 5}}, "status.canary.analysis.nextMeasurementAt", ""),
        ({"analysis": []}, "status.canary.analysis", "must be an object"),
    ],
)
def test_a_damaged_status_is_refused_naming_the_field(
    change: dict[str, Any], field: str, message: str
) -> None:
    status = {**begin().to_status(3), **change}

    with pytest.raises(StrategyError) as raised:
        CanaryState.from_status(status)

    assert raised.value.field == field
    assert message in raised.value.message


# --- conditions ---------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("result < 0.05", [0.01], True),
        ("result < 0.05", [0.05], False),
        ("result <= 0.05", [0.05], True),
        ("result > 1e-3", [0.01], True),
        ("result >= .5", [0.5], True),
        ("result == 1", [1.0], True),
        ("result != 1", [1.0], False),
        ("result[0] >= 0.99 && result[0] < 1", [0.995], True),
        ("result[0] >= 0.99 && result[0] < 1", [1.0], False),
        ("result[0] >= 0.99 and result[0] < 1", [0.995], True),
        ("result[1] > result[0]", [1.0, 2.0], True),
        ("len(result) == 2", [1.0, 2.0], True),
        ("len(result) == 0 || result[0] < 1", [], True),  # short-circuit: no index error
        ("len(result) > 0 && result[0] < 1", [], False),
        ("!(result > 1)", [0.5], True),
        ("not result > 1", [0.5], True),
        ("not not result > 1", [0.5], False),
        ("result > 1 or result < 0", [-1.0], True),
        ("result > 1 || result < 0 && result > 5", [2.0], True),  # && binds tighter
        ("(result > 1 || result < 0) && result > 5", [2.0], False),
        ("result < -0.5", [-1.0], True),
        ("-result > 0", [-1.0], True),
        ("result < 0.05", [NAN], False),  # NaN compares false...
        ("result != 0.05", [NAN], True),  # ...except !=
        ("isNaN(result)", [NAN], True),
        ("isNaN(result[0]) || result[0] < 0.05", [0.01], True),
        ("result > 1000", [INF], True),
        ("result < 0", [-INF], True),
    ],
)
def test_conditions_evaluate_like_their_text_reads(
    text: str, values: list[float], expected: bool
) -> None:
    assert canary.parse_condition(text).evaluate(values) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("result <", "found the end at column 9"),
        ("result = 1", "unexpected '=' at column 8 (compare with ==)"),
        ("result < 1 &", "unexpected '&' at column 12"),
        ("0 < result < 1", "comparisons do not chain"),
        ("result[x] > 1", "expected an index"),
        ("result[0.5] > 1", "expected an index"),
        ("result[0 > 1", "expected ']'"),
        ("len(x) > 1", "expected 'result'"),
        ("(result > 1", "expected ')', found the end"),
        ("result > 1)", "expected && or || or the end, found ')'"),
        ("__import__(1)", "unknown name '__import__'"),
        ("result.real > 1", "unexpected '.' at column 7"),
        ("result > 1; 1", "unexpected ';'"),
        ("result > 'a'", 'unexpected "\'"'),
        ("> 1", "expected a number"),
    ],
)
def test_a_condition_that_is_not_one_says_where(text: str, message: str) -> None:
    with pytest.raises(canary.ConditionError) as raised:
        canary.parse_condition(text)

    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("result < 1", [1.0, 2.0], "result holds 2 values, not one"),
        ("result < 1", [], "result holds 0 values"),
        ("result[2] < 1", [1.0], "result[2]: the query gave 1 value(s)"),
        ("result", [1.0], "gives a number, not true/false"),
        ("len(result)", [1.0], "gives a number"),
        ("result && result > 1", [1.0], "needs true/false on each side"),
        ("!result", [1.0], "not needs true/false"),
        ("(result > 1) < 2", [1.0], "< needs a number, not true/false"),
        ("isNaN((result > 1))", [1.0], "isNaN needs a number"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_says_why(
    text: str, values: list[float], message: str
) -> None:
    condition = canary.parse_condition(text)

    with pytest.raises(canary.EvaluationError) as raised:
        condition.evaluate(values)

    assert message in str(raised.value)


# --- queries --------------------------------------------------------------------------------------


def test_a_query_template_is_filled_in_for_the_canary() -> None:
    template = (
        'sum(rate(http_requests_total{namespace="{{ namespace }}",release="{{release}}",'
        'track="{{track}}",revision="{{revision}}",status=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{namespace="{{namespace}}",track="{{track}}"}[1m]))'
    )

    query = canary.render_query(template, QueryContext("test-app-prd", "test-app-prd", 12))

    assert query == (
        'sum(rate(http_requests_total{namespace="test-app-prd",release="test-app-prd",'
        'track="canary",revision="12",status=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{namespace="test-app-prd",track="canary"}[1m]))'
    )
    promql_parser.parse(query)


def test_values_are_escaped_for_a_promql_string() -> None:
    hostile = 'x"} or vector(1) or {a="\\'
    query = canary.render_query(
        'up{namespace="{{namespace}}"}', QueryContext("r", hostile, 1, track="canary")
    )

    assert query == 'up{namespace="x\\"} or vector(1) or {a=\\"\\\\"}'
    parsed = promql_parser.parse(query)
    assert isinstance(parsed, promql_parser.VectorSelector)
    assert str(parsed.matchers.matchers[0].value) == hostile


# --- Prometheus's answers -------------------------------------------------------------------------


def answer(result_type: str, result: Any) -> str:
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (answer("vector", [{"metric": {}, "value": [1.7e9, "0.25"]}]), Values((0.25,))),
        (
            answer(
                "vector",
                [
                    {"metric": {"track": "canary"}, "value": [1.7e9, "1"]},
                    {"metric": {"track": "stable"}, "value": [1.7e9, "2e-3"]},
                ],
            ),
            Values((1.0, 0.002)),
        ),
        (answer("scalar", [1.7e9, "42"]), Values((42.0,))),
        (answer("vector", []), NoData("the query matched no series")),
    ],
)
def test_an_answer_gives_its_values_or_no_data(body: str, expected: canary.QueryOutcome) -> None:
    assert canary.parse_query_response(200, body) == expected


def test_nan_and_infinities_survive_the_answer() -> None:
    body = answer(
        "vector",
        [{"metric": {}, "value": [1, value]} for value in ("NaN", "+Inf", "-Inf")],
    )

    outcome = canary.parse_query_response(200, body.encode())

    assert isinstance(outcome, Values)
    assert math.isnan(outcome.values[0]) and outcome.values[1:] == (math.inf, -math.inf)
    assert canary.format_values(outcome.values) == "[NaN, +Inf, -Inf]"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            '{"status":"error","errorType":"bad_data","error":"parse error at char 5"}',
            "HTTP 400: bad_data: parse error at char 5",
        ),
        (
            503,
            '{"status":"error","errorType":"unavailable","error":"not ready"}',
            "HTTP 503: unavailable: not ready",
        ),
        (502, "<html>Bad Gateway</html>", "HTTP 502: not JSON: <html>Bad Gateway</html>"),
        (200, "[1, 2]", "not a Prometheus answer"),
        (200, '{"status":"success"}', "the answer has no data"),
        (200, answer("matrix", []), "gives a matrix, not an instant vector or a scalar"),
        (200, answer("string", [1, "x"]), "gives a string"),
        (200, answer("vector", [{"metric": {}}]), "a malformed vector result"),
        (200, answer("vector", [{"metric": {}, "value": [1, "lots"]}]), "a malformed vector"),
        (200, answer("vector", {"a": 1}), "a malformed vector"),
        (200, answer("scalar", [1, 2]), "a malformed scalar result"),
    ],
)
def test_a_failed_or_strange_answer_is_an_error_saying_why(
    status: int, body: str, message: str
) -> None:
    outcome = canary.parse_query_response(status, body)

    assert isinstance(outcome, QueryFailed)
    assert message in outcome.message


@pytest.mark.parametrize(
    ("values", "text"),
    [((0.0123456789,), "0.0123457"), ((1.0,), "1"), ((1e-9,), "1e-09"), ((1.0, 2.5), "[1, 2.5]")],
)
def test_values_read_short_in_status_and_events(values: tuple[float, ...], text: str) -> None:
    assert canary.format_values(values) == text
