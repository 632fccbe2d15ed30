"""Agents as versioned data: load `agents/<name>/` into an `AgentRelease`.

Not workflow-safe (reads files). An agent folder holds `agent.yaml` (the spec),
`prompt.md` (the system prompt; its SHA-256 becomes part of the release
version), `runbook.md`, and optionally `samples/*.json` (example run inputs).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from contracts.agent import AgentRelease, AgentSpec
from contracts.errors import FactoryError

SPEC_FILE = "agent.yaml"
PROMPT_FILE = "prompt.md"


@dataclass(frozen=True)
class Problem:
    """One way an agent misses the deployment standard."""

    file: str
    field: str
    expected: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.expected}"


@dataclass
class LoadedAgent:
    folder: Path
    release: AgentRelease | None
    problems: list[Problem] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.release.spec.name if self.release else self.folder.name


class AgentNotFound(FactoryError, LookupError):
    pass


def prompt_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _describe(err: dict[str, Any]) -> str:
    if err["type"] == "missing":
        return "required, but missing"
    if err["type"] == "extra_forbidden":
        return "not a field of the agent spec"
    return err["msg"].removeprefix("Value error, ")


def load_agent(folder: Path) -> LoadedAgent:
    """Read one agent folder; problems are collected, never raised."""
    spec_path = folder / SPEC_FILE
    spec_file = _rel(spec_path)
    problems: list[Problem] = []
    if not spec_path.is_file():
        return LoadedAgent(folder, None, [Problem(spec_file, "(file)", "missing: every agent needs an agent.yaml")])
    try:
        data = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        return LoadedAgent(folder, None, [Problem(spec_file, "(file)", f"not valid YAML: {e}")])
    if not isinstance(data, dict):
        return LoadedAgent(folder, None, [Problem(spec_file, "(file)", "must be a YAML mapping of spec fields")])
    try:
        spec = AgentSpec.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            problems.append(Problem(spec_file, loc, _describe(err)))
        return LoadedAgent(folder, None, problems)
    prompt_path = folder / PROMPT_FILE
    if not prompt_path.is_file() or not prompt_path.read_text(encoding="utf-8").strip():
        problems.append(Problem(_rel(prompt_path), "(file)", "missing or empty: the agent's system prompt"))
        return LoadedAgent(folder, None, problems)
    prompt = prompt_path.read_text(encoding="utf-8")
    release = AgentRelease(spec=spec, prompt=prompt, prompt_sha256=prompt_sha256(prompt))
    samples: dict[str, Any] = {}
    for sample in sorted((folder / "samples").glob("*.json")):
        try:
            samples[sample.stem] = json.loads(sample.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            problems.append(Problem(_rel(sample), "(file)", f"not valid JSON: {e.msg} at line {e.lineno}"))
    return LoadedAgent(folder, release, problems, samples)


def discover(agents_dir: Path) -> list[LoadedAgent]:
    """Every agent folder under `agents_dir`, sorted by name."""
    if not agents_dir.is_dir():
        return []
    return [load_agent(p) for p in sorted(agents_dir.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))]


def find_agent(agents_dir: Path, name: str) -> LoadedAgent:
    folder = agents_dir / name
    if not folder.is_dir():
        known = ", ".join(a.folder.name for a in discover(agents_dir)) or "none"
        raise AgentNotFound(f"no agent {name!r} in {agents_dir} (known: {known})")
    return load_agent(folder)
