"""Evaluation sets and accepted baselines: what `aifactory check` needs to gate promotions.

Not workflow-safe (reads files). An agent folder may carry `eval/cases.yaml` and an
accepted `eval/baseline.json`; the baseline records a fingerprint of what was
evaluated (the prompt, the model settings, the output schema and the contracts of
the agent's tools), which the admission gate (`activities.releases.gate`) holds
every release to. See `aifactory.evaluate` for the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from activities.releases.gate import BASELINE, CASES, fingerprint, read_baseline

__all__ = ["BASELINE", "CASES", "EvalCase", "EvalSet", "Expectation", "fingerprint", "load_cases", "read_baseline"]


class Expectation(BaseModel):
    category: str
    priority: list[str]
    """Acceptable priorities (a case may admit two)."""
    tools: list[str] = Field(default_factory=lambda: ["lookup_requester", "create_ticket"])
    ticket: bool = True
    """A ticket is opened."""


class EvalCase(BaseModel):
    id: str
    input: dict[str, Any]
    expect: Expectation


class EvalSet(BaseModel):
    min_accuracy: float = 0.8
    """The share of cases that must be right (category and priority) for a baseline to be accepted."""
    min_tool_accuracy: float = 0.9
    """The share of cases whose tool calls must be right."""
    max_regression: float = 0.05
    """How far accuracy or tool-call correctness may fall below the accepted baseline (same model)."""
    cases: list[EvalCase]


def load_cases(agent_dir: Path) -> EvalSet | None:
    path = agent_dir / "eval" / CASES
    if not path.exists():
        return None
    return EvalSet.model_validate(yaml.safe_load(path.read_text()))
