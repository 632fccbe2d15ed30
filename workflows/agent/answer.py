"""The answer a tool gives (`answer_tool`): a run whose answer is bookkeeping over tool results
ends with that tool's result instead of asking the model to copy it.

Workflow-safe: reads what the tool gate recorded in this step (no I/O).
"""

from __future__ import annotations

import json
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.model import ToolCall
    from contracts.schema import schema_problems
    from contracts.tools import ToolOutcome

from .state import AgentState


def answer_from_tool(st: AgentState, calls: list[ToolCall]) -> Any | None:
    """The result of this step's successful `answer_tool` call, if it validates as the answer."""
    tool = st.spec.answer_tool
    if tool is None:
        return None
    ids = {c.id for c in calls if c.name == tool}
    ran = [r.call_id for r in st.carry.tool_calls if r.call_id in ids and r.outcome is ToolOutcome.OK]
    result = next((m.content for m in reversed(st.carry.pending) if m.role == "tool" and m.tool_call_id in ran), None)
    if result is None:
        return None
    answer = json.loads(result)
    problems = schema_problems(st.spec.output_schema, answer)
    if problems:  # the model answers instead, and is held to the schema as usual
        workflow.logger.warning("%s's result is not a valid answer (%s): the model answers", tool, "; ".join(problems))
        return None
    return answer
