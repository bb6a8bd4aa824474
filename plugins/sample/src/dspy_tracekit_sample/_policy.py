"""The sampling policy: the validated config table, compiled into rules and bounds.

Everything that can be computed once (ratio bounds, tag strings, compiled regexes, which rules the
head can already judge) is computed here, in ``tracekit_configure``, so that the request path only
compares integers and reads dicts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from dspy_tracekit.config import check_number, parse_yes_no

__all__ = ["TRACE_ID_MASK", "Rule", "SamplingPolicy", "parse_policy", "ratio_bound"]

#: OpenTelemetry ``TraceIdRatioBased`` looks at the low 64 bits of the trace id.
TRACE_ID_MASK = (1 << 64) - 1

#: defaults of the per-workload ratios: at most this share, never more than ``ratio``.
DEFAULT_EVALUATE_RATIO = 0.1
DEFAULT_COMPILE_RATIO = 0.01

TOP_KEYS = ("ratio", "evaluate_ratio", "compile_ratio", "keep_errors", "max_traces_per_second", "rules")
RULE_KEYS = ("name", "ratio", "error", "latency_ms_over", "cost_usd_over", "span_name", "span_kind",
             "span_type", "tag", "attribute", "equals", "regex")

#: the MLflow span type a core span kind is exported as (custom spans keep their own ``span_type``).
KIND_TO_SPAN_TYPE = {
    "module": "CHAIN", "predict": "LLM", "lm": "CHAT_MODEL", "adapter.format": "PARSER",
    "adapter.parse": "PARSER", "tool": "TOOL", "retriever": "RETRIEVER", "embedder": "EMBEDDING",
    "evaluate": "EVALUATOR", "compile": "CHAIN", "custom": "UNKNOWN",
}


def ratio_bound(ratio: float) -> int:
    """The OpenTelemetry ``TraceIdRatioBased`` bound: keep a trace iff ``trace_id & MASK < bound``."""
    return round(ratio * (TRACE_ID_MASK + 1))


def _prob_str(ratio: float) -> str:
    return repr(float(ratio))


# ----------------------------------------------------------------------------------------------
# Conditions: ``at_head`` answers True (matches), False (cannot match) or None (only the tail
# knows); ``at_tail`` sees the finished trace. ``at_head`` runs on the request path: no regex.
# ----------------------------------------------------------------------------------------------


class Condition:
    __slots__ = ()

    def at_head(self, trace) -> bool | None:
        return None

    def at_tail(self, trace) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class ErrorCondition(Condition):
    __slots__ = ()

    def at_tail(self, trace) -> bool:
        return any(s.error is not None for s in trace.spans)

    def __repr__(self) -> str:
        return "error"


class LatencyOver(Condition):
    __slots__ = ("ns",)

    def __init__(self, ms: float):
        self.ns = ms * 1_000_000

    def at_tail(self, trace) -> bool:
        duration = trace.duration_ns
        return duration is not None and duration > self.ns

    def __repr__(self) -> str:
        return f"latency_ms_over={self.ns / 1e6:g}"


def trace_cost_usd(trace) -> float:
    """The trace's cost in USD: the cost plugin's total when it set one, else the sum of span costs."""
    total = trace.attributes.get("cost.total_usd") if trace.attributes else None
    if isinstance(total, (int, float)) and not isinstance(total, bool):
        return float(total)
    out = 0.0
    for span in trace.spans:
        cost = span.cost
        if cost:
            value = cost.get("total_cost")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out += value
    return out


class CostOver(Condition):
    __slots__ = ("usd",)

    def __init__(self, usd: float):
        self.usd = usd

    def at_tail(self, trace) -> bool:
        return trace_cost_usd(trace) > self.usd

    def __repr__(self) -> str:
        return f"cost_usd_over={self.usd:g}"


class SpanName(Condition):
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def at_head(self, trace) -> bool | None:
        root = trace.root
        return True if root is not None and root.name == self.name else None

    def at_tail(self, trace) -> bool:
        return any(s.name == self.name for s in trace.spans)


class SpanKindPresent(Condition):
    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def at_head(self, trace) -> bool | None:
        root = trace.root
        return True if root is not None and root.kind == self.kind else None

    def at_tail(self, trace) -> bool:
        return any(s.kind == self.kind for s in trace.spans)


class SpanTypePresent(Condition):
    __slots__ = ("span_type",)

    def __init__(self, span_type: str):
        self.span_type = span_type

    def at_tail(self, trace) -> bool:
        want = self.span_type
        return any((s.span_type or KIND_TO_SPAN_TYPE.get(s.kind)) == want for s in trace.spans)


class _ValueMatch(Condition):
    __slots__ = ("equals", "key", "regex")

    def __init__(self, key: str, equals: Any = None, regex: re.Pattern | None = None):
        self.key = key
        self.equals = equals
        self.regex = regex

    def matches(self, value: Any) -> bool:
        if self.regex is not None:
            return self.regex.search(value if isinstance(value, str) else str(value)) is not None
        return value == self.equals or (not isinstance(value, str) and str(value) == str(self.equals))


class TagMatch(_ValueMatch):
    """A ``dspy_tracekit.context(...)`` tag on the trace or on any of its spans."""

    __slots__ = ()

    def at_head(self, trace) -> bool | None:
        # Only ``equals`` is judged at the head (no regex on the request path); tags set inside the
        # trace may still match later, so a miss is "unknown", never "no".
        if self.regex is None:
            value = trace.tags.get(self.key)
            if value is not None and value == self.equals:
                return True
        return None

    def at_tail(self, trace) -> bool:
        key = self.key
        value = trace.tags.get(key)
        if value is not None and self.matches(value):
            return True
        for span in trace.spans:
            value = span.tags.get(key) if span.tags else None
            if value is not None and self.matches(value):
                return True
        return False


class AttributeMatch(_ValueMatch):
    """An attribute of the trace (``trace.attributes``) or of any of its spans."""

    __slots__ = ()

    def at_tail(self, trace) -> bool:
        key = self.key
        if trace.attributes and key in trace.attributes and self.matches(trace.attributes[key]):
            return True
        for span in trace.spans:
            attrs = span.attributes
            if attrs and key in attrs and self.matches(attrs[key]):
                return True
        return False


# ----------------------------------------------------------------------------------------------
# Rules and the policy
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One sampling rule: all its conditions hold → the trace is kept with probability ``ratio``."""

    name: str
    ratio: float
    conditions: tuple[Condition, ...]
    bound: int = field(init=False)
    probability: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bound", ratio_bound(self.ratio))
        object.__setattr__(self, "probability", _prob_str(self.ratio))

    @property
    def head_judgeable(self) -> bool:
        return any(type(c).at_head is not Condition.at_head for c in self.conditions)

    def at_head(self, trace) -> bool | None:
        result: bool | None = True
        for cond in self.conditions:
            r = cond.at_head(trace)
            if r is False:
                return False
            if r is None:
                result = None
        return result

    def at_tail(self, trace) -> bool:
        return all(cond.at_tail(trace) for cond in self.conditions)


@dataclass(frozen=True)
class SamplingPolicy:
    """A validated ``[tool.dspy-tracekit.sample]`` table."""

    ratio: float = 1.0
    evaluate_ratio: float = DEFAULT_EVALUATE_RATIO
    compile_ratio: float = DEFAULT_COMPILE_RATIO
    keep_errors: float | None = 1.0
    max_traces_per_second: float | None = None
    rules: tuple[Rule, ...] = ()

    @property
    def tail_rules(self) -> tuple[Rule, ...]:
        """The rules in the order they are tried: ``keep_errors`` first, then ``rules``."""
        head = (Rule("errors", self.keep_errors, (ErrorCondition(),)),) if self.keep_errors is not None else ()
        return head + self.rules

    def fallback(self, workload: str) -> Rule:
        """The rule applied when no tail rule matches: the ratio of the trace's workload."""
        if workload == "evaluate":
            return Rule("evaluate_ratio", self.evaluate_ratio, ())
        if workload == "compile":
            return Rule("compile_ratio", self.compile_ratio, ())
        return Rule("ratio", self.ratio, ())


# ----------------------------------------------------------------------------------------------
# Parsing and validation
# ----------------------------------------------------------------------------------------------


def _number(key: str, value: Any) -> float:
    # text is refused (`ratio = "0.5"`): environment variables reach the plugin already read as TOML
    return float(check_number(value, key))


def _ratio(key: str, value: Any) -> float:
    ratio = _number(key, value)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
    return ratio


def _bool(key: str, value: Any) -> bool:
    return parse_yes_no(value, key)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _unknown(prefix: str, keys, known) -> None:
    for key in keys:
        if key not in known:
            raise ValueError(f"{prefix}.{key}: unknown key (known keys: {', '.join(known)})")


def _parse_rule(i: int, table: Any) -> Rule:
    where = f"sample.rules[{i}]"
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, got {type(table).__name__} {table!r}")  # noqa: TRY004
    _unknown(where, table, RULE_KEYS)
    name = _string(f"{where}.name", table["name"]) if "name" in table else f"rules[{i}]"
    ratio = _ratio(f"{where}.ratio", table["ratio"]) if "ratio" in table else 1.0
    conds: list[Condition] = []
    if "error" in table:
        if not _bool(f"{where}.error", table["error"]):
            raise ValueError(f"{where}.error: only `error = true` is meaningful (omit the key otherwise)")
        conds.append(ErrorCondition())
    if "latency_ms_over" in table:
        ms = _number(f"{where}.latency_ms_over", table["latency_ms_over"])
        if ms < 0:
            raise ValueError(f"{where}.latency_ms_over must be >= 0, got {table['latency_ms_over']!r}")
        conds.append(LatencyOver(ms))
    if "cost_usd_over" in table:
        usd = _number(f"{where}.cost_usd_over", table["cost_usd_over"])
        if usd < 0:
            raise ValueError(f"{where}.cost_usd_over must be >= 0, got {table['cost_usd_over']!r}")
        conds.append(CostOver(usd))
    if "span_name" in table:
        conds.append(SpanName(_string(f"{where}.span_name", table["span_name"])))
    if "span_kind" in table:
        conds.append(SpanKindPresent(_string(f"{where}.span_kind", table["span_kind"])))
    if "span_type" in table:
        conds.append(SpanTypePresent(_string(f"{where}.span_type", table["span_type"]).upper()))
    has_match = "equals" in table or "regex" in table
    if "tag" in table and "attribute" in table:
        raise ValueError(f"{where}: give either `tag` or `attribute`, not both (one rule per key)")
    if "equals" in table and "regex" in table:
        raise ValueError(f"{where}: give either `equals` or `regex`, not both")
    target = "tag" if "tag" in table else "attribute" if "attribute" in table else None
    if target is None and has_match:
        raise ValueError(f"{where}.{'regex' if 'regex' in table else 'equals'}: needs a `tag` or `attribute` key")
    if target is not None:
        key = _string(f"{where}.{target}", table[target])
        if not has_match:
            raise ValueError(f"{where}.{target}: needs `equals` or `regex`")
        regex = None
        equals = None
        if "regex" in table:
            pattern = _string(f"{where}.regex", table["regex"])
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{where}.regex: bad regular expression {pattern!r}: {exc}") from None
        else:
            equals = table["equals"]
            if not isinstance(equals, (str, int, float, bool)):
                raise ValueError(f"{where}.equals must be a string, number or boolean, got {equals!r}")
            if target == "tag" and not isinstance(equals, str):
                equals = str(equals).lower() if isinstance(equals, bool) else str(equals)
        conds.append((TagMatch if target == "tag" else AttributeMatch)(key, equals, regex))
    if not conds:
        raise ValueError(f"{where}: a rule needs a condition (one of error, latency_ms_over, cost_usd_over, "
                         "span_name, span_kind, span_type, tag, attribute)")
    return Rule(name, ratio, tuple(conds))


def parse_policy(config: dict[str, Any] | None) -> SamplingPolicy:
    """Validate a ``[tool.dspy-tracekit.sample]`` table; raise :class:`ValueError` naming the bad key."""
    config = dict(config or {})
    _unknown("sample", config, TOP_KEYS)
    ratio = _ratio("sample.ratio", config["ratio"]) if "ratio" in config else 1.0
    evaluate_ratio = (_ratio("sample.evaluate_ratio", config["evaluate_ratio"]) if "evaluate_ratio" in config
                      else min(ratio, DEFAULT_EVALUATE_RATIO))
    compile_ratio = (_ratio("sample.compile_ratio", config["compile_ratio"]) if "compile_ratio" in config
                     else min(ratio, DEFAULT_COMPILE_RATIO))
    keep_errors: float | None = 1.0
    if "keep_errors" in config:
        value = config["keep_errors"]
        if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in
                                       ("true", "false", "yes", "no", "on", "off")):
            keep_errors = 1.0 if _bool("sample.keep_errors", value) else None
        else:
            keep_errors = _ratio("sample.keep_errors", value)
    rate = None
    if config.get("max_traces_per_second") is not None:
        rate = _number("sample.max_traces_per_second", config["max_traces_per_second"])
        if rate <= 0:
            raise ValueError(f"sample.max_traces_per_second must be > 0 (omit it for no limit), "
                             f"got {config['max_traces_per_second']!r}")
    raw_rules = config.get("rules") or []
    if isinstance(raw_rules, str):  # from an environment variable: JSON
        try:
            raw_rules = json.loads(raw_rules)
        except ValueError as exc:
            raise ValueError(f"sample.rules: not a JSON list of tables: {exc}") from None
    if not isinstance(raw_rules, list):
        raise ValueError(  # noqa: TRY004 - the core turns ValueErrors into ConfigErrors
            "sample.rules must be a list of tables ([[tool.dspy-tracekit.sample.rules]]), "
            f"got {type(raw_rules).__name__}")
    rules = tuple(_parse_rule(i, t) for i, t in enumerate(raw_rules))
    names = [r.name for r in rules]
    for i, n in enumerate(names):
        if n in names[:i] or n in ("errors", "ratio", "evaluate_ratio", "compile_ratio", "parent", "rate_limit"):
            raise ValueError(f"sample.rules[{i}].name: {n!r} is already used (rule names must be unique)")
    return SamplingPolicy(ratio, evaluate_ratio, compile_ratio, keep_errors, rate, rules)
