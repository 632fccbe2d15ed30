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
            matched:                  # a list of objects: precision and recall over its items
              set_of: [{invoice_number: NL-2024-0117, transaction_reference: BK24031801}]
              keys: [invoice_number, transaction_reference]
              metric: match           # reported as match_precision, match_recall
            invoices:
              set_of: [{invoice_number: NL-2024-0117, total: 656.88}]
              keys: [invoice_number]
              compare: [total]        # reported as invoices_total_accuracy, over the expected items

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

COMPARISONS = ("equals", "one_of", "near", "contains", "present", "set_of")


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
    set_of: list[dict[str, Any]] | None = None
    """The value is a list holding exactly these objects (in any order), told apart by `keys`;
    besides right or wrong, the report gives precision and recall over the items of all cases."""
    keys: list[str] = Field(default_factory=list)
    """For `set_of`: the fields that identify an item (default: every field of the expected items)."""
    compare: list[str] = Field(default_factory=list)
    """For `set_of`: further fields compared on the items whose keys match; the report gives each
    field's share of right values over the expected items (`<metric>_<field>_accuracy`)."""
    ignore_case: bool = False
    """For `equals`, `one_of` and `set_of` on strings: compare without regard to case."""
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
        if kind == "set_of":
            counts = self.set_counts(value)
            return counts.exact and counts.got == counts.expected == counts.found
        wanted = [resolve(self.equals, refs)] if kind == "equals" else [resolve(v, refs) for v in self.one_of or []]
        return any(_same(value, w, self.ignore_case) for w in wanted)


    def item_keys(self) -> list[str]:
        return self.keys or sorted({k for item in self.set_of or [] for k in item})

    def set_counts(self, value: Any) -> "SetCounts":
        """For `set_of`: how many expected items the list holds, and how many of their compared fields are right."""
        keys, wanted = self.item_keys(), list(self.set_of or [])
        got = [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
        ident = lambda item: tuple(_fold(item.get(k), self.ignore_case) for k in keys)  # noqa: E731
        pool = [ident(item) for item in got]
        right = {name: 0 for name in self.compare}
        found = 0
        for item in wanted:
            key = ident(item)
            if key not in pool:
                continue
            mine = got[pool.index(key)]
            pool[pool.index(key)] = None  # each item of the list answers one expected item
            found += 1
            for name in self.compare:
                right[name] += _same(mine.get(name), item.get(name), self.ignore_case)
        exact = all(right[name] == found for name in self.compare)
        return SetCounts(found=found, got=len(got), expected=len(wanted), right=right, exact=exact)


class SetCounts(BaseModel):
    """One `set_of` comparison: items found, items given, items expected, right values per compared field."""

    found: int
    got: int
    expected: int
    right: dict[str, int] = Field(default_factory=dict)
    exact: bool = True
    """Every compared field of every found item is right."""


def _fold(value: Any, ignore_case: bool) -> Any:
    return value.lower() if ignore_case and isinstance(value, str) else value


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

    def set_metrics(self) -> dict[str, tuple[str, list[str]]]:
        """`set_of` output field -> (the report's prefix for its precision and recall, its compared fields)."""
        out: dict[str, tuple[str, list[str]]] = {}
        for case in self.cases:
            for name, check in case.expect.output.items():
                if check.set_of is not None:
                    prefix, compared = out.get(name, (check.metric or name, []))
                    out[name] = (prefix, compared + [c for c in check.compare if c not in compared])
        return out

    def metric_names(self) -> dict[str, str]:
        """Output field -> the report's name for its share of right answers, over all cases."""
        names: dict[str, str] = {}
        for case in self.cases:
            for name, check in case.expect.output.items():
                if check.set_of is not None:  # its `metric` is the prefix of its precision and recall
                    names.setdefault(name, f"{check.metric or name}_accuracy")
                else:
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
