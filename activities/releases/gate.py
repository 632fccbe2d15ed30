"""The admission gate: an agent runs in the factory only if it meets the deployment standard.

Not workflow-safe (reads files). One `Problem` per gap: file, field, what was
expected. `aifactory check` prints them; the worker's release registry
(`activities.releases.registry`) admits only releases with none, so a run
started past the CLI and the client is held to the same gate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from activities.releases.loader import LoadedAgent, Problem, _rel, discover
from activities.tools.catalog import CATALOG
from contracts.agent import WITHDRAW, AgentRelease, semver_key
from contracts.schema import schema_definition_problems, schema_problems
from policies.loader import PolicyFileError, PolicyStore

BASELINE = "baseline.json"
CASES = "cases.yaml"
#: Data classes whose runs are never started or decided in clear text.
NEEDS_ENCRYPTION = frozenset({"pii", "financial", "health", "credentials"})


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
    if spec.required_per_item:  # only where set, so agents without them keep their fingerprint
        material["required_per_item"] = spec.required_per_item
    if spec.answer_tool:
        material["answer_tool"] = spec.answer_tool
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def read_baseline(agent_dir: Path) -> dict[str, Any] | None:
    path = agent_dir / "eval" / BASELINE
    return json.loads(path.read_text()) if path.exists() else None


def evaluation_problems(agent_dir: Path, release: AgentRelease) -> list[tuple[str, str]]:
    """(field, problem) of `eval/baseline.json`: is what ships what the accepted evaluation vouched for?"""
    if not (agent_dir / "eval" / CASES).exists():
        return []
    baseline = read_baseline(agent_dir)
    if baseline is None:  # the gate holds from an agent's first accepted evaluation on
        return []
    if baseline.get("fingerprint") != fingerprint(release):
        return [("fingerprint", "the prompt, model settings or tool contracts changed since the accepted evaluation: "
                 f"run `aifactory eval {release.spec.name} --accept` and commit the new baseline")]  # fmt: skip
    return []


def check_agent(agent: LoadedAgent, *, evaluation_gate: bool = True, policies: PolicyStore | None = None) -> list[Problem]:
    """Every gap in the deployment standard; `evaluation_gate` also asks for an accepted evaluation."""
    problems = list(agent.problems)
    release = agent.release
    if release is None:
        return problems
    spec = release.spec
    spec_file = _rel(agent.folder / "agent.yaml")
    if spec.name != agent.folder.name:
        problems.append(Problem(spec_file, "name", f"must equal the folder name {agent.folder.name!r}"))
    runbook = agent.folder / spec.runbook
    if not runbook.is_file() or not runbook.read_text(encoding="utf-8").strip():
        problems.append(Problem(spec_file, "runbook", f"file {spec.runbook!r} must exist in the agent folder and not be empty"))
    for field in ("input_schema", "output_schema"):
        for p in schema_definition_problems(getattr(spec, field)):
            problems.append(Problem(spec_file, field, p))
    for tool in spec.tools:
        if tool not in CATALOG:
            known = ", ".join(sorted(CATALOG))
            problems.append(Problem(spec_file, "tools", f"{tool!r} is not in the tool catalog (known: {known})"))
    for tool in spec.required_tools:
        if tool not in spec.tools:
            problems.append(Problem(spec_file, "required_tools", f"{tool!r} must also be listed in tools"))
    if spec.answer_tool is not None and spec.answer_tool not in spec.tools:
        problems.append(Problem(spec_file, "answer_tool", f"{spec.answer_tool!r} must also be listed in tools"))
    if len(set(spec.tools)) != len(spec.tools):
        problems.append(Problem(spec_file, "tools", "each tool is listed once"))
    if spec.clear_payloads:
        sensitive = sorted({c.value for t in spec.tools if t in CATALOG for c in CATALOG[t].meta.data_classes} & NEEDS_ENCRYPTION)
        if sensitive:
            problems.append(Problem(spec_file, "clear_payloads", f"not allowed: the agent's tools touch {', '.join(sensitive)} data, whose runs must be encrypted"))
    if spec.envelope is None:
        problems.append(Problem(spec_file, "envelope", "a cost envelope is required (limit_usd per day or month, per tenant or global)"))
    if spec.rollback_to != WITHDRAW and semver_key(spec.rollback_to) >= semver_key(spec.version):
        problems.append(Problem(spec_file, "rollback_to", f"must be a version earlier than {spec.version}"))
    try:
        (policies or PolicyStore()).get(spec.policy)
    except PolicyFileError as e:
        problems.append(Problem(spec_file, "policy", f"bundle {spec.policy!r} cannot be used: {e}"))
    if evaluation_gate:
        for field, message in evaluation_problems(agent.folder, release):
            problems.append(Problem(_rel(agent.folder / "eval" / BASELINE), field, message))
    if not any(problems) and not schema_definition_problems(spec.input_schema):
        for name, sample in agent.samples.items():
            for p in schema_problems(spec.input_schema, sample):
                problems.append(Problem(_rel(agent.folder / "samples" / f"{name}.json"), "(input)", p))
    return problems


def check_all(agents_dir: Path) -> dict[str, list[Problem]]:
    agents = discover(agents_dir)
    if not agents:
        return {str(agents_dir): [Problem(str(agents_dir), "(folder)", "no agent folders found")]}
    return {a.folder.name: check_agent(a) for a in agents}
