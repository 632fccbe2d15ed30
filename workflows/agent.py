"""`AgentWorkflow`: one governed agent run, durable on Temporal.

Workflow-safe: deterministic orchestration only. The loop is model activity,
then tool activities, until the model's final answer validates against the
agent's output schema. Tool arguments are validated here, before anything is
scheduled; invalid ones go back to the model as tool errors, a bounded number
of times. Messages reach the model activity as deltas against a transcript
kept outside history, and the run continues as new before history limits.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.tools.catalog import CATALOG, ArgumentsRejected, ToolDefinition
    from contracts import errors as E
    from contracts import search
    from contracts.model import ChatMessage, ModelCallInput, ModelCallResult, Usage
    from contracts.run import AgentRunInput, AgentRunResult, RunCarry, RunState, RunStatus
    from contracts.schema import parse_json_answer, schema_problems
    from contracts.tools import ToolCallRecord, ToolContext, ToolOutcome
    from policies.grant import check_grant

#: Invalid tool calls (bad arguments, tools outside the grant) a run tolerates before failing.
MAX_INVALID_TOOL_CALLS = 3
#: Repair rounds offered when the final answer does not validate.
MAX_REPAIRS = 1

MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
    non_retryable_error_types=[E.MODEL_CALL_REJECTED, E.TRANSCRIPT_MISSING],
)


def idempotency_key(workflow_id: str, step: int, call_index: int) -> str:
    """Same run, same step, same call: same key, on every retry and every replay."""
    return hashlib.sha256(f"{workflow_id}|{step}|{call_index}".encode()).hexdigest()[:32]


def summarize(data: Any, limit: int = 80) -> str:
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fail(message: str, type_: str) -> ApplicationError:
    return ApplicationError(message, type=type_, non_retryable=True)


@workflow.defn(name="AgentWorkflow", failure_exception_types=[ValidationError])
class AgentWorkflow:
    @workflow.init
    def __init__(self, inp: AgentRunInput) -> None:
        spec = inp.release.spec
        carry = inp.carry
        self._inp = inp
        self._state = RunState.STARTING
        self._waiting_on = "nothing"
        self._step = carry.step if carry else 0
        self._usage = carry.usage if carry else Usage()
        self._last_call_cost = 0.0
        self._invalid = carry.invalid_tool_calls if carry else 0
        self._repairs = carry.repairs if carry else 0
        self._records: list[ToolCallRecord] = list(carry.tool_calls) if carry else []
        self._seq = carry.transcript_seq if carry else 0
        self._pending: list[ChatMessage] = list(carry.pending) if carry else []
        # Full conversation in worker memory only, to resend if the store lost it; unknown after continue-as-new.
        self._memory: list[ChatMessage] | None = None if carry else []
        self._step_limit = spec.step_limit

    @workflow.query(name="status")
    def status(self) -> RunStatus:
        return RunStatus(
            state=self._state,
            step=self._step,
            step_limit=self._step_limit,
            usage=self._usage,
            waiting_on=self._waiting_on,
            tool_calls=len(self._records),
            invalid_tool_calls=self._invalid,
        )

    @workflow.run
    async def run(self, inp: AgentRunInput) -> AgentRunResult:
        release = inp.release
        spec = release.spec
        self._label_run()
        problems = schema_problems(spec.input_schema, inp.input)
        if problems:
            raise _fail(f"run input does not match agent {spec.name!r}: {'; '.join(problems)}", E.INVALID_RUN_INPUT)
        tools = {name: CATALOG[name] for name in spec.tools if name in CATALOG}
        offered = [t.schema_for_model() for t in tools.values()]
        info = workflow.info()
        transcript_id = f"{info.workflow_id}#{info.first_execution_run_id}"
        if inp.carry is None:
            self._pending = [
                ChatMessage(role="system", content=self._system_prompt()),
                ChatMessage(role="user", content=json.dumps(inp.input, sort_keys=True)),
            ]

        while self._step < spec.step_limit:
            if self._should_continue_as_new():
                self._continue_as_new()
            if spec.cost_limit_usd > 0 and self._usage.cost_usd + self._last_call_cost > spec.cost_limit_usd:
                raise _fail(
                    f"run cost ${self._usage.cost_usd:.4f} plus the next call would pass the cap "
                    f"${spec.cost_limit_usd:.4f}",
                    E.BUDGET_EXCEEDED,
                )
            self._step += 1
            result = await self._call_model(transcript_id, offered)
            reply = result.message
            if reply.tool_calls:
                for index, call in enumerate(reply.tool_calls):
                    await self._run_tool(call.id, call.name, call.arguments, index, tools)
                continue
            answer, problem = parse_json_answer(reply.content)
            if problem is None:
                bad = schema_problems(spec.output_schema, answer)
                problem = "; ".join(bad) if bad else None
            if problem is None:
                self._set_state(RunState.COMPLETED, "nothing")
                return AgentRunResult(
                    output=answer,
                    agent=spec.name,
                    agent_version=release.release_version,
                    prompt_sha256=release.prompt_sha256,
                    tenant=inp.tenant,
                    run_key=inp.run_key,
                    steps=self._step,
                    usage=self._usage,
                    tool_calls=self._records,
                )
            if self._repairs >= MAX_REPAIRS:
                self._set_state(RunState.FAILED, "nothing")
                raise _fail(f"final answer is invalid after {self._repairs} repair round(s): {problem}", E.OUTPUT_INVALID)
            self._repairs += 1
            self._pending.append(
                ChatMessage(
                    role="user",
                    content=f"Your final answer was not accepted: {problem}. "
                    "Reply with only a JSON object that matches the output schema.",
                )
            )
        self._set_state(RunState.FAILED, "nothing")
        raise _fail(f"run reached the step limit of {spec.step_limit} without a final answer", E.STEP_LIMIT_EXCEEDED)

    # -- model -----------------------------------------------------------------------------

    async def _call_model(self, transcript_id: str, offered) -> ModelCallResult:
        spec = self._inp.release.spec
        self._set_state(RunState.CALLING_MODEL, f"model {spec.model.name}")
        base, delta = self._seq, list(self._pending)
        for resend in (False, True):
            request = ModelCallInput(
                transcript_id=transcript_id, base_seq=base, delta=delta, model=spec.model, tools=offered
            )
            try:
                result = await workflow.execute_activity(
                    "call_model",
                    request,
                    result_type=ModelCallResult,
                    start_to_close_timeout=timedelta(seconds=spec.model.timeout_seconds + 5),
                    retry_policy=MODEL_RETRY,
                    summary=f"step {self._step}: {spec.model.name}",
                )
                break
            except ActivityError as err:
                cause = err.cause
                kind = cause.type if isinstance(cause, ApplicationError) else None
                if kind == E.TRANSCRIPT_MISSING and not resend and self._memory is not None:
                    base, delta = 0, self._memory + list(self._pending)
                    continue
                self._set_state(RunState.FAILED, "nothing")
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                if kind in (E.MODEL_CALL_REJECTED, E.TRANSCRIPT_MISSING):
                    raise _fail(f"model call failed: {message}", kind) from None
                raise _fail(f"model call failed after retries: {message}", E.MODEL_UNAVAILABLE) from None
        self._usage = self._usage + result.usage
        self._last_call_cost = result.usage.cost_usd
        if self._memory is not None:
            self._memory = list(delta) if base == 0 else self._memory + delta
            self._memory.append(result.message)
        self._seq = base + len(delta) + 1
        self._pending = []
        return result

    # -- tools -----------------------------------------------------------------------------

    async def _run_tool(
        self, call_id: str, name: str, raw_args: str, index: int, tools: dict[str, ToolDefinition]
    ) -> None:
        spec = self._inp.release.spec
        record = ToolCallRecord(step=self._step, call_id=call_id, tool=name, outcome=ToolOutcome.OK)
        grant = check_grant(spec, name, set(tools))
        definition = tools.get(name)
        if not grant.allowed or definition is None:
            self._reject(record.model_copy(update={"outcome": grant.outcome, "error": grant.reason}))
            return
        try:
            args = definition.parse_arguments(raw_args)
        except ArgumentsRejected as e:
            self._reject(
                record.model_copy(update={"outcome": ToolOutcome.INVALID_ARGUMENTS, "error": f"invalid arguments: {e}"})
            )
            return
        info = workflow.info()
        key = idempotency_key(info.workflow_id, self._step, index) if definition.meta.needs_idempotency_key else None
        ctx = ToolContext(
            run_id=info.workflow_id,
            agent=spec.name,
            tenant=self._inp.tenant,
            step=self._step,
            call_index=index,
            idempotency_key=key,
        )
        record = record.model_copy(update={"arguments": args.model_dump(mode="json"), "idempotency_key": key})
        self._set_state(RunState.CALLING_TOOL, f"tool {name}")
        meta = definition.meta
        try:
            result = await workflow.execute_activity(
                name,
                args=[ctx, args],
                result_type=definition.result_model,
                start_to_close_timeout=meta.start_to_close,
                schedule_to_close_timeout=meta.schedule_to_close,
                retry_policy=definition.retry_policy(),
                summary=f"{name} {summarize(record.arguments)}",
            )
        except ActivityError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            self._records.append(record.model_copy(update={"outcome": ToolOutcome.FAILED, "error": message}))
            self._pending.append(
                ChatMessage(role="tool", tool_call_id=call_id, content=json.dumps({"error": f"tool failed: {message}"}))
            )
            return
        self._records.append(record)
        self._pending.append(ChatMessage(role="tool", tool_call_id=call_id, content=result.model_dump_json()))

    def _reject(self, record: ToolCallRecord) -> None:
        """Report an invalid call to the model as a tool error; fail the run past the bound."""
        self._invalid += 1
        self._records.append(record)
        self._pending.append(
            ChatMessage(role="tool", tool_call_id=record.call_id, content=json.dumps({"error": record.error}))
        )
        workflow.logger.info("rejected tool call %s: %s", record.tool, record.error)
        if self._invalid > MAX_INVALID_TOOL_CALLS:
            self._set_state(RunState.FAILED, "nothing")
            raise _fail(
                f"model proposed {self._invalid} invalid tool calls (limit {MAX_INVALID_TOOL_CALLS}); "
                f"last: {record.error}",
                E.TOOL_ARGUMENTS_INVALID,
            )

    # -- bookkeeping -----------------------------------------------------------------------

    def _system_prompt(self) -> str:
        release = self._inp.release
        return (
            f"{release.prompt.strip()}\n\n"
            "When you have finished, reply with only a JSON object (no prose) that matches this JSON Schema:\n"
            f"{json.dumps(release.spec.output_schema, sort_keys=True)}"
        )

    def _set_state(self, state: RunState, waiting_on: str) -> None:
        self._state = state
        self._waiting_on = waiting_on
        spec = self._inp.release.spec
        workflow.set_current_details(
            f"**{state.value}** · step {self._step}/{spec.step_limit} · waiting on {waiting_on} · "
            f"tokens {self._usage.total_tokens} · cost ${self._usage.cost_usd:.4f}"
        )

    def _label_run(self) -> None:
        """Add the run's search attributes if whoever started it did not."""
        release = self._inp.release
        wanted = {
            search.AGENT_NAME: release.spec.name,
            search.AGENT_VERSION: release.release_version,
            search.AGENT_OWNER: release.spec.owner.name,
            search.TENANT: self._inp.tenant,
        }
        present = workflow.info().typed_search_attributes
        missing = [key.value_set(v) for key, v in wanted.items() if present.get(key) != v]
        if missing:
            workflow.upsert_search_attributes(missing)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        budget = self._inp.history_budget_events
        return bool(budget) and info.get_current_history_length() >= budget

    def _continue_as_new(self) -> None:
        carry = RunCarry(
            step=self._step,
            transcript_seq=self._seq,
            usage=self._usage,
            invalid_tool_calls=self._invalid,
            repairs=self._repairs,
            tool_calls=self._records,
            pending=self._pending,
        )
        workflow.continue_as_new(self._inp.model_copy(update={"carry": carry}))
