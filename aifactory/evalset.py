"""Evaluation sets and accepted baselines: what `aifactory check` needs to gate promotions.

Not workflow-safe (reads files). An agent folder may carry `eval/cases.yaml` and an
accepted `eval/baseline.json`; the baseline records a fingerprint of what was
evaluated (the prompt, the model settings, the output schema and the contracts of
the agent's tools), which the admission gate (`activities.releases.gate`) holds
every release to. See `aifactory.evaluate` for the runner.

A case is data, for any agent: its input, the output fields it expects (each with a
comparison and a weight) and the tool calls a correct run makes::

    defaults:                       # merged into every case (a case's own fields win)
      expect:
        tools:
          - {name: lookup_requester, args: {email: {equals: $input.requester_email, ignore_case: true}}}
        output:
          ticket_id: {present: true, weight: 0, metric: tickets_as_expected}
    cases:
      - id: password-expired
        input: {ticket_text: "...", requester_email: jonas.berg@example.com}
        expect:
          output:
            category: access          # a scalar: equals
            priority: [P2, P3]        # a list: one of
            score: {near: 0.8, tolerance: 0.1}
            summary: {contains: password}

A string `$input.<field>` or `$output.<field>` in an expectation stands for that field
of the case's input or of the run's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities.releases.gate import BASELINE, CASES, fingerprint, read_baseline

__all__ = [
    "BASELINE", "CASES", "EvalCase", "EvalSet", "Expectation", "FieldCheck", "ToolExpectation",
    "fingerprint", "load_cases", "read_baseline",
]  # fmt: skip

COMPARISONS = ("equals", "one_of", "near", "contains", "present")


class FieldCheck(BaseModel):
    """One expected value and how it is compared. Exactly one comparison is given; in YAML a bare
    scalar means `equals` and a bare list means `one_of`."""

    model_config = ConfigDict(extra="forbid")

    equals: Any = None
    """The value must be exactly this."""
    one_of: list[Any] | None = None
    """The value must be one of these (a case may admit two answers)."""
    near: float | None = None
    """A number within `tolerance` of this."""
    tolerance: float = 0.0
    """For `near`: the largest difference that still counts as right."""
    contains: str | None = None
    """A string that holds this text (case-insensitive)."""
    present: bool | None = None
    """True: the field is there and not null; false: it is missing or null."""
    ignore_case: bool = False
    """For `equals` and `one_of` on strings: compare without regard to case."""
    weight: float = 1.0
    """The field's share of a case's score. A field of weight 0 is reported but does not decide
    whether the case is right."""
    metric: str | None = None
    """The name the report gives this field's share of right answers (default `<field>_accuracy`)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"one_of": value}
        if not isinstance(value, dict):
            return {"equals": value}
        return value

    @model_validator(mode="after")
    def _one_comparison(self) -> "FieldCheck":
        given = [name for name in COMPARISONS if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(f"give exactly one comparison of {', '.join(COMPARISONS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def comparison(self) -> str:
        return next(name for name in COMPARISONS if name in self.model_fields_set)

    def matches(self, value: Any, refs: dict[str, Any]) -> bool:
        """Does `value` meet this expectation? `refs` resolves `$input.x` / `$output.x`."""
        kind = self.comparison
        if kind == "present":
            return (value is not None) == self.present
        if kind == "near":
            return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value - self.near) <= self.tolerance
        if kind == "contains":
            return isinstance(value, str) and resolve(self.contains, refs).lower() in value.lower()
        wanted = [resolve(self.equals, refs)] if kind == "equals" else [resolve(v, refs) for v in self.one_of or []]
        return any(_same(value, w, self.ignore_case) for w in wanted)


class ToolExpectation(BaseModel):
    """A tool call a correct run makes: its name and, optionally, a subset of its arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str
    args: dict[str, FieldCheck] = Field(default_factory=dict)
    """Arguments that must have these values; the others are not looked at."""

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Expectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: dict[str, FieldCheck] = Field(default_factory=dict)
    """Expected output fields, by name."""
    tools: list[ToolExpectation] | None = None
    """The calls that succeed, in order; None: tool calls are not looked at."""

    @model_validator(mode="before")
    @classmethod
    def _say_where_fields_go(cls, value: Any) -> Any:
        if isinstance(value, dict):
            stray = sorted(set(value) - {"output", "tools"})
            if stray:
                raise ValueError(f"expect: unknown key(s) {', '.join(stray)}: expected output fields go under expect.output")
        return value


class EvalCase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    input: dict[str, Any]
    expect: Expectation


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expect: Expectation = Field(default_factory=Expectation)


class EvalSet(BaseModel):
    min_accuracy: float = 0.8
    """The share of cases that must be right (every weighted output field) for a baseline to be accepted."""
    min_tool_accuracy: float = 0.9
    """The share of cases whose tool calls must be right."""
    max_regression: float = 0.05
    """How far accuracy or tool-call correctness may fall below the accepted baseline (same model)."""
    defaults: Defaults = Field(default_factory=Defaults)
    """Expectations every case shares; a case's own output fields and tool list win."""
    cases: list[EvalCase]

    @model_validator(mode="after")
    def _apply_defaults(self) -> "EvalSet":
        base = self.defaults.expect
        for case in self.cases:
            exp = case.expect
            tools = exp.tools if "tools" in exp.model_fields_set else base.tools
            shared = {name: check for name, check in base.output.items() if name not in exp.output}
            case.expect = Expectation(output={**exp.output, **shared}, tools=tools)  # the case's own fields first
        return self

    def metric_names(self) -> dict[str, str]:
        """Output field -> the report's name for its share of right answers, over all cases."""
        names: dict[str, str] = {}
        for case in self.cases:
            for name, check in case.expect.output.items():
                names.setdefault(name, check.metric or f"{name}_accuracy")
        return names


def resolve(value: Any, refs: dict[str, Any]) -> Any:
    """`$input.x` / `$output.x` -> that field; anything else as it is."""
    if isinstance(value, str) and value.startswith("$"):
        source, _, key = value[1:].partition(".")
        if source in refs and key:
            return (refs[source] or {}).get(key)
    return value


def _same(value: Any, wanted: Any, ignore_case: bool) -> bool:
    if ignore_case and isinstance(value, str) and isinstance(wanted, str):
        return value.lower() == wanted.lower()
    return value == wanted and type(value) is type(wanted) or (
        isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(value, bool) and value == wanted
    )


def load_cases(agent_dir: Path) -> EvalSet | None:
    path = agent_dir / "eval" / CASES
    if not path.exists():
        return None
    return EvalSet.model_validate(yaml.safe_load(path.read_text()))
