"""Least privilege: a model may only call tools its agent was granted.

Workflow-safe, pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.agent import AgentSpec
from contracts.tools import ToolOutcome


@dataclass(frozen=True)
class GrantDecision:
    allowed: bool
    outcome: ToolOutcome
    reason: str


def check_grant(spec: AgentSpec, tool: str, known_tools: set[str]) -> GrantDecision:
    """Allow a call only for a tool that exists and is in the agent's grant."""
    if tool not in spec.tools:
        return GrantDecision(False, ToolOutcome.NOT_GRANTED, f"tool {tool!r} is not granted to agent {spec.name!r}")
    if tool not in known_tools:
        return GrantDecision(False, ToolOutcome.UNKNOWN_TOOL, f"tool {tool!r} is not in this worker's catalog")
    return GrantDecision(True, ToolOutcome.OK, "granted")
