"""The tool gate of an agent run: grant, arguments, breakers, policy and approvals, then the tool activity.

Workflow-safe: tool arguments are validated here, before anything is scheduled; invalid ones go back
to the model as tool errors, a bounded number of times, as do calls the policy denies.
"""

from __future__ import annotations

import hashlib
import json

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from contracts import errors as E
    from contracts.approval import RequestStatus
    from contracts.catalog import ArgumentsRejected, ToolDefinition
    from contracts.model import ChatMessage
    from contracts.policy import Outcome, PolicyDecision, SafeDefault, ToolCallFacts
    from contracts.run import RunState
    from contracts.tools import ToolCallRecord, ToolContext, ToolOutcome
    from policies.engine import evaluate
    from policies.grant import check_grant

from .approvals import await_approval
from .breakers import repeat_breaker
from .listings import summarize
from .state import AgentState
from .stop import cancellable, check_stop
from .stuck import await_operator, write_ran_out

#: Invalid tool calls (bad arguments, tools outside the grant) a run tolerates before failing.
MAX_INVALID_TOOL_CALLS = 3
#: Calls the policy denies (or approvers reject) that a run tolerates before failing with PolicyDenied.
MAX_DENIALS = 5


def idempotency_key(workflow_id: str, step: int, call_index: int) -> str:
    """Same run, same step, same call: same key, on every retry and every replay."""
    return hashlib.sha256(f"{workflow_id}|{step}|{call_index}".encode()).hexdigest()[:32]


async def run_tool(st: AgentState, call_id: str, name: str, raw_args: str, index: int, tools: dict[str, ToolDefinition]) -> None:
    """One tool call the model proposed: gated, then run (or reported to the model as not done)."""
    record = ToolCallRecord(step=st.carry.step, call_id=call_id, tool=name, outcome=ToolOutcome.OK)
    admitted = _admit_call(st, record, raw_args, tools)
    if admitted is None:
        return
    definition, args, record = admitted
    repeat_breaker(st, record)
    gated = await _gate(st, record, definition, index)
    if gated is None:
        return
    record, decision, approved_by = gated
    await _execute(st, record, definition, args, index, decision, approved_by)


def _admit_call(st: AgentState, record: ToolCallRecord, raw_args: str, tools: dict[str, ToolDefinition]):
    """The grant and the arguments: the tool's definition and parsed arguments, or None (reported as invalid)."""
    grant = check_grant(st.spec, record.tool, set(tools))
    definition = tools.get(record.tool)
    if not grant.allowed or definition is None:
        reject(st, record.model_copy(update={"outcome": grant.outcome, "error": grant.reason}))
        return None
    try:
        args = definition.parse_arguments(raw_args)
    except ArgumentsRejected as e:
        reject(st, record.model_copy(update={"outcome": ToolOutcome.INVALID_ARGUMENTS, "error": f"invalid arguments: {e}"}))
        return None
    return definition, args, record.model_copy(update={"arguments": args.model_dump(mode="json")})


async def _gate(st: AgentState, record: ToolCallRecord, definition: ToolDefinition, index: int):
    """The policy, and a person when it asks for one: (record, decision, approver), or None if denied."""
    policy = st.carry.policy
    if policy is None:
        return record, None, None
    spec, name, arguments = st.spec, record.tool, record.arguments
    decision = evaluate(
        policy.bundle,
        ToolCallFacts(
            agent=spec.name, tenant=st.tenant, autonomy=spec.autonomy, tool=name, side_effect=definition.meta.side_effect,
            data_classes=definition.meta.data_classes, arguments=arguments,
        ),
    )  # fmt: skip
    record = record.model_copy(update={"decision": decision})
    if decision.outcome is Outcome.DENY:
        deny(st, record, f"denied by policy rule {decision.rule_id}: {decision.reason}")
        return None
    if decision.outcome is not Outcome.REQUIRE_APPROVAL:
        return record, decision, None
    request = await await_approval(st, name, arguments, decision, index)
    record = record.model_copy(update={"approval_request": request.id})
    if request.status is not RequestStatus.APPROVED:
        if request.status is RequestStatus.REJECTED:
            why = f"rejected by {request.decided_by}: {request.note}"
        else:
            why = f"approval expired without a decision; safe default {request.approval.safe_default.value}"
        deny(st, record, why)
        if request.status is RequestStatus.EXPIRED and request.approval.safe_default is SafeDefault.STOP:
            st.set_state(RunState.FAILED, "nothing")
            raise st.fail(f"approval {request.id} for {name} expired: {why}", E.APPROVAL_EXPIRED)
        return None
    return record.model_copy(update={"approved_by": request.decided_by}), decision, request.decided_by


async def _execute(
    st: AgentState, record: ToolCallRecord, definition: ToolDefinition, args, index: int,
    decision: PolicyDecision | None, approved_by: str | None,
) -> None:  # fmt: skip
    """Schedule the tool's activity (with its idempotency key); a stuck write parks for an operator."""
    info, spec, carry = workflow.info(), st.spec, st.carry
    key = idempotency_key(info.workflow_id, carry.step, index) if definition.meta.needs_idempotency_key else None
    ctx = ToolContext(
        run_id=info.workflow_id, agent=spec.name, tenant=st.tenant, step=carry.step, call_index=index,
        agent_version=st.release.release_version, idempotency_key=key, decision=decision, approved_by=approved_by,
    )  # fmt: skip
    record = record.model_copy(update={"idempotency_key": key})
    check_stop(st, record)
    st.set_state(RunState.CALLING_TOOL, f"tool {record.tool}")
    meta = definition.meta
    while True:
        try:
            result = await cancellable(
                st,
                workflow.start_activity(
                    # The short name is the model's; history records the declared activity name.
                    definition.activity_name,
                    args=[ctx, args],
                    result_type=definition.result_model,
                    start_to_close_timeout=meta.start_to_close,
                    schedule_to_close_timeout=meta.schedule_to_close,
                    retry_policy=definition.retry_policy(),
                    cancellation_type=ActivityCancellationType.TRY_CANCEL,
                    summary=f"{record.tool} {summarize(record.arguments)}",
                ),
            )
            break
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            if write_ran_out(meta, cause):
                # Not done, and the tool did not say it never will be: a person decides, the run does not
                # go on as if the write had happened.
                resolution = await await_operator(st, record, index, message)
                if resolution.action == "retry":
                    continue
                message = f"given up by {resolution.by}: {resolution.reason} (the call failed: {message})"
            carry.tool_calls.append(record.model_copy(update={"outcome": ToolOutcome.FAILED, "error": message}))
            carry.pending.append(ChatMessage(role="tool", tool_call_id=record.call_id, content=json.dumps({"error": f"tool failed: {message}"})))
            return
    carry.tool_calls.append(record)
    carry.pending.append(ChatMessage(role="tool", tool_call_id=record.call_id, content=result.model_dump_json()))


def reject(st: AgentState, record: ToolCallRecord) -> None:
    """Report an invalid call to the model as a tool error; fail the run past the bound."""
    carry = st.carry
    carry.invalid_tool_calls += 1
    st.ran_nothing(record)
    carry.pending.append(ChatMessage(role="tool", tool_call_id=record.call_id, content=json.dumps({"error": record.error})))
    workflow.logger.info("rejected tool call %s: %s", record.tool, record.error)
    if carry.invalid_tool_calls > MAX_INVALID_TOOL_CALLS:
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(
            f"model proposed {carry.invalid_tool_calls} invalid tool calls (limit {MAX_INVALID_TOOL_CALLS}); last: {record.error}",
            E.TOOL_ARGUMENTS_INVALID,
        )


def deny(st: AgentState, record: ToolCallRecord, why: str) -> None:
    """Tell the model the call was not done (it may try another way); fail past the bound."""
    carry = st.carry
    carry.denials += 1
    record = st.ran_nothing(record, ToolOutcome.DENIED, why)
    d = record.decision
    content = {"error": "denied", "reason": why}
    if d is not None:
        content |= {"rule": d.rule_id, "policy": d.bundle, "policy_sha256": d.bundle_sha256}
    carry.pending.append(ChatMessage(role="tool", tool_call_id=record.call_id, content=json.dumps(content)))
    if carry.denials > MAX_DENIALS:
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(f"{carry.denials} tool calls were denied (limit {MAX_DENIALS}); last: {why}", E.POLICY_DENIED)
