"""What an agent folder brings to run offline: scripted model rules and seed data for its tools.

Not workflow-safe (imports files from agent folders, writes the store). By convention:

- `agents/<name>/scripted.py` defines `respond(body) -> Reply`: the agent's stand-in for a
  language model (`activities.model.scripted`). `scripted_model` serves every agent's rules
  behind one OpenAI-compatible endpoint and hands each request to the agent whose prompt
  opens it, so `--model scripted` and the tests run any agent without a model.
- `agents/<name>/seed/<family>.json` holds rows for a tool family's tables; `seed_agents`
  loads them through that family's `FAMILY.seed`, so the face names no family. A string value
  `file:<path>` in a row names a file in the agent folder; the family gets its absolute path
  (a family that stores documents, say, seeds them from files the agent ships).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from activities.model.scripted import Reply, Responder, ScriptedModel
from activities.releases.loader import discover

SCRIPTED_FILE = "scripted.py"
SEED_DIR = "seed"


class ScriptedRulesError(ValueError):
    """An agent's `scripted.py` cannot be loaded or defines no `respond`."""


def load_rules(agent_dir: Path) -> Responder | None:
    """The agent's `respond` from `scripted.py`, or None when the folder has none.

    Raises:
        ScriptedRulesError: the file exists but does not define a callable `respond`.
    """
    path = agent_dir / SCRIPTED_FILE
    if not path.exists():
        return None
    module = load_module(path, f"aifactory_scripted_{re.sub(r'[^0-9A-Za-z_]', '_', agent_dir.name)}")
    respond = getattr(module, "respond", None)
    if not callable(respond):
        raise ScriptedRulesError(f"{path}: defines no function `respond(body) -> Reply`")
    return respond


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptedRulesError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def agent_rules(agents_dir: Path) -> dict[str, tuple[str, Responder]]:
    """Agent name -> (its prompt, its scripted rules), for every agent folder that has both."""
    out: dict[str, tuple[str, Responder]] = {}
    for agent in discover(agents_dir):
        respond = load_rules(agent.folder)
        if respond is not None and agent.release is not None:
            out[agent.name] = (agent.release.prompt.strip(), respond)
    return out


def router(rules: dict[str, tuple[str, Responder]]) -> Responder:
    """One responder for many agents: a request goes to the agent whose prompt its system message
    holds (the longest such prompt, should one agent's prompt contain another's)."""
    by_length = sorted(rules.items(), key=lambda item: -len(item[1][0]))

    def respond(body: dict[str, Any]) -> Reply:
        system = next((str(m.get("content") or "") for m in body.get("messages", []) if m.get("role") == "system"), "")
        for _, (prompt, rule) in by_length:
            if prompt and prompt in system:
                return rule(body)
        known = ", ".join(sorted(rules)) or "none"
        return Reply.error(400, f"no agent's scripted rules answer this prompt (agents with {SCRIPTED_FILE}: {known})")

    return respond


def scripted_model(agents_dir: Path) -> ScriptedModel:
    """The offline model for every agent under `agents_dir` that carries `scripted.py`."""
    return ScriptedModel(router(agent_rules(agents_dir)), model_name="scripted")


FILE_PREFIX = "file:"


def seed_rows(agent_dir: Path) -> dict[str, list[dict]]:
    """Family name -> rows, from the agent's `seed/<family>.json` files (`file:` values made absolute)."""
    return {
        path.stem: [_with_files(row, agent_dir) for row in json.loads(path.read_text())]
        for path in sorted((agent_dir / SEED_DIR).glob("*.json"))
    }


def _with_files(row: dict, agent_dir: Path) -> dict:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(FILE_PREFIX):
            target = (agent_dir / value[len(FILE_PREFIX) :]).resolve()
            if not target.is_relative_to(agent_dir.resolve()) or not target.is_file():
                raise ValueError(f"{agent_dir / SEED_DIR}: {value!r} names no file inside the agent folder")
            return str(target)
        return value

    return {key: resolve(value) for key, value in row.items()} if isinstance(row, dict) else row


def seed_agents(agents_dir: Path, db_url: str, families: dict[str, Callable[..., Any] | None] | None = None) -> int:
    """Load every agent's seed files into the store through their families' `seed`. Returns the rows.

    Args:
        agents_dir: the agents folder.
        db_url: the store.
        families: family name -> its seed function (default: the installed families').

    Raises:
        ValueError: a seed file names a family that is not installed or that takes no seed data.
    """
    if families is None:
        from activities.tools.families import installed_families

        families = {f.name: f.seed for f in installed_families()}
    total = 0
    for agent_dir in sorted(p for p in agents_dir.iterdir() if p.is_dir()):
        for family, rows in seed_rows(agent_dir).items():
            seed = families.get(family)
            if seed is None:
                raise ValueError(
                    f"{agent_dir / SEED_DIR / (family + '.json')}: no installed tool family {family!r} takes seed data "
                    f"(installed: {', '.join(sorted(n for n, s in families.items() if s)) or 'none'})"
                )
            seed(db_url, rows)
            total += len(rows)
    return total
