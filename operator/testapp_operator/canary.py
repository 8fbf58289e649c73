"""The canary: its strategy, its step machine, its replica split and its analysis (pure: no I/O).

Public interface (the design and the contract: docs/canary.md):
- `parse_strategy(data, where="spec.strategy") -> Canary | None`: `spec.strategy` as frozen
  values; None (absent, or no `canary`) is today's rolling update. `StrategyError` names the
  field, e.g. `spec.strategy.canary.steps[2].setWeight: must be an integer 0-100, not 120`.
- Steps: `SetWeight(weight)`, `Pause(seconds or None)`, `Analysis(query, success, failure,
  interval, count, failure_limit, consecutive_error_limit, on_no_data)`.
- `split(weight, replicas) -> (canary, stable)`: the replicas of each track for a weight.
- `start(canary_revision, stable_revision, now) -> CanaryState`, then
  `advance(strategy, replicas, state, observation) -> Decision` (state in, observation in: next
  state, the replicas and template of each Deployment, events, the outcome, when to look again),
  and `due_measurement(strategy, state, now, context) -> MeasurementRequest | None` (the query to
  run, when the current step is an analysis whose next measurement is due).
- `CanaryState.to_status()` / `CanaryState.from_status(data)`: `status.canary`, so a restarted
  operator (or a second one) resumes the same step.
- `parse_condition(text) -> Condition`, `Condition.evaluate(values) -> bool`: successCondition and
  failureCondition, a tiny expression language (a tokenizer and a recursive-descent parser; no
  Python eval).
- `render_query(template, context) -> str`: {{release}}, {{namespace}}, {{track}}, {{revision}}
  filled in, escaped for a PromQL string literal.
- `parse_query_response(http_status, body) -> Values | NoData | QueryFailed`: the answer of
  Prometheus's /api/v1/query.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from testapp_operator.conditions import timestamp

STABLE, CANARY = "stable", "canary"
# The labels every Pod of a canaried release carries (the Prometheus scrape config keeps them).
TRACK_LABEL = "testapp.dev/track"
REVISION_LABEL = "testapp.dev/revision"
MAX_STEPS = 32
DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
DURATION_MAX = 24 * 3600
DEFAULT_INTERVAL = 30
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
PLACEHOLDERS = ("release", "namespace", "track", "revision")


class StrategyError(ValueError):
    """A field of the strategy (or of status.canary) holds a value the operator cannot use."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- conditions: successCondition / failureCondition ---------------------------------------------
#
#   expr       := or
#   or         := and (("||" | "or") and)*
#   and        := not (("&&" | "and") not)*
#   not        := ("!" | "not") not | comparison
#   comparison := operand (("<" | "<=" | ">" | ">=" | "==" | "!=") operand)?
#   operand    := "-" operand | NUMBER | "result" ("[" INTEGER "]")? | "len" "(" "result" ")"
#               | "isNaN" "(" operand ")" | "(" expr ")"
#
# `result` is the query's values. Compared as a number it must hold exactly one value; with
# several, index it or ask len(result). A comparison with NaN is false (and != true), as in IEEE
# 754 and PromQL; isNaN() says whether a value is NaN.


class ConditionError(ValueError):
    """The text is not a condition; the message says where."""


class EvaluationError(ValueError):
    """The condition cannot be evaluated on these values (an index out of range, a type)."""


TOKEN_RE = re.compile(
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op><=|>=|==|!=|&&|\|\||[<>!()\[\]-])"
)
COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
KEYWORDS = {"and": "&&", "or": "||", "not": "!"}


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, op, end
    text: str
    column: int  # 1-based, for the error message


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            break
        match = TOKEN_RE.match(text, position)
        if match is None:
            hint = " (compare with ==)" if text[position] == "=" else ""
            raise ConditionError(f"unexpected {text[position]!r} at column {position + 1}{hint}")
        kind, value = match.lastgroup, match.group()
        assert kind is not None
        if kind == "name" and value in KEYWORDS:
            kind, value = "op", KEYWORDS[value]
        tokens.append(Token(kind, value, position + 1))
        position = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Result:
    index: int | None = None  # result[index], or the whole result


@dataclass(frozen=True)
class Length:
    pass


@dataclass(frozen=True)
class IsNaN:
    operand: Node


@dataclass(frozen=True)
class Negate:
    operand: Node


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Logical:
    op: str  # && or ||
    left: Node
    right: Node


Node = Number | Result | Length | IsNaN | Negate | Compare | Not | Logical


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.position = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.position]

    def take(self) -> Token:
        token = self.current
        self.position += 1
        return token

    def expect(self, text: str) -> None:
        if self.current.text != text or self.current.kind == "number":
            self.fail(f"expected {text!r}")
        self.take()

    def fail(self, expected: str) -> NoReturn:
        token = self.current
        found = "the end" if token.kind == "end" else repr(token.text)
        raise ConditionError(f"{expected}, found {found} at column {token.column}")

    def parse(self) -> Node:
        node = self.logical("||", self.conjunction)
        if self.current.kind != "end":
            self.fail("expected && or || or the end")
        return node

    def conjunction(self) -> Node:
        return self.logical("&&", self.negation)

    def logical(self, op: str, operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.current.kind == "op" and self.current.text == op:
            self.take()
            node = Logical(op, node, operand())
        return node

    def negation(self) -> Node:
        if self.current.kind == "op" and self.current.text == "!":
            self.take()
            return Not(self.negation())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        if self.current.kind == "op" and self.current.text in COMPARISONS:
            op = self.take().text
            node = Compare(op, left, self.operand())
            if self.current.kind == "op" and self.current.text in COMPARISONS:
                self.fail("comparisons do not chain: join them with &&")
            return node
        return left

    def operand(self) -> Node:
        token = self.current
        if token.kind == "number":
            self.take()
            return Number(float(token.text))
        if token.kind == "op" and token.text == "-":
            self.take()
            return Negate(self.operand())
        if token.kind == "op" and token.text == "(":
            self.take()
            node = self.logical("||", self.conjunction)
            self.expect(")")
            return node
        if token.kind == "name" and token.text == "result":
            self.take()
            if self.current.text != "[":
                return Result()
            self.take()
            index = self.current
            if index.kind != "number" or not index.text.isdigit():
                self.fail("expected an index (0, 1, ...)")
            self.take()
            self.expect("]")
            return Result(int(index.text))
        if token.kind == "name" and token.text == "len":
            self.take()
            self.expect("(")
            self.expect("result")
            self.expect(")")
            return Length()
        if token.kind == "name" and token.text == "isNaN":
            self.take()
            self.expect("(")
            node = IsNaN(self.operand())
            self.expect(")")
            return node
        if token.kind == "name":
            raise ConditionError(
                f"unknown name {token.text!r} at column {token.column}: "
                "use result, result[i], len(result), isNaN(...), numbers, and, or, not"
            )
        self.fail("expected a number, result, len(result), isNaN(...) or '('")


Value = float | tuple[float, ...] | bool


def _evaluate(node: Node, values: tuple[float, ...]) -> Value:
    match node:
        case Number(value):
            return value
        case Result(None):
            return values
        case Result(index):
            assert index is not None
            if index >= len(values):
                raise EvaluationError(f"result[{index}]: the query gave {len(values)} value(s)")
            return values[index]
        case Length():
            return float(len(values))
        case IsNaN(operand):
            return math.isnan(_number(_evaluate(operand, values), "isNaN"))
        case Negate(operand):
            return -_number(_evaluate(operand, values), "-")
        case Compare(op, left, right):
            a = _number(_evaluate(left, values), op)
            b = _number(_evaluate(right, values), op)
            return COMPARISONS[op](a, b)
        case Not(operand):
            return not _boolean(_evaluate(operand, values), "not")
        case Logical(op, left, right):
            first = _boolean(_evaluate(left, values), op)
            # Short-circuit, so `len(result) > 0 && result[0] < 1` is safe on no values.
            if first is (op == "||"):
                return first
            return _boolean(_evaluate(right, values), op)
    raise AssertionError(node)


def _number(value: Value, op: str) -> float:
    if isinstance(value, bool):
        raise EvaluationError(f"{op} needs a number, not true/false")
    if isinstance(value, tuple):
        if len(value) != 1:
            raise EvaluationError(
                f"{op}: result holds {len(value)} values, not one: use result[i] or len(result)"
            )
        return value[0]
    return value


def _boolean(value: Value, op: str) -> bool:
    if not isinstance(value, bool):
        raise EvaluationError(f"{op} needs true/false on each side (a comparison), not a number")
    return value


@dataclass(frozen=True)
class Condition:
    """A parsed successCondition or failureCondition; equal when the text is."""

    text: str
    tree: Node = field(compare=False, repr=False)

    def evaluate(self, values: Sequence[float]) -> bool:
        """True or false on the query's values; EvaluationError when it cannot say."""
        verdict = _evaluate(self.tree, tuple(values))
        if not isinstance(verdict, bool):
            raise EvaluationError(f"{self.text!r} gives a number, not true/false: compare it")
        return verdict


def parse_condition(text: str) -> Condition:
    if not text.strip():
        raise ConditionError("empty")
    return Condition(text, _Parser(text).parse())


# --- the strategy (spec.strategy) ---------------------------------------------------------------


class OnNoData(enum.Enum):
    PAUSE = "pause"  # wait for a human: promote-step or abort
    FAIL = "fail"  # a failed measurement
    PASS = "pass"  # a successful measurement


@dataclass(frozen=True)
class SetWeight:
    weight: int  # percent of the replicas that run the canary


@dataclass(frozen=True)
class Pause:
    seconds: int | None  # None: until promote-step or abort


@dataclass(frozen=True)
class Analysis:
    query: str  # PromQL with {{release}}, {{namespace}}, {{track}}, {{revision}}
    success: Condition | None
    failure: Condition | None
    interval: int = DEFAULT_INTERVAL  # seconds between measurements (and before the first)
    count: int = 1  # measurements with a verdict (successful or failed) the step needs
    failure_limit: int = 0  # failed measurements tolerated; one more aborts
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT  # errors in a row tolerated
    on_no_data: OnNoData = OnNoData.PAUSE


Step = SetWeight | Pause | Analysis


@dataclass(frozen=True)
class Canary:
    steps: tuple[Step, ...]


def parse_strategy(data: Any, where: str = "spec.strategy") -> Canary | None:
    """`spec.strategy`; None is the rolling update (absent, null or without `canary`)."""
    if data is None:
        return None
    strategy = _mapping(data, where)
    _only(strategy, ("canary",), where)
    if strategy.get("canary") is None:
        return None
    canary = _mapping(strategy["canary"], f"{where}.canary")
    _only(canary, ("steps",), f"{where}.canary")
    where = f"{where}.canary.steps"
    steps = canary.get("steps")
    if not isinstance(steps, list) or not steps:
        raise StrategyError(where, "must be a non-empty list of steps")
    if len(steps) > MAX_STEPS:
        raise StrategyError(where, f"at most {MAX_STEPS} steps, not {len(steps)}")
    return Canary(tuple(_step(step, f"{where}[{index}]") for index, step in enumerate(steps)))


def _step(data: Any, where: str) -> Step:
    step = _mapping(data, where)
    kinds = [kind for kind in ("setWeight", "pause", "analysis") if kind in step]
    unknown = sorted(set(step) - {"setWeight", "pause", "analysis"})
    if unknown:
        raise StrategyError(where, f"unknown field(s) {', '.join(unknown)}")
    if len(kinds) != 1:
        raise StrategyError(
            where, f"must have exactly one of setWeight, pause, analysis, not {kinds or 'none'}"
        )
    kind = kinds[0]
    where = f"{where}.{kind}"
    if kind == "setWeight":
        return SetWeight(_integer(step[kind], where, 0, 100))
    if kind == "pause":
        pause = _mapping(step[kind] if step[kind] is not None else {}, where)
        _only(pause, ("duration",), where)
        if pause.get("duration") is None:
            return Pause(None)
        return Pause(_duration(pause["duration"], f"{where}.duration"))
    return _analysis(_mapping(step[kind], where), where)


ANALYSIS_FIELDS = (
    "query",
    "successCondition",
    "failureCondition",
    "interval",
    "count",
    "failureLimit",
    "consecutiveErrorLimit",
    "onNoData",
)


def _analysis(data: Mapping[str, Any], where: str) -> Analysis:
    _only(data, ANALYSIS_FIELDS, where)
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise StrategyError(f"{where}.query", f"must be a non-empty PromQL query, not {query!r}")
    for name in PLACEHOLDER_RE.findall(query):
        if name not in PLACEHOLDERS:
            raise StrategyError(
                f"{where}.query",
                f"unknown placeholder {{{{{name}}}}}: use {', '.join(PLACEHOLDERS)}",
            )
    success = _condition(data.get("successCondition"), f"{where}.successCondition")
    failure = _condition(data.get("failureCondition"), f"{where}.failureCondition")
    if success is None and failure is None:
        raise StrategyError(where, "needs a successCondition, a failureCondition or both")
    on_no_data = data.get("onNoData", OnNoData.PAUSE.value)
    if on_no_data not in {choice.value for choice in OnNoData}:
        raise StrategyError(
            f"{where}.onNoData", f"must be one of pause, fail, pass, not {on_no_data!r}"
        )
    return Analysis(
        query=query,
        success=success,
        failure=failure,
        interval=_duration(data.get("interval", f"{DEFAULT_INTERVAL}s"), f"{where}.interval"),
        count=_integer(data.get("count", 1), f"{where}.count", 1, 100),
        failure_limit=_integer(data.get("failureLimit", 0), f"{where}.failureLimit", 0, 100),
        consecutive_error_limit=_integer(
            data.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT),
            f"{where}.consecutiveErrorLimit",
            0,
            100,
        ),
        on_no_data=OnNoData(on_no_data),
    )


def _condition(data: Any, where: str) -> Condition | None:
    if data is None:
        return None
    if not isinstance(data, str):
        raise StrategyError(where, f"must be a string, not {type(data).__name__}")
    try:
        return parse_condition(data)
    except ConditionError as error:
        raise StrategyError(where, str(error)) from None


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise StrategyError(where, f"must be an object, not {type(data).__name__}")
    return data


def _only(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise StrategyError(
            where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


def _integer(data: Any, where: str, low: int, high: int) -> int:
    if isinstance(data, bool) or not isinstance(data, int) or not low <= data <= high:
        raise StrategyError(where, f"must be an integer {low}-{high}, not {data!r}")
    return data


def _duration(data: Any, where: str) -> int:
    """Seconds, from `90`, `90s`, `5m`, `1h30m`: 1 s to 24 h."""
    seconds: int | None = None
    if isinstance(data, int) and not isinstance(data, bool):
        seconds = data
    elif isinstance(data, str) and data and (match := DURATION_RE.fullmatch(data)):
        hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds is None or not 1 <= seconds <= DURATION_MAX:
        raise StrategyError(
            where, f"must be a duration 1s-24h such as 30s, 5m or 1h30m, not {data!r}"
        )
    return seconds


# --- the replica split ------------------------------------------------------------------------


def split(weight: int, replicas: int) -> tuple[int, int]:
    """(canary, stable) replicas for `weight` percent of `replicas`.

    The canary gets weight * replicas rounded half up, at least 1 while the weight is above 0,
    at most all; the stable track the rest, but never 0 while the weight is below 100: the
    canary may only take everything when asked to. So the total is `replicas`, or one more
    when a small release would otherwise hand all of its traffic to the canary.
    """
    if replicas <= 0:
        return 0, 0
    canary = (weight * replicas * 2 + 100) // 200  # half up, in integers
    if weight > 0:
        canary = max(canary, 1)
    canary = min(canary, replicas)
    stable = replicas - canary
    if weight < 100 and stable == 0:
        stable = 1
    return canary, stable


# --- the query and Prometheus's answer --------------------------------------------------------


@dataclass(frozen=True)
class QueryContext:
    release: str  # the TestAppRelease's name
    namespace: str  # where its Pods run
    revision: int  # the canary's revision
    track: str = CANARY


def promql_string(value: str) -> str:
    """`value` escaped for the inside of a double-quoted PromQL string (a label matcher)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def render_query(template: str, context: QueryContext) -> str:
    values = {
        "release": context.release,
        "namespace": context.namespace,
        "track": context.track,
        "revision": str(context.revision),
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise StrategyError("query", f"unknown placeholder {{{{{name}}}}}")
        return promql_string(values[name])

    return PLACEHOLDER_RE.sub(fill, template)


@dataclass(frozen=True)
class Values:
    values: tuple[float, ...]


@dataclass(frozen=True)
class NoData:
    reason: str


@dataclass(frozen=True)
class QueryFailed:
    message: str


QueryOutcome = Values | NoData | QueryFailed


def parse_query_response(http_status: int, body: str | bytes) -> QueryOutcome:
    """Prometheus's answer to GET /api/v1/query: its values, no data, or why it failed.

    A vector gives its samples' values in the order Prometheus sent them (aggregate, or sort(),
    when the order matters), a scalar its one value; an empty vector is no data. A range vector
    or a string is an error: the analysis compares numbers at one instant.
    """
    try:
        document = json.loads(body)
    except ValueError:
        return QueryFailed(f"HTTP {http_status}: not JSON: {_excerpt(body)}")
    if not isinstance(document, dict):
        return QueryFailed(f"HTTP {http_status}: not a Prometheus answer: {_excerpt(body)}")
    if document.get("status") != "success":
        kind = document.get("errorType", "error")
        return QueryFailed(f"HTTP {http_status}: {kind}: {document.get('error', '?')}")
    data = document.get("data")
    if not isinstance(data, dict):
        return QueryFailed("the answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "vector":
            if not isinstance(result, list):
                raise TypeError
            if not result:
                return NoData("the query matched no series")
            return Values(tuple(_sample_value(sample["value"]) for sample in result))
        if kind == "scalar":
            return Values((_sample_value(result),))
    except (TypeError, KeyError, IndexError, ValueError):
        return QueryFailed(f"a malformed {kind} result: {_excerpt(json.dumps(result))}")
    return QueryFailed(f"the query gives a {kind}, not an instant vector or a scalar")


def _sample_value(pair: Any) -> float:
    # [unix time, "value"]; the value is a string so that NaN and ±Inf survive JSON.
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise ValueError(pair)
    return float(pair[1])


def _excerpt(body: str | bytes) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    return text[:200]


def format_values(values: Sequence[float]) -> str:
    """How a measurement's values read in status, events and the deployment log."""

    def one(value: float) -> str:
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return f"{value:.6g}"

    if len(values) == 1:
        return one(values[0])
    return "[" + ", ".join(one(value) for value in values) + "]"


# --- measurements -------------------------------------------------------------------------------


class Verdict(enum.Enum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"  # both conditions given and neither holds
    ERROR = "Error"  # the query failed or a condition could not be evaluated
    NO_DATA = "NoData"  # no data, and onNoData: pause


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    value: str  # the values as formatted, or "" when there were none
    message: str


def judge(analysis: Analysis, outcome: QueryOutcome) -> Judgement:
    """One measurement's verdict, Argo Rollouts' rules: a failureCondition that holds fails; else
    a successCondition that holds succeeds; a successCondition alone that does not hold fails,
    a failureCondition alone that does not hold succeeds, and both not holding is inconclusive.
    Every value NaN (a ratio over no requests) is no data, like an empty answer."""
    if isinstance(outcome, QueryFailed):
        return Judgement(Verdict.ERROR, "", outcome.message)
    if isinstance(outcome, Values) and all(math.isnan(value) for value in outcome.values):
        outcome = NoData(f"every value is NaN ({format_values(outcome.values)})")
    if isinstance(outcome, NoData):
        verdict = {
            OnNoData.PAUSE: Verdict.NO_DATA,
            OnNoData.FAIL: Verdict.FAILED,
            OnNoData.PASS: Verdict.SUCCESSFUL,
        }[analysis.on_no_data]
        return Judgement(
            verdict, "", f"no data: {outcome.reason} (onNoData: {analysis.on_no_data.value})"
        )
    value = format_values(outcome.values)
    try:
        if analysis.failure is not None and analysis.failure.evaluate(outcome.values):
            return Judgement(Verdict.FAILED, value, f"{value}: {analysis.failure.text} holds")
        if analysis.success is not None:
            if analysis.success.evaluate(outcome.values):
                return Judgement(Verdict.SUCCESSFUL, value, f"{value}: {analysis.success.text}")
            if analysis.failure is None:
                return Judgement(
                    Verdict.FAILED, value, f"{value}: {analysis.success.text} does not hold"
                )
            return Judgement(Verdict.INCONCLUSIVE, value, f"{value}: neither condition holds")
    except EvaluationError as error:
        return Judgement(Verdict.ERROR, value, f"{value}: {error}")
    assert analysis.failure is not None
    return Judgement(Verdict.SUCCESSFUL, value, f"{value}: {analysis.failure.text} does not hold")


# --- the step machine -----------------------------------------------------------------------


class Phase(enum.Enum):
    PROGRESSING = "Progressing"  # a step is under way (weight, timed pause, analysis)
    PAUSED = "Paused"  # waits for a human: promote-step or abort
    PROMOTING = "Promoting"  # every step passed: stable takes the canary's template
    PROMOTED = "Promoted"  # stable runs the canary's revision, the canary has 0 replicas
    ABORTED = "Aborted"  # the canary has 0 replicas, stable never changed


class PauseReason(enum.Enum):
    STEP = "PauseStep"  # a `pause: {}` step
    NO_DATA = "NoData"  # an analysis found no data, onNoData: pause
    INCONCLUSIVE = "Inconclusive"  # neither condition held


DONE = (Phase.PROMOTED, Phase.ABORTED)


@dataclass(frozen=True)
class AnalysisState:
    """Where the current analysis step stands."""

    next_measurement_at: datetime
    successful: int = 0
    failed: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    inconclusive: int = 0
    last_verdict: Verdict | None = None
    last_value: str = ""
    last_measured_at: datetime | None = None
    last_message: str = ""


@dataclass(frozen=True)
class CanaryState:
    """status.canary: a canary of one revision, from its first step to promoted or aborted."""

    revision: int  # the canary's
    stable_revision: int  # what stable ran when the canary began; it runs it until promotion
    step: int  # index of the current step; len(steps) once every step passed
    phase: Phase
    weight: int
    step_started_at: datetime
    pause_reason: PauseReason | None = None
    analysis: AnalysisState | None = None
    message: str = ""

    def to_status(self, steps: int) -> dict[str, Any]:
        """status.canary; `steps` (how many the strategy has) is for `status -o wide`."""
        status: dict[str, Any] = {
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "step": self.step,
            "steps": steps,
            "phase": self.phase.value,
            "weight": self.weight,
            "stepStartedAt": timestamp(self.step_started_at),
            "message": self.message,
        }
        if self.pause_reason is not None:
            status["pauseReason"] = self.pause_reason.value
        if self.analysis is not None:
            analysis = self.analysis
            status["analysis"] = {
                "nextMeasurementAt": timestamp(analysis.next_measurement_at),
                "successful": analysis.successful,
                "failed": analysis.failed,
                "errors": analysis.errors,
                "consecutiveErrors": analysis.consecutive_errors,
                "inconclusive": analysis.inconclusive,
            }
            if analysis.last_verdict is not None and analysis.last_measured_at is not None:
                status["analysis"] |= {
                    "lastResult": analysis.last_verdict.value,
                    "lastValue": analysis.last_value,
                    "lastMeasuredAt": timestamp(analysis.last_measured_at),
                    "lastMessage": analysis.last_message,
                }
        return status

    @classmethod
    def from_status(cls, data: Any, where: str = "status.canary") -> CanaryState:
        status = _mapping(data, where)
        pause_reason = status.get("pauseReason")
        analysis = status.get("analysis")
        return cls(
            revision=_status_integer(status, "revision", where, 1),
            stable_revision=_status_integer(status, "stableRevision", where, 1),
            step=_status_integer(status, "step", where, 0),
            phase=_status_enum(Phase, status.get("phase"), f"{where}.phase"),
            weight=_integer(status.get("weight"), f"{where}.weight", 0, 100),
            step_started_at=_status_time(status.get("stepStartedAt"), f"{where}.stepStartedAt"),
            pause_reason=(
                None
                if pause_reason is None
                else _status_enum(PauseReason, pause_reason, f"{where}.pauseReason")
            ),
            analysis=None if analysis is None else _analysis_state(analysis, f"{where}.analysis"),
            message=str(status.get("message", "")),
        )


def _analysis_state(data: Any, where: str) -> AnalysisState:
    status = _mapping(data, where)
    verdict = status.get("lastResult")
    measured = status.get("lastMeasuredAt")
    return AnalysisState(
        next_measurement_at=_status_time(
            status.get("nextMeasurementAt"), f"{where}.nextMeasurementAt"
        ),
        successful=_status_integer(status, "successful", where, 0),
        failed=_status_integer(status, "failed", where, 0),
        errors=_status_integer(status, "errors", where, 0),
        consecutive_errors=_status_integer(status, "consecutiveErrors", where, 0),
        inconclusive=_status_integer(status, "inconclusive", where, 0),
        last_verdict=None
        if verdict is None
        else _status_enum(Verdict, verdict, f"{where}.lastResult"),
        last_value=str(status.get("lastValue", "")),
        last_measured_at=None
        if measured is None
        else _status_time(measured, f"{where}.lastMeasuredAt"),
        last_message=str(status.get("lastMessage", "")),
    )


def _status_integer(status: Mapping[str, Any], name: str, where: str, low: int) -> int:
    value = status.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise StrategyError(f"{where}.{name}", f"must be an integer >= {low}, not {value!r}")
    return value


def _status_enum(kind: type[enum.Enum], value: Any, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise StrategyError(where, f"must be one of {allowed}, not {value!r}") from None


def _status_time(value: Any, where: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise StrategyError(
        where, f"must be an RFC 3339 time such as 2026-01-02T03:04:05Z, not {value!r}"
    )


def _second(now: datetime) -> datetime:
    """Times the state keeps are whole seconds: status holds them so, and a state read back from
    status must decide exactly what the state in memory would."""
    return now.replace(microsecond=0)


def start(canary_revision: int, stable_revision: int, now: datetime) -> CanaryState:
    """A canary of `canary_revision` against what stable runs, before its first step."""
    return CanaryState(
        revision=canary_revision,
        stable_revision=stable_revision,
        step=0,
        phase=Phase.PROGRESSING,
        weight=0,
        step_started_at=_second(now),
        message="starting",
    )


@dataclass(frozen=True)
class Command:
    """What a human asked for, from the spec (kubectl testapp promote-step / abort): about one
    canary revision, ignored for any other. `promote_step` lets that step pass, whatever it waits
    for; it is a level (step N is approved), not an edge, so applying it twice changes nothing."""

    revision: int
    promote_step: int | None = None
    abort: bool = False


@dataclass(frozen=True)
class Measurement:
    """A query's outcome, taken for one step of one canary (a stale one is ignored)."""

    revision: int
    step: int
    outcome: QueryOutcome


@dataclass(frozen=True)
class Observation:
    now: datetime
    # Ready Pods by (track, revision), counted from their labels.
    ready: Mapping[tuple[str, int], int] = field(default_factory=dict)
    measurement: Measurement | None = None
    command: Command | None = None
    # Why the canary Deployment cannot become ready (its progress deadline passed), if it cannot.
    canary_failed: str | None = None

    def ready_pods(self, track: str, revision: int) -> int:
        return self.ready.get((track, revision), 0)


@dataclass(frozen=True)
class Track:
    """One Deployment: which revision its template is and how many replicas it has."""

    revision: int
    replicas: int


@dataclass(frozen=True)
class Event:
    reason: str  # CanaryStep, CanaryWeight, CanaryPaused, AnalysisMeasured, ...
    message: str
    warning: bool = False
    verdict: Verdict | None = None  # an AnalysisMeasured's (testapp_analysis_total{result})


class Outcome(enum.Enum):
    PROMOTED = "Promoted"  # the revision is Ready; the deployment log records PromoteCanary
    ABORTED = "Aborted"  # the revision is Failed; the log records AbortCanary with the value


@dataclass(frozen=True)
class Ending:
    """How a canary ended, for the revision's outcome and the deployment log."""

    outcome: Outcome
    reason: str  # Promoted, AbortedByUser, AnalysisFailed, AnalysisError, CanaryFailed
    message: str
    value: str = ""  # the measured value that decided it, if a measurement did


@dataclass(frozen=True)
class Decision:
    state: CanaryState
    stable: Track
    canary: Track
    events: tuple[Event, ...] = ()
    ending: Ending | None = None  # set once, on the call that ends the canary
    requeue_after: float | None = None  # seconds until a timer (pause, measurement) is due


def tracks(state: CanaryState, replicas: int) -> tuple[Track, Track]:
    """(stable, canary) Deployments for a state: the split of its weight, then promotion moves
    stable to the canary's revision, and the end (promoted or aborted) empties the canary."""
    canary_replicas, stable_replicas = split(state.weight, replicas)
    if state.phase is Phase.PROMOTING:
        return Track(state.revision, replicas), Track(state.revision, canary_replicas)
    if state.phase is Phase.PROMOTED:
        return Track(state.revision, replicas), Track(state.revision, 0)
    if state.phase is Phase.ABORTED:
        return Track(state.stable_revision, replicas), Track(state.revision, 0)
    return Track(state.stable_revision, stable_replicas), Track(state.revision, canary_replicas)


def due_measurement(
    strategy: Canary, state: CanaryState, now: datetime, context: QueryContext
) -> MeasurementRequest | None:
    """The query to run before `advance`, if the current step is an analysis that is due."""
    now = _second(now)
    if state.phase is not Phase.PROGRESSING or state.step >= len(strategy.steps):
        return None
    step = strategy.steps[state.step]
    if not isinstance(step, Analysis):
        return None
    due = (
        state.analysis.next_measurement_at
        if state.analysis is not None
        else state.step_started_at + timedelta(seconds=step.interval)
    )
    if now < due:
        return None
    return MeasurementRequest(state.revision, state.step, render_query(step.query, context))


@dataclass(frozen=True)
class MeasurementRequest:
    revision: int
    step: int
    query: str  # rendered PromQL


def advance(
    strategy: Canary, replicas: int, state: CanaryState, observation: Observation
) -> Decision:
    """The next state of a canary and what to do about it. Level-triggered: the same state and
    observation always give the same decision, whoever computes it, however often."""
    machine = _Machine(strategy, replicas, state, observation)
    machine.run()
    stable, canary = tracks(machine.state, replicas)
    return Decision(
        machine.state,
        stable,
        canary,
        tuple(machine.events),
        machine.ending,
        machine.requeue_after,
    )


class _Machine:
    """One `advance` call: steps pass in a loop until one waits (for Pods, a timer, a human)."""

    def __init__(
        self, strategy: Canary, replicas: int, state: CanaryState, observation: Observation
    ) -> None:
        self.steps = strategy.steps
        self.replicas = replicas
        self.state = state
        self.observation = observation
        self.now = _second(observation.now)
        self.events: list[Event] = []
        self.ending: Ending | None = None
        self.requeue_after: float | None = None

    def emit(
        self, reason: str, message: str, warning: bool = False, verdict: Verdict | None = None
    ) -> None:
        self.events.append(Event(reason, message, warning, verdict))

    @property
    def command(self) -> Command | None:
        command = self.observation.command
        return command if command is not None and command.revision == self.state.revision else None

    def run(self) -> None:
        if self.state.phase in DONE:
            return
        if self.command is not None and self.command.abort:
            self.abort("AbortedByUser", "aborted by kubectl testapp abort", value="")
            return
        if self.observation.canary_failed is not None and self.state.phase is not Phase.PROMOTING:
            self.abort("CanaryFailed", self.observation.canary_failed, value="")
            return
        if self.state.phase is Phase.PROMOTING:
            self.finish_promotion()
            return
        for _ in range(len(self.steps) + 1):
            if self.state.step >= len(self.steps):
                self.begin_promotion()
                return
            command = self.command
            if command is not None and command.promote_step == self.state.step:
                self.emit("CanaryStepPromoted", f"step {self.position}: promoted by hand")
                self.next_step()
                continue
            if not self.run_step(self.steps[self.state.step]):
                return

    @property
    def position(self) -> str:
        return f"{self.state.step + 1}/{len(self.steps)}"

    def run_step(self, step: Step) -> bool:
        """True when the step passed (the loop goes on to the next)."""
        match step:
            case SetWeight(weight):
                return self.set_weight(weight)
            case Pause(seconds):
                return self.pause(seconds)
            case Analysis():
                return self.analyse(step)
        raise AssertionError(step)

    def set_weight(self, weight: int) -> bool:
        if self.state.weight != weight:
            canary, stable = split(weight, self.replicas)
            self.state = replace(self.state, weight=weight)
            self.emit(
                "CanaryWeight",
                f"step {self.position}: weight {weight}% "
                f"({canary} canary, {stable} stable replicas)",
            )
        canary, stable = split(weight, self.replicas)
        ready_canary = self.observation.ready_pods(CANARY, self.state.revision)
        ready_stable = self.observation.ready_pods(STABLE, self.state.stable_revision)
        if ready_canary >= canary and ready_stable >= stable:
            self.next_step()
            return True
        self.state = replace(
            self.state,
            message=f"weight {weight}%: {ready_canary}/{canary} canary and "
            f"{ready_stable}/{stable} stable Pods ready",
        )
        return False

    def pause(self, seconds: int | None) -> bool:
        if seconds is None:
            if self.state.phase is not Phase.PAUSED:
                self.emit("CanaryPaused", f"step {self.position}: paused until promote-step")
            self.state = replace(
                self.state,
                phase=Phase.PAUSED,
                pause_reason=PauseReason.STEP,
                message="paused: kubectl testapp promote-step to go on, abort to stop",
            )
            return False
        until = self.state.step_started_at + timedelta(seconds=seconds)
        if self.now >= until:
            self.next_step()
            return True
        self.wait_until(until)
        self.state = replace(self.state, message=f"pausing until {timestamp(until)}")
        return False

    def analyse(self, step: Analysis) -> bool:
        if self.state.phase is Phase.PAUSED:
            return False  # no data or inconclusive: a human decides
        analysis = self.state.analysis or AnalysisState(
            next_measurement_at=self.state.step_started_at + timedelta(seconds=step.interval)
        )
        measurement = self.observation.measurement
        fresh = (
            measurement is not None
            and measurement.revision == self.state.revision
            and measurement.step == self.state.step
            and self.now >= analysis.next_measurement_at
        )
        if not fresh:
            self.state = replace(
                self.state,
                analysis=analysis,
                message=f"analysis: next measurement at {timestamp(analysis.next_measurement_at)}",
            )
            self.wait_until(analysis.next_measurement_at)
            return False
        assert measurement is not None
        judgement = judge(step, measurement.outcome)
        analysis = _counted(analysis, judgement, self.now, step.interval)
        self.state = replace(self.state, analysis=analysis, message=judgement.message)
        verdict = judgement.verdict
        self.emit(
            "AnalysisMeasured",
            f"step {self.position}: {verdict.value}: {judgement.message}",
            warning=verdict is not Verdict.SUCCESSFUL,
            verdict=verdict,
        )
        if analysis.failed > step.failure_limit:
            self.abort(
                "AnalysisFailed",
                f"{analysis.failed} failed measurement(s), {step.failure_limit} tolerated: "
                f"{judgement.message}",
                judgement.value,
            )
            return False
        if analysis.consecutive_errors > step.consecutive_error_limit:
            self.abort(
                "AnalysisError",
                f"{analysis.consecutive_errors} errors in a row, "
                f"{step.consecutive_error_limit} tolerated: {judgement.message}",
                judgement.value,
            )
            return False
        if verdict in (Verdict.NO_DATA, Verdict.INCONCLUSIVE):
            reason = PauseReason.NO_DATA if verdict is Verdict.NO_DATA else PauseReason.INCONCLUSIVE
            self.state = replace(
                self.state,
                phase=Phase.PAUSED,
                pause_reason=reason,
                message=f"paused, {judgement.message}: promote-step to go on, abort to stop",
            )
            self.emit("CanaryPaused", f"step {self.position}: {reason.value}", warning=True)
            return False
        if analysis.successful + analysis.failed >= step.count:
            self.next_step()
            return True
        self.wait_until(analysis.next_measurement_at)
        return False

    def next_step(self) -> None:
        self.emit("CanaryStep", f"step {self.position} passed")
        self.state = replace(
            self.state,
            step=self.state.step + 1,
            phase=Phase.PROGRESSING,
            step_started_at=self.now,
            pause_reason=None,
            analysis=None,
            message="",
        )
        if self.state.step < len(self.steps):
            upcoming = self.steps[self.state.step]
            if isinstance(upcoming, Analysis):
                first = self.now + timedelta(seconds=upcoming.interval)
                self.state = replace(self.state, analysis=AnalysisState(first))

    def begin_promotion(self) -> None:
        self.state = replace(
            self.state,
            phase=Phase.PROMOTING,
            message=f"every step passed: stable takes revision {self.state.revision}",
        )
        self.emit("CanaryPromoting", f"revision {self.state.revision}: every step passed")

    def finish_promotion(self) -> None:
        ready = self.observation.ready_pods(STABLE, self.state.revision)
        if ready < self.replicas:
            self.state = replace(
                self.state,
                message=f"promoting: {ready}/{self.replicas} stable Pods of revision "
                f"{self.state.revision} ready",
            )
            return
        self.state = replace(
            self.state,
            phase=Phase.PROMOTED,
            message=f"promoted: stable runs revision {self.state.revision}",
        )
        message = f"revision {self.state.revision} promoted"
        self.emit("CanaryPromoted", message)
        self.ending = Ending(Outcome.PROMOTED, "Promoted", message)

    def abort(self, reason: str, message: str, value: str) -> None:
        self.state = replace(
            self.state,
            phase=Phase.ABORTED,
            pause_reason=None,
            message=f"{reason}: {message}",
        )
        self.emit("AbortCanary", f"{reason}: {message}", warning=True)
        self.ending = Ending(Outcome.ABORTED, reason, message, value)

    def wait_until(self, when: datetime) -> None:
        self.requeue_after = max((when - self.now).total_seconds(), 1.0)


def _counted(
    analysis: AnalysisState, judgement: Judgement, now: datetime, interval: int
) -> AnalysisState:
    verdict = judgement.verdict
    return replace(
        analysis,
        next_measurement_at=now + timedelta(seconds=interval),
        successful=analysis.successful + (verdict is Verdict.SUCCESSFUL),
        failed=analysis.failed + (verdict is Verdict.FAILED),
        errors=analysis.errors + (verdict is Verdict.ERROR),
        consecutive_errors=analysis.consecutive_errors + 1 if verdict is Verdict.ERROR else 0,
        inconclusive=analysis.inconclusive + (verdict is Verdict.INCONCLUSIVE),
        last_verdict=verdict,
        last_value=judgement.value,
        last_measured_at=now,
        last_message=judgement.message,
    )
