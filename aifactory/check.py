"""The admission gate: an agent runs in the factory only if it meets the deployment standard.

Not workflow-safe. One `Problem` per gap: file, field, what was expected.
"""

from __future__ import annotations

from pathlib import Path

from activities.tools.catalog import CATALOG
from aifactory.evalset import BASELINE, gate_problems
from aifactory.registry import LoadedAgent, Problem, _rel, discover
from contracts.agent import WITHDRAW, semver_key
from contracts.schema import schema_definition_problems, schema_problems
from policies.loader import PolicyFileError, PolicyStore


def check_agent(agent: LoadedAgent, *, evaluation_gate: bool = True) -> list[Problem]:
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
    if len(set(spec.tools)) != len(spec.tools):
        problems.append(Problem(spec_file, "tools", "each tool is listed once"))
    if spec.envelope is None:
        problems.append(Problem(spec_file, "envelope", "a cost envelope is required (limit_usd per day or month, per tenant or global)"))
    if spec.rollback_to != WITHDRAW and semver_key(spec.rollback_to) >= semver_key(spec.version):
        problems.append(Problem(spec_file, "rollback_to", f"must be a version earlier than {spec.version}"))
    try:
        PolicyStore().get(spec.policy)
    except PolicyFileError as e:
        problems.append(Problem(spec_file, "policy", f"bundle {spec.policy!r} cannot be used: {e}"))
    if evaluation_gate:
        for field, message in gate_problems(agent.folder, release):
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
