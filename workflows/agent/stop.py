"""Stopping an agent run: the kill switch's order, cancelling the activity in flight, ending at a step boundary.

Workflow-safe: no I/O. A stop is acknowledged at once; the run ends with `RunStopped` at its next boundary.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.control import StopAnswer, StopOrder
    from contracts.run import RunState
    from contracts.tools import ToolCallRecord, ToolOutcome

from .listings import unlist_awaiting
from .state import AgentState


def take_stop(st: AgentState, order: StopOrder) -> StopAnswer:
    """A kill switch: from the acknowledgement on the run starts no activity, cancels the one
    in flight, and ends at the step boundary with `RunStopped` naming the operator and reason."""
    state = st.phase.value
    if st.stop is None:
        st.stop = order
        st.phase, st.waiting_on = RunState.STOPPING, "nothing"
        if st.inflight is not None and not st.inflight.done():
            st.inflight.cancel()
    return StopAnswer(acknowledged=True, state=state)


def check_stop(st: AgentState, record: ToolCallRecord | None = None) -> None:
    """At a step boundary: end the run if a kill switch stopped it (the call about to run is not run)."""
    order = st.stop
    if order is None:
        return
    if st.listed_awaiting and not st.legacy:  # it waits no more: say so in the listings
        unlist_awaiting(st)
    if record is not None:
        st.ran_nothing(record, ToolOutcome.STOPPED, "not run: the run was stopped")
    st.set_state(RunState.FAILED, "nothing")
    switch = f" (kill switch #{order.switch_id})" if order.switch_id is not None else ""
    raise st.fail(f"stopped by {order.by}{switch}: {order.reason}", E.RUN_STOPPED)


async def cancellable(st: AgentState, handle: workflow.ActivityHandle) -> Any:
    """Await an activity that a kill switch may cancel; a cancelled one ends the run as stopped."""
    st.inflight = handle
    try:
        return await handle
    except (ActivityError, asyncio.CancelledError):
        check_stop(st)
        raise
    finally:
        st.inflight = None
