"""Kept for imports that predate `agents/it-triage/scripted.py`: the reference agent's scripted model.

Not workflow-safe. The rules live with the agent now (`aifactory.scripted_agents` finds them by
convention); new code serves every agent's rules with `scripted_model(agents_dir)`.
"""

from __future__ import annotations

from pathlib import Path

from activities.model.scripted import ScriptedModel
from aifactory.scripted_agents import load_module

AGENT_DIR = Path(__file__).resolve().parents[1] / "agents" / "it-triage"
_rules = load_module(AGENT_DIR / "scripted.py", "aifactory_scripted_it_triage")

RULES = _rules.RULES
classify = _rules.classify
triage_responder = _rules.respond


def triage_model() -> ScriptedModel:
    return ScriptedModel(triage_responder, model_name="scripted-triage")
