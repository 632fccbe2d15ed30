"""Evaluation sets and accepted baselines: what `aifactory check` needs to gate promotions.

Not workflow-safe (reads files). An agent folder may carry `eval/cases.yaml` and an
accepted `eval/baseline.json`; the baseline records a fingerprint of what was
evaluated (the prompt, the model settings, the output schema and the contracts of
the agent's tools). See `aifactory.evaluate` for the runner.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from activities.tools.catalog import CATALOG
from contracts.agent import AgentRelease

BASELINE = "baseline.json"
CASES = "cases.yaml"


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


def fingerprint(release: AgentRelease) -> str:
    """What an evaluation vouches for: prompt, model settings, output schema, tool contracts."""
    spec = release.spec
    tools = {name: CATALOG[name].schema_for_model().model_dump(mode="json") for name in sorted(spec.tools) if name in CATALOG}
    material = {
        "prompt_sha256": release.prompt_sha256,
        "model": spec.model.model_dump(mode="json"),
        "required_tools": spec.required_tools,
        "output_schema": spec.output_schema,
        "tools": tools,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def read_baseline(agent_dir: Path) -> dict[str, Any] | None:
    path = agent_dir / "eval" / BASELINE
    return json.loads(path.read_text()) if path.exists() else None


def gate_problems(agent_dir: Path, release: AgentRelease) -> list[tuple[str, str]]:
    """(field, problem) of `eval/baseline.json` for `aifactory check`: is what ships what the accepted evaluation vouched for?"""
    if load_cases(agent_dir) is None:
        return []
    baseline = read_baseline(agent_dir)
    if baseline is None:  # the gate holds from an agent's first accepted evaluation on
        return []
    if baseline.get("fingerprint") != fingerprint(release):
        return [("fingerprint", "the prompt, model settings or tool contracts changed since the accepted evaluation: "
                 f"run `aifactory eval {release.spec.name} --accept` and commit the new baseline")]  # fmt: skip
    return []
