"""Writes that ran out of retries: the run parks until an operator retries the call or gives it up.

Workflow-safe: a person decides; the run never goes on as if a write had happened.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.classes import SideEffect
    from contracts.control import StopAnswer, ToolResolution
    from contracts.run import RunState
    from contracts.tools import ToolCallRecord, ToolOutcome

from .listings import set_awaiting_operator, summarize
from .notify import notify
from .patches import WRITES_PARK_PATCH
from .state import AgentState
from .stop import check_stop


def write_ran_out(meta, cause: BaseException | None) -> bool:
    """A write or external call that failed for a reason that may pass (its retries ran out, or it
    timed out), as opposed to one the tool refused for good (a non-retryable error)."""
    if meta.side_effect is SideEffect.READ or (isinstance(cause, ApplicationError) and cause.non_retryable):
        return False
    return workflow.patched(WRITES_PARK_PATCH)


async def await_operator(st: AgentState, record: ToolCallRecord, index: int, message: str) -> ToolResolution:
    """Park until an operator retries the call or gives it up (or a kill switch stops the run)."""
    tool, spec = record.tool, st.spec
    st.resolution = None
    st.phase, st.waiting_on = RunState.AWAITING_OPERATOR, f"an operator: {tool} could not be done"
    set_awaiting_operator(True)
    workflow.set_current_details(
        f"**awaiting operator** · `{tool}` {summarize(record.arguments)} ran out of retries: {message[:200]}"
        f" · `aifactory tool retry {workflow.info().workflow_id} --as YOU` or `tool give-up ... --reason ...`"
    )
    st.stuck += 1
    await notify(
        st, "tool_stuck", f"{record.step}.{index}/stuck/{st.stuck}", f"{tool} for {spec.name} could not be done: an operator must retry or give up",
        group=None, recipients=[spec.escalation_contact], channels=st.owner_channels(),
        details={"tool": tool, "step": record.step, "arguments": summarize(record.arguments, 200), "error": message[:500]},
    )  # fmt: skip
    try:
        await workflow.wait_condition(lambda: st.resolution is not None or st.stop is not None)
    finally:
        set_awaiting_operator(False)
    if st.stop is not None:
        st.carry.tool_calls.append(record.model_copy(update={"outcome": ToolOutcome.FAILED, "error": f"{message}; the run was stopped while it waited"}))
        check_stop(st)
    assert st.resolution is not None
    st.set_state(RunState.CALLING_TOOL, f"tool {tool}")
    return st.resolution


def take_resolution(st: AgentState, resolution: ToolResolution) -> StopAnswer:
    """An operator's answer to a parked call: retry it, or give it up (with a reason)."""
    state = st.phase.value
    if st.phase is not RunState.AWAITING_OPERATOR:
        raise ApplicationError(f"this run is not waiting for an operator (it is {state})", type=E.MESSAGE_REFUSED, non_retryable=True)
    if resolution.action == "give_up" and not resolution.reason.strip():
        raise ApplicationError("giving up a call needs a reason", type=E.MESSAGE_REFUSED, non_retryable=True)
    st.resolution = resolution
    return StopAnswer(acknowledged=True, state=state)
