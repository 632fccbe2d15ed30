"""The start of an agent run: its input read, and what governs it settled (release, policy, admission).

Workflow-safe: what governs a run comes from the worker's deployment (`admit_run`, a local activity),
never from the input; runs recorded before that (`start_as_recorded`) replay through their own protocol.
"""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from contracts import errors as E
    from contracts import payloads
    from contracts.control import Admission, RunAdmission, RunAdmitted
    from contracts.model import ChatMessage, system_prompt
    from contracts.run import AgentRunInput, RunState, run_workflow_id
    from contracts.schema import schema_problems
    from contracts.wire import Activity

from .admission import ADMIT_RETRY, check_kill_switch, refuse_if_switched, resolve_policy
from .listings import label_run
from .patches import KILL_SWITCH_PATCH, POLICY_GATE_PATCH
from .state import AgentState


def problems(e: ValidationError) -> str:
    """A validation error as one line: each field and what was wrong with it."""
    return "; ".join(f"field {'.'.join(map(str, err['loc'])) or '(root)'!r}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors())


def read_input(st: AgentState, raw: RawValue) -> AgentRunInput:
    """The run input, or the run fails at once with a typed error (never a retried task)."""
    payload = raw.payload
    if payloads.is_undecodable(payload):
        raise st.fail(
            f"the run's input could not be decrypted ({payloads.reason(payload)}): start it with a client that "
            "uses the workers' key ring", E.PAYLOAD_UNDECODABLE,
        )  # fmt: skip
    if payloads.is_unsealed(payload):
        st.sealed = False
        payload = payloads.unwrap(payload)
    try:
        return workflow.payload_converter().from_payload(payload, AgentRunInput)
    except ValidationError as e:
        if st.legacy:  # as such runs failed when they were recorded
            raise
        raise st.fail(f"run input refused: {problems(e)}", E.INVALID_RUN_INPUT) from None
    except Exception as e:
        raise st.fail(f"run input is not an AgentRunInput: {type(e).__name__}: {e}"[:500], E.INVALID_RUN_INPUT) from None


async def admit_run(st: AgentState, inp: AgentRunInput) -> None:
    """Settle the release, policy and admission from the worker's own deployment, never the input."""
    info = workflow.info()
    expected = run_workflow_id(inp.agent_name, inp.tenant, inp.run_key)
    if info.workflow_id != expected:
        raise st.fail(f"run input refused: the workflow id must be the run's business key {expected!r}", E.INVALID_RUN_INPUT)
    if inp.carry is not None:
        # Only the run's own continue-as-new writes a carry: a start that brings one is refused.
        lineage = inp.carry.lineage
        if info.continued_run_id is None or (lineage and lineage != info.first_execution_run_id):
            raise st.fail("run input refused: field 'carry' is written only by the run's own continue-as-new", E.INVALID_RUN_INPUT)
        release = inp.carry.release or (inp.release.pinned() if inp.release else None)
        if release is None:
            raise st.fail("run input refused: a continued run must carry its release", E.INVALID_RUN_INPUT)
        st.release = release
        st.restore(inp.carry)
    else:
        admitted = await workflow.execute_local_activity(
            Activity.ADMIT_RUN,
            RunAdmission(agent=inp.agent_name, version=inp.version, tenant=inp.tenant),
            result_type=RunAdmitted,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ADMIT_RETRY,
        )
        st.release = admitted.release
        if admitted.refused is not None:
            st.set_state(RunState.FAILED, "nothing")
            raise st.fail(admitted.refused.message, admitted.refused.type)
        assert admitted.release is not None and admitted.policy is not None
        st.carry.policy = admitted.policy
    label_run(st)
    spec = st.spec
    if not st.sealed and not spec.clear_payloads:
        raise st.fail(
            f"run input was sent in clear text, and runs of {spec.name} must be encrypted: start it with `aifactory run`, "
            "FactoryClient, the gateway, or `temporal workflow start --codec-endpoint ...` (see the README)",
            E.PAYLOAD_NOT_ENCRYPTED,
        )  # fmt: skip
    if inp.carry is None:
        found = schema_problems(spec.input_schema, inp.input)
        if found:
            raise st.fail(f"run input does not match agent {spec.name!r}: {'; '.join(found)}", E.INVALID_RUN_INPUT)


async def start_as_recorded(st: AgentState, inp: AgentRunInput) -> None:
    """Runs recorded before workers resolved releases: the release came with the input, and
    admission as their protocol said (in the first model call, or two local activities)."""
    assert inp.release is not None
    st.release = inp.release
    st.restore(inp.carry)
    spec = inp.release.spec
    label_run(st)
    found = schema_problems(spec.input_schema, inp.input)
    if found:
        raise st.fail(f"run input does not match agent {spec.name!r}: {'; '.join(found)}", E.INVALID_RUN_INPUT)
    if inp.protocol >= 3:
        if st.carry.policy is None:  # the first model call checks the switches and resolves the policy
            st.admission = Admission(agent=spec.name, tenant=inp.tenant, policy=spec.policy)
    else:
        if st.carry.policy is None and (inp.protocol >= 1 or workflow.patched(POLICY_GATE_PATCH)):
            st.carry.policy = await resolve_policy(st)
        if inp.carry is None and (inp.protocol >= 2 or workflow.patched(KILL_SWITCH_PATCH)):
            refuse_if_switched(st, await check_kill_switch(st))


def opening_messages(st: AgentState, legacy: bool) -> list[ChatMessage]:
    """The first messages of a fresh run: its input (after the prompt, for runs that sent it themselves)."""
    inp = st.inp
    assert inp is not None
    opening = [ChatMessage(role="system", content=_system_prompt(st))] if legacy else []
    return [*opening, ChatMessage(role="user", content=json.dumps(inp.input, sort_keys=True))]


def _system_prompt(st: AgentState) -> str:
    """The opening system message of runs recorded with their release's prompt in the input."""
    assert st.inp is not None and st.inp.release is not None
    release = st.inp.release
    return system_prompt(release.prompt, release.spec.output_schema)
