"""Circuit breakers of an agent run: the cost cap, the context ceiling, and repeated tool calls.

Workflow-safe: pure checks over the state; a breaker's patch marker is written only by a run that trips it.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.run import RunState
    from contracts.tools import ToolCallRecord, ToolOutcome

from .patches import BREAKERS_PATCH
from .state import AgentState


def check_step_breakers(st: AgentState) -> None:
    """Before a model call: end the run past its cost cap or its context ceiling."""
    spec, carry = st.spec, st.carry
    if spec.cost_limit_usd > 0 and carry.usage.cost_usd + st.last_call_cost > spec.cost_limit_usd:
        raise st.fail(
            f"run cost ${carry.usage.cost_usd:.4f} plus the next call would pass the cap ${spec.cost_limit_usd:.4f}",
            E.BUDGET_EXCEEDED,
        )
    ceiling = spec.breakers.max_context_tokens
    if carry.context_tokens >= ceiling and workflow.patched(BREAKERS_PATCH):
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(
            f"circuit breaker: the conversation reached {carry.context_tokens} prompt tokens, the agent's ceiling is {ceiling}",
            E.CONTEXT_LIMIT_EXCEEDED,
        )


def repeat_breaker(st: AgentState, record: ToolCallRecord) -> None:
    """End the run before one tool runs with the same arguments once more than the agent allows."""
    limit = st.spec.breakers.max_repeated_calls
    ran = sum(
        1 for r in st.carry.tool_calls if r.outcome is ToolOutcome.OK and r.tool == record.tool and r.arguments == record.arguments
    )
    if ran >= limit and workflow.patched(BREAKERS_PATCH):
        why = f"circuit breaker: {record.tool} already ran {ran} times with these arguments (limit {limit})"
        st.ran_nothing(record, ToolOutcome.STOPPED, why)
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(why, E.REPEATED_TOOL_CALL)
