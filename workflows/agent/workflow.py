"""`AgentWorkflow`: one governed agent run, durable on Temporal; the run loop and its message handlers.

Workflow-safe: deterministic orchestration only. The loop is model activity, then tool activities,
until the model's final answer validates against the agent's output schema. Each concern is a
module of functions over the run's `AgentState` (`start`, `model`, `gate`, `approvals`, `envelope`,
`breakers`, `stop`, `decisions`, `notify`); this class only wires them to Temporal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from contracts import errors as E
    from contracts import signing as S
    from contracts.agent import PinnedRelease
    from contracts.approval import ApprovalDecision, ApprovalLedger, Verdict
    from contracts.budget import BudgetDecision
    from contracts.catalog import CATALOG
    from contracts.control import StopOrder, ToolResolution
    from contracts.model import ChatMessage
    from contracts.run import AgentRunInput, AgentRunResult, RunState, RunStatus
    from contracts.schema import parse_json_answer, schema_problems
    from contracts.wire import AGENT_SIGNALS, AGENT_UPDATES, Query, Signal, Update, Workflow

from .answer import answer_from_tool
from .breakers import check_step_breakers
from .decisions import decide, read_one, read_order, refuse_message
from .envelope import take_budget_decision
from .gate import run_tool
from .model import call_model
from .notify import alert_owner
from .start import admit_run, opening_messages, read_input, start_as_recorded
from .state import AgentState
from .stop import check_stop, take_stop
from .stuck import take_resolution

#: Repair rounds offered when the final answer does not validate.
MAX_REPAIRS = 1
#: Signals and updates a run takes (wire API). Anything else sent to a run is answered and recorded.
SIGNALS = AGENT_SIGNALS
UPDATES = AGENT_UPDATES


@workflow.defn(name=Workflow.AGENT, failure_exception_types=[ValidationError])
class AgentWorkflow:
    @workflow.init
    def __init__(self, raw: RawValue) -> None:
        # Nothing is read from the input here: what governs the run is settled in `run`, by the worker.
        self._st = AgentState()

    # -- what the worker's metrics interceptor reads of a run as it ends (never wire API) ----------

    @property
    def release(self) -> PinnedRelease | None:
        """The release the run was admitted under (None before the worker resolved it)."""
        return self._st.release

    @property
    def pending_approvals(self) -> int:
        """Approval requests still waiting for a person."""
        return len(self._st.book.pending())

    @workflow.query(name=Query.STATUS)
    def status(self) -> RunStatus:
        return self._st.status()

    @workflow.query(name=Query.APPROVALS)
    def approvals(self) -> ApprovalLedger:
        return self._st.carry.ledger

    # -- messages: read by the workflow itself, so a bad one is refused and recorded, never wedges --

    @workflow.signal(dynamic=True)
    async def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        st = self._st
        if name not in SIGNALS:
            workflow.logger.warning("ignored signal %r: this run takes %s", name, ", ".join(SIGNALS))
            return
        verdict = Verdict.APPROVE if name == Signal.APPROVE else Verdict.REJECT
        decision, problem = read_one(st, args, ApprovalDecision, f"signal {name}")
        if problem is not None:
            if not st.is_legacy():  # runs recorded before dropped such a signal without a trace
                await refuse_message(st, problem, verdict)
            return
        await decide(st, decision, verdict)

    @workflow.update(dynamic=True)
    async def _update(self, name: str, args: Sequence[RawValue]) -> Any:
        st = self._st
        if name == Update.DECIDE_APPROVAL:
            decision, problem = read_one(st, args, ApprovalDecision, "update decide_approval")
            if problem is None and not decision.approver.strip():
                problem = "update decide_approval: approver is required"
            if problem is not None:
                await refuse_message(st, problem, decision.verdict if decision is not None else None)
                raise ApplicationError(problem, type=E.APPROVAL_REFUSED, non_retryable=True)
            answer = await decide(st, decision, decision.verdict)
            if not answer.accepted:
                raise ApplicationError(answer.reason, type=E.APPROVAL_REFUSED, non_retryable=True)
            return answer
        if name == Update.STOP:
            order = await read_order(st, name, args, StopOrder, S.STOP, lambda o: S.stop_body(o.reason, o.switch_id), needs_reason=True)
            return take_stop(st, order)
        if name == Update.RESOLVE_TOOL:
            resolution = await read_order(st, name, args, ToolResolution, S.TOOL, lambda o: S.tool_body(o.action, o.reason))
            return take_resolution(st, resolution)
        if name == Update.BUDGET_DECISION:
            decision = await read_order(st, name, args, BudgetDecision, S.BUDGET, lambda o: S.budget_body(o.action, o.note))
            return take_budget_decision(st, decision)
        raise ApplicationError(f"this run takes no update {name!r} (it takes: {', '.join(UPDATES)})", type=E.MESSAGE_REFUSED, non_retryable=True)

    # -- the run -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: RawValue) -> AgentRunResult:
        try:
            return await self._run(raw)
        except ApplicationError as failure:
            await alert_owner(self._st, failure)
            raise

    async def _run(self, raw: RawValue) -> AgentRunResult:
        st = self._st
        legacy = st.is_legacy()
        inp = read_input(st, raw)
        st.inp = inp
        if legacy:
            await start_as_recorded(st, inp)
        else:
            await admit_run(st, inp)
        spec = st.spec
        tools = {name: CATALOG[name] for name in spec.tools if name in CATALOG}
        offered = list(tools)
        info = workflow.info()
        transcript_id = f"{info.workflow_id}#{info.first_execution_run_id}"
        if inp.carry is None:
            st.carry.pending = opening_messages(st, legacy)

        while st.carry.step < spec.step_limit:
            check_stop(st)
            if _should_continue_as_new(st):
                _continue_as_new(st)
            check_step_breakers(st)
            st.carry.step += 1
            reply = (await call_model(st, transcript_id, offered)).message
            if reply.tool_calls:
                for index, call in enumerate(reply.tool_calls):
                    await run_tool(st, call.id, call.name, call.arguments, index, tools)
                answer = answer_from_tool(st, reply.tool_calls)
                if answer is not None:
                    return await _complete(st, answer)
                continue
            answer, problem = parse_json_answer(reply.content)
            if problem is None:
                bad = schema_problems(spec.output_schema, answer)
                problem = "; ".join(bad) if bad else None
            if problem is None:
                return await _complete(st, answer)
            _repair(st, problem)
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(f"run reached the step limit of {spec.step_limit} without a final answer", E.STEP_LIMIT_EXCEEDED)


async def _complete(st: AgentState, answer: Any) -> AgentRunResult:
    st.set_state(RunState.COMPLETED, "nothing")
    await workflow.wait_condition(workflow.all_handlers_finished)
    return _result(st, answer)


def _repair(st: AgentState, problem: str) -> None:
    """Ask once more for an answer that validates (from the next, larger model if the agent says so)."""
    spec, carry = st.spec, st.carry
    if carry.repairs >= MAX_REPAIRS:
        st.set_state(RunState.FAILED, "nothing")
        raise st.fail(f"final answer is invalid after {carry.repairs} repair round(s): {problem}", E.OUTPUT_INVALID)
    carry.repairs += 1
    if spec.routing.escalate_on_invalid_output and carry.tier < len(spec.model_tiers):
        carry.tier += 1  # the repair goes to the next, larger model
    carry.pending.append(
        ChatMessage(
            role="user",
            content=f"Your final answer was not accepted: {problem}. Reply with only a JSON object that matches the output schema.",
        )
    )


def _result(st: AgentState, answer: Any) -> AgentRunResult:
    release, inp, carry = st.release, st.inp, st.carry
    assert release is not None and inp is not None
    policy = carry.policy
    return AgentRunResult(
        output=answer,
        agent=release.spec.name,
        agent_version=release.release_version,
        prompt_sha256=st.sent_prompt or release.prompt_sha256,
        tenant=inp.tenant,
        run_key=inp.run_key,
        steps=carry.step,
        usage=carry.usage,
        tool_calls=carry.tool_calls,
        policy_bundle=f"{policy.bundle.name}@{policy.bundle.version}" if policy else None,
        policy_sha256=policy.bundle.sha256 if policy else None,
        denials=carry.denials,
        approvals=carry.ledger.requests,
    )


def _should_continue_as_new(st: AgentState) -> bool:
    info = workflow.info()
    if info.is_continue_as_new_suggested():
        return True
    budget = st.inp.history_budget_events if st.inp else 0
    return bool(budget) and info.get_current_history_length() >= budget


def _continue_as_new(st: AgentState) -> None:
    inp, release = st.inp, st.release
    assert inp is not None and release is not None
    # The next execution gets what a start gets, plus the carry; the release text stays behind.
    workflow.continue_as_new(
        AgentRunInput(
            agent=release.spec.name, tenant=inp.tenant, run_key=inp.run_key, input=inp.input, requester=inp.requester,
            labels=inp.labels, history_budget_events=inp.history_budget_events, carry=st.next_carry(),
        )
    )  # fmt: skip
