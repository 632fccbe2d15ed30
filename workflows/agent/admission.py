"""Admission of an agent run: its policy and the kill switches, as the worker's deployment resolves them.

Workflow-safe: the store is read by local activities (recorded in history), never here.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.control import Admitted, KillSwitchState, SwitchQuery
    from contracts.policy import PolicySet
    from contracts.run import RunState
    from contracts.wire import Activity

from .state import AgentState

#: Admission reads the store; while it is unreachable the run waits at its start rather than failing.
ADMIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
POLICY_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=[E.POLICY_FILE_ERROR])


async def resolve_policy(st: AgentState) -> PolicySet:
    return await workflow.execute_local_activity(
        Activity.RESOLVE_POLICY,
        st.spec.policy,
        result_type=PolicySet,
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=POLICY_RETRY,
    )


async def check_kill_switch(st: AgentState) -> KillSwitchState | None:
    return await workflow.execute_local_activity(
        Activity.CHECK_KILL_SWITCH,
        SwitchQuery(agent=st.spec.name, tenant=st.tenant),
        result_type=KillSwitchState | None,
        start_to_close_timeout=timedelta(seconds=10),
    )


def refuse_if_switched(st: AgentState, switch: KillSwitchState | None) -> None:
    if switch is not None:
        st.switched = switch
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(f"refused at start: {switch.describe()}", E.RUN_STOPPED)


async def admit_first_call(st: AgentState, admitted: Admitted | None) -> None:
    """Take the first call's admission: refused under a kill switch, else gated by the policy it resolved."""
    st.admission = None
    if admitted is None:  # a worker from before admission made the call: ask as those runs did
        refuse_if_switched(st, await check_kill_switch(st))
        admitted = Admitted(policy=await resolve_policy(st))
    refuse_if_switched(st, admitted.switch)
    st.carry.policy = admitted.policy
