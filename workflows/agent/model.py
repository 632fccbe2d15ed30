"""One model call of an agent run: the request built from the state, the activity, the bookkeeping after.

Workflow-safe: messages reach the model activity as deltas against a transcript kept outside history;
if the store lost the transcript, the run resends the conversation it keeps in worker memory (once).
"""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import groupby

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.model import ChatMessage, ModelCallInput, ModelCallResult
    from contracts.run import RunState
    from contracts.tools import ToolOutcome
    from contracts.wire import Activity

from .admission import admit_first_call
from .envelope import economise, envelope_alert, envelope_ref, envelope_spent
from .state import AgentState
from .stop import cancellable

#: Said once a procedure's required tool calls are done, before asking for the final answer.
ANSWER_NOW = (
    "The required tool calls are done. Reply now with only the final JSON answer, "
    "taking its values from the tool results above."
)
#: A model call heartbeats while it waits, so a kill switch's cancellation reaches it (see `call_model`).
#: Calls allowed longer than `LONG_MODEL_CALL` seconds also get a heartbeat timeout, so a worker that
#: dies mid-call is noticed within `MODEL_HEARTBEAT` instead of at the call's timeout; shorter calls
#: leave it to their start-to-close timeout (each activity timeout is a timer the server keeps).
MODEL_HEARTBEAT = timedelta(seconds=15)
LONG_MODEL_CALL = 60.0
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
    non_retryable_error_types=[E.MODEL_CALL_REJECTED, E.TRANSCRIPT_MISSING, E.MODEL_RESPONSE_TOO_LARGE],
)


def next_required(st: AgentState) -> str | None:
    """The first required tool not yet called to a conclusion (ran, denied or failed) as often as
    the procedure asks: once, or once per input item (`required_per_item`)."""
    step = next_step(st)
    return step[0] if step is not None else None


def next_step(st: AgentState) -> tuple[str, int | None] | None:
    """The next required call: the tool, and for a per-item tool the index of the item it is for."""
    concluded = [r.tool for r in st.carry.tool_calls if r.outcome in (ToolOutcome.OK, ToolOutcome.DENIED, ToolOutcome.FAILED)]
    if not st.spec.required_per_item:  # the procedure as runs recorded before per-item steps follow it
        tool = next((t for t in st.spec.required_tools if t not in concluded), None)
        return (tool, None) if tool is not None else None
    asked: dict[str, int] = {}
    for tool in procedure(st):
        asked[tool] = asked.get(tool, 0) + 1
        if asked[tool] > concluded.count(tool):
            return tool, (asked[tool] - 1 if tool in st.spec.required_per_item else None)
    return None


def item_hint(st: AgentState, tool: str, index: int) -> ChatMessage:
    """Which input item a per-item call is for (measured: without it the local model called the
    second invoice's steps with the first invoice's reference)."""
    field = st.spec.required_per_item[tool]
    items = st.inp.input[field] if st.inp is not None else []
    return ChatMessage(role="user", content=f"Next: `{tool}` for {field} item {index + 1} of {len(items)}: {json.dumps(items[index])}")


def procedure(st: AgentState) -> list[str]:
    """The required calls in order, per-item tools repeated item by item (consecutive ones interleaved)."""
    spec, given = st.spec, (st.inp.input if st.inp is not None else {})
    steps: list[str] = []
    for field, run in groupby(spec.required_tools, key=spec.required_per_item.get):
        group = list(run)
        items = given.get(field) if field is not None and isinstance(given, dict) else None
        steps.extend(group if field is None else group * len(items if isinstance(items, list) else []))
    return steps


async def call_model(st: AgentState, transcript_id: str, offered: list[str]) -> ModelCallResult:
    """One model step: the pending messages sent, the reply taken, usage and transcript position kept."""
    spec, carry = st.spec, st.carry
    model = st.model()
    st.set_state(RunState.CALLING_MODEL, f"model {model.name}")
    # A procedure (`required_tools`): force each required tool in turn, then ask for the answer as JSON.
    step = next_step(st)
    force = step[0] if step is not None else None
    final = bool(spec.required_tools) and force is None
    if step is not None and step[1] is not None:
        carry.pending.append(item_hint(st, *step))
    if final and not st.answer_asked:
        st.answer_asked = True
        carry.pending.append(ChatMessage(role="user", content=ANSWER_NOW))
    base, delta = carry.transcript_seq, list(carry.pending)
    envelope = envelope_ref(st)
    resend = False
    while True:
        # A conversation that starts here opens with the release's prompt, which the model
        # activity takes from the worker's own registry (runs recorded before sent it in `delta`).
        prompt = st.release.prompt_ref if (base == 0 and not st.legacy) else None
        request = ModelCallInput(
            transcript_id=transcript_id, base_seq=base, delta=delta, model=model,
            tool_names=[] if final else offered, force_tool=force,
            response_schema=spec.output_schema if final else None, step=carry.step, settled=carry.settled,
            release_version=st.release.release_version, envelope=envelope, admission=st.admission,
            prompt=prompt,
        )  # fmt: skip
        try:
            result = await cancellable(
                st,
                workflow.start_activity(
                    Activity.CALL_MODEL,
                    request,
                    result_type=ModelCallResult,
                    start_to_close_timeout=timedelta(seconds=model.timeout_seconds + 5),
                    heartbeat_timeout=MODEL_HEARTBEAT if model.timeout_seconds > LONG_MODEL_CALL else None,
                    retry_policy=MODEL_RETRY,
                    cancellation_type=ActivityCancellationType.TRY_CANCEL,
                    summary=f"step {carry.step}: {model.name}",
                ),
            )
            if result.budget is not None and not result.budget.granted:
                assert envelope is not None
                await envelope_spent(st, envelope, result.budget)  # returns once an operator resumes the run
                continue
            break
        except ActivityError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            if kind == E.TRANSCRIPT_MISSING and not resend and st.memory is not None:
                base, delta, resend = 0, st.memory + list(carry.pending), True
                continue
            st.set_state(RunState.FAILED, "nothing")
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            if kind in (E.MODEL_CALL_REJECTED, E.TRANSCRIPT_MISSING, E.MODEL_RESPONSE_TOO_LARGE):
                raise st.fail(f"model call failed: {message}", kind) from None
            if kind == E.POLICY_FILE_ERROR:
                raise st.fail(f"policy {spec.policy!r} could not be loaded: {message}", kind) from None
            raise st.fail(f"model call failed after retries: {message}", E.MODEL_UNAVAILABLE) from None
    for pct in result.budget.crossed if (result.budget and envelope) else ():
        await envelope_alert(st, envelope, pct, result.budget)
    economise(st, result.budget)
    _keep(st, result, base, delta, prompt is not None)
    if st.admission is not None:  # after the bookkeeping: a call an older worker made is counted
        await admit_first_call(st, result.admitted)
    return result


def _keep(st: AgentState, result: ModelCallResult, base: int, delta: list[ChatMessage], prompted: bool) -> None:
    """After a call: its usage counted, the conversation remembered, the transcript position moved on."""
    carry = st.carry
    carry.usage = carry.usage + result.usage
    st.last_call_cost = result.usage.cost_usd
    carry.context_tokens = result.usage.prompt_tokens
    if st.memory is not None:
        st.memory = list(delta) if base == 0 else st.memory + delta
        st.memory.append(result.message)
    if result.prompt_sha256:
        st.sent_prompt = result.prompt_sha256
    carry.transcript_seq = base + (1 if prompted else 0) + len(delta) + 1
    carry.pending = []
    carry.settled = []
