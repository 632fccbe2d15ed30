"""`AgentWorkflow`: one governed agent run, durable on Temporal.

Workflow-safe: deterministic orchestration only. The loop is model activity,
then tool activities, until the model's final answer validates against the
agent's output schema. Tool arguments are validated here, before anything is
scheduled; invalid ones go back to the model as tool errors, a bounded number
of times. Messages reach the model activity as deltas against a transcript
kept outside history, and the run continues as new before history limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.workflow import ActivityCancellationType
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError as ActivityCancelled

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from contracts.catalog import CATALOG, ArgumentsRejected, ToolDefinition
    from contracts import errors as E
    from contracts import payloads
    from contracts import search
    from contracts.agent import PinnedRelease
    from contracts.model import ChatMessage, ModelCallInput, ModelCallResult, Usage, system_prompt
    from contracts.run import AgentRunInput, AgentRunResult, RunCarry, RunFailure, RunState, RunStatus, run_workflow_id
    from contracts.schema import parse_json_answer, schema_problems
    from contracts.budget import BudgetDecision, BudgetNote, EnvelopeRef
    from contracts.classes import SideEffect
    from contracts.control import Admission, Admitted, KillSwitchState, RunAdmission, RunAdmitted, StopAnswer, StopOrder, SwitchQuery, ToolResolution
    from contracts.approval import ApprovalDecision, ApprovalLedger, ApprovalRequest, BusinessDeadlineInput, BusinessDeadlineResult, DecisionAnswer, Refusal, RequestStatus, Verdict
    from contracts.notify import Notification
    from contracts.policy import Clock, Directory, Outcome, PolicyDecision, PolicySet, SafeDefault, Tier, ToolCallFacts
    from contracts.tools import ToolCallRecord, ToolContext, ToolOutcome
    from contracts import signing as S
    from contracts.wire import AGENT_SIGNALS, AGENT_UPDATES, Activity, Query, Signal, Update, Workflow
    from policies.approvals import ApprovalBook
    from policies.signatures import refusal as signature_refusal
    from policies.engine import evaluate
    from policies.grant import check_grant

#: Invalid tool calls (bad arguments, tools outside the grant) a run tolerates before failing.
MAX_INVALID_TOOL_CALLS = 3
#: Repair rounds offered when the final answer does not validate.
MAX_REPAIRS = 1
#: Calls the policy denies (or approvers reject) that a run tolerates before failing with PolicyDenied.
MAX_DENIALS = 5
#: Refused messages (unreadable or unauthorised decisions) a run keeps in its ledger; the audit keeps them all.
MAX_REFUSALS_KEPT = 100
#: Said once a procedure's required tool calls are done, before asking for the final answer.
ANSWER_NOW = (
    "The required tool calls are done. Reply now with only the final JSON answer, "
    "taking its values from the tool results above."
)
#: Patch id of the trust boundary: from here on a run reads nothing that governs it from its input.
#: The worker resolves release, prompt, policy, envelope and kill switches (`admit_run`); histories
#: recorded without the marker replay through the protocol their input recorded.
WORKER_RESOLVES_PATCH = "worker-resolves-release"
#: Patch id of signed decisions: from here on a decision counts only with valid proof of who made it.
SIGNED_DECISIONS_PATCH = "signed-decisions-v1"
#: Nonces of signed decisions a run remembers (a replay of any of them is refused).
MAX_NONCES_KEPT = 1000
#: Patch id of parking a run whose write or external tool ran out of retries (it went on before).
WRITES_PARK_PATCH = "writes-park-v1"
#: Patch id of the policy gate; runs started before it replay without the gate.
POLICY_GATE_PATCH = "policy-gate-v1"
#: Patch id of the repeated-call and context breakers; a marker is written only by a run that trips one.
BREAKERS_PATCH = "breakers-v1"
#: Patch id of business-hours SLAs: a business-clock tier's deadline comes from a local activity (recorded
#: in history, since zone data differs between machines). Wall-clock tiers never reach the patch check.
BUSINESS_HOURS_PATCH = "business-hours-v1"
#: Patch id of the kill-switch check at start, for runs whose starter did not set `kill_switch_check`.
KILL_SWITCH_PATCH = "kill-switch-v1"
#: Patch id of telling the agent's owner when a breaker trips or a kill switch stops a run.
OWNER_ALERTS_PATCH = "owner-alerts-v1"
#: Failures that are a breaker tripping: the run was stopped by a limit of its deployment standard.
BREAKER_TRIPS = (E.STEP_LIMIT_EXCEEDED, E.BUDGET_EXCEEDED, E.REPEATED_TOOL_CALL, E.CONTEXT_LIMIT_EXCEEDED, E.POLICY_DENIED)
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
#: Admission reads the store; while it is unreachable the run waits at its start rather than failing.
ADMIT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))

#: Signals and updates a run takes (wire API). Anything else sent to a run is answered and recorded.
SIGNALS = AGENT_SIGNALS
UPDATES = AGENT_UPDATES


def idempotency_key(workflow_id: str, step: int, call_index: int) -> str:
    """Same run, same step, same call: same key, on every retry and every replay."""
    return hashlib.sha256(f"{workflow_id}|{step}|{call_index}".encode()).hexdigest()[:32]


def summarize(data: Any, limit: int = 80) -> str:
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problems(e: ValidationError) -> str:
    return "; ".join(f"field {'.'.join(map(str, err['loc'])) or '(root)'!r}: {err['msg'].removeprefix('Value error, ')}" for err in e.errors())


@workflow.defn(name=Workflow.AGENT, failure_exception_types=[ValidationError])
class AgentWorkflow:
    @workflow.init
    def __init__(self, raw: RawValue) -> None:
        # Nothing is read from the input here: what governs the run is settled in `run`, by the worker.
        self._inp: AgentRunInput | None = None
        self._release: PinnedRelease | None = None
        self._legacy: bool | None = None
        """True for histories recorded before the worker resolved releases (no patch marker)."""
        self._sealed = True
        """Whether the start input arrived encrypted (a worker with a key ring marks clear text)."""
        self._state = RunState.STARTING
        self._waiting_on = "nothing"
        self._last_call_cost = 0.0
        self._memory: list[ChatMessage] | None = []
        """Full conversation in worker memory only, to resend if the store lost it; unknown after continue-as-new."""
        self._answer_asked = False
        self._stop: StopOrder | None = None
        self._switched: KillSwitchState | None = None
        """The kill switch that refused this run at its start, if one did."""
        self._envelope_ended = False
        """Whether the cost envelope (not the run's own cap) ended the run: its owner had the envelope's alerts."""
        self._budget_decision: BudgetDecision | None = None
        self._inflight: workflow.ActivityHandle | None = None
        self._admission: Admission | None = None
        """Sent with the first model call until it answers (runs recorded with `admit_in_first_call`)."""
        self._listed_awaiting = False
        """Whether the run's search attributes say it waits for an approval."""
        self._resolution: ToolResolution | None = None
        self._stuck = 0
        self._sent_prompt: str | None = None
        """SHA-256 of the prompt the model activity sent, as it reported it."""
        self._restore(None)

    def _restore(self, carry: RunCarry | None) -> None:
        """The run's counters and records: fresh, or as the previous execution carried them."""
        self._step = carry.step if carry else 0
        self._usage = carry.usage if carry else Usage()
        self._invalid = carry.invalid_tool_calls if carry else 0
        self._repairs = carry.repairs if carry else 0
        self._records: list[ToolCallRecord] = list(carry.tool_calls) if carry else []
        self._seq = carry.transcript_seq if carry else 0
        self._pending: list[ChatMessage] = list(carry.pending) if carry else []
        self._policy: PolicySet | None = carry.policy if carry else None
        self._ledger = carry.ledger if carry else ApprovalLedger()
        self._book = ApprovalBook(self._ledger)
        self._denials = carry.denials if carry else 0
        self._settled: list[ToolCallRecord] = list(carry.settled) if carry else []
        self._context_tokens = carry.context_tokens if carry else 0
        self._tier = carry.tier if carry else 0
        self._nonces: list[str] = list(carry.nonces) if carry else []
        if carry is not None:
            self._memory = None

    @property
    def _spec(self):
        assert self._release is not None
        return self._release.spec

    def _is_legacy(self) -> bool:
        """Was this run started before workers resolved releases? (Asked once; not from a query.)"""
        if self._legacy is None:
            self._legacy = not workflow.patched(WORKER_RESOLVES_PATCH)
        return self._legacy

    @workflow.query(name=Query.STATUS)
    def status(self) -> RunStatus:
        return RunStatus(
            state=self._state,
            step=self._step,
            step_limit=self._release.spec.step_limit if self._release else 0,
            usage=self._usage,
            waiting_on=self._waiting_on,
            tool_calls=len(self._records),
            invalid_tool_calls=self._invalid,
            denials=self._denials,
            approval=next(iter(self._book.pending()), None),
        )

    @workflow.query(name=Query.APPROVALS)
    def approvals(self) -> ApprovalLedger:
        return self._ledger

    # -- messages: read by the workflow itself, so a bad one is refused and recorded, never wedges --

    def _open(self, raw: RawValue, model: type[BaseModel], what: str) -> tuple[Any, str | None]:
        """`raw` as `model`, or why it cannot be taken (undecodable, clear text, the wrong shape)."""
        payload = raw.payload
        if payloads.is_undecodable(payload):
            return None, f"{what} could not be decrypted ({payloads.reason(payload)})"
        if payloads.is_unsealed(payload):
            if self._requires_sealed():
                return None, (f"{what} was sent in clear text, and this agent's runs take encrypted messages only: "
                              "send it with `aifactory`, the gateway, or a client that encodes through the codec endpoint")  # fmt: skip
            payload = payloads.unwrap(payload)
        try:
            return workflow.payload_converter().from_payload(payload, model), None
        except ValidationError as e:
            return None, f"{what} is not a {model.__name__}: {_problems(e)}"
        except Exception as e:  # not JSON, an unknown encoding, ...
            return None, f"{what} is not a {model.__name__}: {type(e).__name__}: {e}"[:500]

    def _requires_sealed(self) -> bool:
        if self._legacy:
            return False
        return self._release is None or not self._release.spec.clear_payloads

    @workflow.signal(dynamic=True)
    async def _signal(self, name: str, args: Sequence[RawValue]) -> None:
        if name not in SIGNALS:
            workflow.logger.warning("ignored signal %r: this run takes %s", name, ", ".join(SIGNALS))
            return
        verdict = Verdict.APPROVE if name == Signal.APPROVE else Verdict.REJECT
        decision, problem = self._one(args, ApprovalDecision, f"signal {name}")
        if problem is not None:
            if not self._is_legacy():  # runs recorded before dropped such a signal without a trace
                await self._refuse_message(problem, verdict)
            return
        await self._decide(decision, verdict)

    @workflow.update(dynamic=True)
    async def _update(self, name: str, args: Sequence[RawValue]) -> Any:
        if name == Update.DECIDE_APPROVAL:
            decision, problem = self._one(args, ApprovalDecision, "update decide_approval")
            if problem is None and not decision.approver.strip():
                problem = "update decide_approval: approver is required"
            if problem is not None:
                await self._refuse_message(problem, decision.verdict if decision is not None else None)
                raise ApplicationError(problem, type=E.APPROVAL_REFUSED, non_retryable=True)
            answer = await self._decide(decision, decision.verdict)
            if not answer.accepted:
                raise ApplicationError(answer.reason, type=E.APPROVAL_REFUSED, non_retryable=True)
            return answer
        if name == Update.STOP:
            order = await self._order(name, args, StopOrder, S.STOP, lambda o: S.stop_body(o.reason, o.switch_id), needs_reason=True)
            return self._take_stop(order)
        if name == Update.RESOLVE_TOOL:
            resolution = await self._order(name, args, ToolResolution, S.TOOL, lambda o: S.tool_body(o.action, o.reason))
            return self._take_resolution(resolution)
        if name == Update.BUDGET_DECISION:
            decision = await self._order(name, args, BudgetDecision, S.BUDGET, lambda o: S.budget_body(o.action, o.note))
            return self._take_budget_decision(decision)
        raise ApplicationError(f"this run takes no update {name!r} (it takes: {', '.join(UPDATES)})", type=E.MESSAGE_REFUSED, non_retryable=True)

    async def _order(self, name: str, args: Sequence[RawValue], model: type[BaseModel], kind: str, body, needs_reason: bool = False) -> Any:
        """An operator's order (stop, budget or tool decision), read and proven, or refused (on record)."""
        order, problem = self._one(args, model, f"update {name}")
        if problem is None and (not order.by.strip() or (needs_reason and not order.reason.strip())):
            problem = f"update {name}: the operator (by){' and a reason are' if needs_reason else ' is'} required"
        if problem is None:
            proof = await self._proof_refused(kind, order.by.strip(), body(order), order.signature)
            problem = f"update {name}: {proof}" if proof else None
        if problem is not None:
            raise ApplicationError(problem, type=E.MESSAGE_REFUSED, non_retryable=True)
        return order

    def _one(self, args: Sequence[RawValue], model: type[BaseModel], what: str) -> tuple[Any, str | None]:
        if len(args) != 1:
            return None, f"{what} takes one {model.__name__}, got {len(args)} values"
        return self._open(args[0], model, what)

    def _take_stop(self, order: StopOrder) -> StopAnswer:
        """A kill switch: from the acknowledgement on the run starts no activity, cancels the one
        in flight, and ends at the step boundary with `RunStopped` naming the operator and reason."""
        state = self._state.value
        if self._stop is None:
            self._stop = order
            self._state, self._waiting_on = RunState.STOPPING, "nothing"
            if self._inflight is not None and not self._inflight.done():
                self._inflight.cancel()
        return StopAnswer(acknowledged=True, state=state)

    def _take_budget_decision(self, decision: BudgetDecision) -> StopAnswer:
        """An operator's answer to a run paused on its spent envelope: resume (after raising it) or stop."""
        state = self._state.value
        if self._state is RunState.AWAITING_BUDGET:
            self._budget_decision = decision
        return StopAnswer(acknowledged=self._budget_decision is decision, state=state)

    async def _refuse_message(self, problem: str, verdict: Verdict | None) -> None:
        """A decision the run cannot read: kept in the ledger and the outbox, like any refused decision."""
        workflow.logger.warning("refused a message: %s", problem)
        refusals = self._ledger.refusals
        refusals.append(Refusal(request_id=None, person="(unreadable)", verdict=verdict or Verdict.APPROVE, reason=problem, at=workflow.now()))
        del refusals[:-MAX_REFUSALS_KEPT]
        await self._notify(
            "approval_refused", f"refusal/{workflow.uuid4()}", f"Refused a message: {problem}", group=None,
            details={"request": None, "person": None, "verdict": verdict.value if verdict else None, "reason": problem},
        )  # fmt: skip

    async def _decide(self, decision: ApprovalDecision, verdict: Verdict) -> DecisionAnswer:
        directory = self._policy.directory if self._policy else Directory()
        person = decision.approver.strip()
        problem = None
        if self._checks_signatures():
            # The directory as it stands now (keys revoked since the run began count), and the proof first.
            directory = await self._current_directory(directory)
            body = S.approval_body(decision.request_id, verdict.value, decision.note)
            problem = self._signature_problem(directory, S.APPROVAL, person, body, decision.signature)
            if problem is None and decision.signature is not None and decision.request_id is None:
                problem = "a signed decision must name its request (request_id)"
        if problem is not None:
            answer = self._book.refuse(decision.request_id, person, verdict, problem, workflow.now())
        else:
            answer = self._book.decide(decision.request_id, person, verdict, decision.note, workflow.now(), directory)
        if not answer.accepted:
            workflow.logger.warning("refused %s by %s: %s", verdict.value, decision.approver, answer.reason)
            await self._notify(
                "approval_refused",
                f"refusal/{len(self._ledger.refusals)}",
                f"Refused {verdict.value} by {decision.approver}: {answer.reason}",
                group=None,
                details={"request": answer.request_id, "person": decision.approver, "verdict": verdict.value, "reason": answer.reason},
            )
        return answer

    # -- proof of who decided ------------------------------------------------------------------

    def _checks_signatures(self) -> bool:
        """Decisions arriving from here on need proof (decisions recorded before the patch replay without)."""
        return workflow.patched(SIGNED_DECISIONS_PATCH)

    async def _current_directory(self, pinned: Directory) -> Directory:
        policy = self._spec.policy if self._release is not None else None
        if policy is None:
            return pinned
        return await workflow.execute_local_activity(
            Activity.RESOLVE_DIRECTORY, policy, result_type=Directory, start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=[E.POLICY_FILE_ERROR]),
        )  # fmt: skip

    def _signature_problem(self, directory: Directory, kind: str, person: str, body: dict, sig) -> str | None:
        problem = signature_refusal(directory, kind, workflow.info().workflow_id, person, body, sig, workflow.now(), self._nonces)
        if problem is None and sig is not None:
            self._nonces.append(sig.nonce)
            del self._nonces[:-MAX_NONCES_KEPT]
        return problem

    async def _proof_refused(self, kind: str, person: str, body: dict, sig) -> str | None:
        """For an operator's order (stop, budget, tool): why its proof does not hold, if it does not."""
        if not self._checks_signatures():
            return None
        directory = await self._current_directory(self._policy.directory if self._policy else Directory())
        return self._signature_problem(directory, kind, person, body, sig)

    # -- the run -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, raw: RawValue) -> AgentRunResult:
        try:
            return await self._run(raw)
        except ApplicationError as failure:
            await self._alert_owner(failure)
            raise

    async def _run(self, raw: RawValue) -> AgentRunResult:
        legacy = self._is_legacy()
        inp = self._read_input(raw)
        self._inp = inp
        if legacy:
            await self._start_as_recorded(inp)
        else:
            await self._admit_run(inp)
        spec = self._spec
        tools = {name: CATALOG[name] for name in spec.tools if name in CATALOG}
        offered = list(tools)
        info = workflow.info()
        transcript_id = f"{info.workflow_id}#{info.first_execution_run_id}"
        if inp.carry is None:
            opening = [ChatMessage(role="system", content=self._system_prompt())] if legacy else []
            self._pending = [*opening, ChatMessage(role="user", content=json.dumps(inp.input, sort_keys=True))]

        while self._step < spec.step_limit:
            self._check_stop()
            if self._should_continue_as_new():
                self._continue_as_new()
            if spec.cost_limit_usd > 0 and self._usage.cost_usd + self._last_call_cost > spec.cost_limit_usd:
                raise self._fail(
                    f"run cost ${self._usage.cost_usd:.4f} plus the next call would pass the cap "
                    f"${spec.cost_limit_usd:.4f}",
                    E.BUDGET_EXCEEDED,
                )
            ceiling = spec.breakers.max_context_tokens
            if self._context_tokens >= ceiling and workflow.patched(BREAKERS_PATCH):
                self._set_state(RunState.FAILED, "nothing")
                raise self._fail(
                    f"circuit breaker: the conversation reached {self._context_tokens} prompt tokens, "
                    f"the agent's ceiling is {ceiling}",
                    E.CONTEXT_LIMIT_EXCEEDED,
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
                await workflow.wait_condition(workflow.all_handlers_finished)
                release = self._release
                assert release is not None
                return AgentRunResult(
                    output=answer,
                    agent=spec.name,
                    agent_version=release.release_version,
                    prompt_sha256=self._sent_prompt or release.prompt_sha256,
                    tenant=inp.tenant,
                    run_key=inp.run_key,
                    steps=self._step,
                    usage=self._usage,
                    tool_calls=self._records,
                    policy_bundle=f"{self._policy.bundle.name}@{self._policy.bundle.version}" if self._policy else None,
                    policy_sha256=self._policy.bundle.sha256 if self._policy else None,
                    denials=self._denials,
                    approvals=self._ledger.requests,
                )
            if self._repairs >= MAX_REPAIRS:
                self._set_state(RunState.FAILED, "nothing")
                raise self._fail(f"final answer is invalid after {self._repairs} repair round(s): {problem}", E.OUTPUT_INVALID)
            self._repairs += 1
            if spec.routing.escalate_on_invalid_output and self._tier < len(spec.model_tiers):
                self._tier += 1  # the repair goes to the next, larger model
            self._pending.append(
                ChatMessage(
                    role="user",
                    content=f"Your final answer was not accepted: {problem}. "
                    "Reply with only a JSON object that matches the output schema.",
                )
            )
        self._set_state(RunState.FAILED, "nothing")
        raise self._fail(f"run reached the step limit of {spec.step_limit} without a final answer", E.STEP_LIMIT_EXCEEDED)

    # -- the start: what governs the run ------------------------------------------------------

    def _read_input(self, raw: RawValue) -> AgentRunInput:
        """The run input, or the run fails at once with a typed error (never a retried task)."""
        payload = raw.payload
        if payloads.is_undecodable(payload):
            raise self._fail(
                f"the run's input could not be decrypted ({payloads.reason(payload)}): start it with a client that "
                "uses the workers' key ring", E.PAYLOAD_UNDECODABLE,
            )  # fmt: skip
        if payloads.is_unsealed(payload):
            self._sealed = False
            payload = payloads.unwrap(payload)
        try:
            return workflow.payload_converter().from_payload(payload, AgentRunInput)
        except ValidationError as e:
            if self._legacy:  # as such runs failed when they were recorded
                raise
            raise self._fail(f"run input refused: {_problems(e)}", E.INVALID_RUN_INPUT) from None
        except Exception as e:
            raise self._fail(f"run input is not an AgentRunInput: {type(e).__name__}: {e}"[:500], E.INVALID_RUN_INPUT) from None

    async def _admit_run(self, inp: AgentRunInput) -> None:
        """Settle the release, policy and admission from the worker's own deployment, never the input."""
        info = workflow.info()
        expected = run_workflow_id(inp.agent_name, inp.tenant, inp.run_key)
        if info.workflow_id != expected:
            raise self._fail(f"run input refused: the workflow id must be the run's business key {expected!r}", E.INVALID_RUN_INPUT)
        if inp.carry is not None:
            # Only the run's own continue-as-new writes a carry: a start that brings one is refused.
            lineage = inp.carry.lineage
            if info.continued_run_id is None or (lineage and lineage != info.first_execution_run_id):
                raise self._fail("run input refused: field 'carry' is written only by the run's own continue-as-new", E.INVALID_RUN_INPUT)
            release = inp.carry.release or (inp.release.pinned() if inp.release else None)
            if release is None:
                raise self._fail("run input refused: a continued run must carry its release", E.INVALID_RUN_INPUT)
            self._release = release
            self._restore(inp.carry)
        else:
            admitted = await workflow.execute_local_activity(
                Activity.ADMIT_RUN,
                RunAdmission(agent=inp.agent_name, version=inp.version, tenant=inp.tenant),
                result_type=RunAdmitted,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=ADMIT_RETRY,
            )
            self._release = admitted.release
            if admitted.refused is not None:
                self._set_state(RunState.FAILED, "nothing")
                raise self._fail(admitted.refused.message, admitted.refused.type)
            assert admitted.release is not None and admitted.policy is not None
            self._policy = admitted.policy
        self._label_run()
        spec = self._spec
        if not self._sealed and not spec.clear_payloads:
            raise self._fail(
                f"run input was sent in clear text, and runs of {spec.name} must be encrypted: start it with `aifactory run`, "
                "FactoryClient, the gateway, or `temporal workflow start --codec-endpoint ...` (see the README)",
                E.PAYLOAD_NOT_ENCRYPTED,
            )  # fmt: skip
        if inp.carry is None:
            problems = schema_problems(spec.input_schema, inp.input)
            if problems:
                raise self._fail(f"run input does not match agent {spec.name!r}: {'; '.join(problems)}", E.INVALID_RUN_INPUT)

    async def _start_as_recorded(self, inp: AgentRunInput) -> None:
        """Runs recorded before workers resolved releases: the release came with the input, and
        admission as their protocol said (in the first model call, or two local activities)."""
        assert inp.release is not None
        self._release = inp.release
        self._restore(inp.carry)
        spec = inp.release.spec
        self._label_run()
        problems = schema_problems(spec.input_schema, inp.input)
        if problems:
            raise self._fail(f"run input does not match agent {spec.name!r}: {'; '.join(problems)}", E.INVALID_RUN_INPUT)
        if inp.protocol >= 3:
            if self._policy is None:  # the first model call checks the switches and resolves the policy
                self._admission = Admission(agent=spec.name, tenant=inp.tenant, policy=spec.policy)
        else:
            if self._policy is None and (inp.protocol >= 1 or workflow.patched(POLICY_GATE_PATCH)):
                self._policy = await self._resolve_policy()
            if inp.carry is None and (inp.protocol >= 2 or workflow.patched(KILL_SWITCH_PATCH)):
                self._refuse_if_switched(await self._check_kill_switch())

    # -- model -----------------------------------------------------------------------------

    async def _call_model(self, transcript_id: str, offered) -> ModelCallResult:
        spec = self._spec
        model = self._model()
        self._set_state(RunState.CALLING_MODEL, f"model {model.name}")
        # A procedure (`required_tools`): force each required tool in turn, then ask for the answer as JSON.
        force = self._next_required()
        final = bool(spec.required_tools) and force is None
        if final and not self._answer_asked:
            self._answer_asked = True
            self._pending.append(ChatMessage(role="user", content=ANSWER_NOW))
        base, delta = self._seq, list(self._pending)
        envelope = self._envelope()
        resend = False
        while True:
            # A conversation that starts here opens with the release's prompt, which the model
            # activity takes from the worker's own registry (runs recorded before sent it in `delta`).
            prompt = self._release.prompt_ref if (base == 0 and not self._legacy) else None
            request = ModelCallInput(
                transcript_id=transcript_id, base_seq=base, delta=delta, model=model,
                tool_names=[] if final else offered, force_tool=force,
                response_schema=spec.output_schema if final else None, step=self._step, settled=self._settled,
                release_version=self._release.release_version, envelope=envelope, admission=self._admission,
                prompt=prompt,
            )  # fmt: skip
            try:
                result = await self._cancellable(
                    workflow.start_activity(
                        Activity.CALL_MODEL,
                        request,
                        result_type=ModelCallResult,
                        start_to_close_timeout=timedelta(seconds=model.timeout_seconds + 5),
                        heartbeat_timeout=MODEL_HEARTBEAT if model.timeout_seconds > LONG_MODEL_CALL else None,
                        retry_policy=MODEL_RETRY,
                        cancellation_type=ActivityCancellationType.TRY_CANCEL,
                        summary=f"step {self._step}: {model.name}",
                    )
                )
                if result.budget is not None and not result.budget.granted:
                    assert envelope is not None
                    await self._envelope_spent(envelope, result.budget)  # returns once an operator resumes the run
                    continue
                break
            except ActivityError as err:
                cause = err.cause
                kind = cause.type if isinstance(cause, ApplicationError) else None
                if kind == E.TRANSCRIPT_MISSING and not resend and self._memory is not None:
                    base, delta, resend = 0, self._memory + list(self._pending), True
                    continue
                self._set_state(RunState.FAILED, "nothing")
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                if kind in (E.MODEL_CALL_REJECTED, E.TRANSCRIPT_MISSING, E.MODEL_RESPONSE_TOO_LARGE):
                    raise self._fail(f"model call failed: {message}", kind) from None
                if kind == E.POLICY_FILE_ERROR:
                    raise self._fail(f"policy {spec.policy!r} could not be loaded: {message}", kind) from None
                raise self._fail(f"model call failed after retries: {message}", E.MODEL_UNAVAILABLE) from None
        for pct in result.budget.crossed if (result.budget and envelope) else ():
            await self._envelope_alert(envelope, pct, result.budget)
        self._economise(result.budget)
        self._usage = self._usage + result.usage
        self._last_call_cost = result.usage.cost_usd
        self._context_tokens = result.usage.prompt_tokens
        if self._memory is not None:
            self._memory = list(delta) if base == 0 else self._memory + delta
            self._memory.append(result.message)
        if result.prompt_sha256:
            self._sent_prompt = result.prompt_sha256
        self._seq = base + (1 if prompt is not None else 0) + len(delta) + 1
        self._pending = []
        self._settled = []
        if self._admission is not None:  # after the bookkeeping: a call an older worker made is counted
            await self._admit(result.admitted)
        return result

    # -- admission --------------------------------------------------------------------------

    async def _admit(self, admitted: Admitted | None) -> None:
        """Take the first call's admission: refused under a kill switch, else gated by the policy it resolved."""
        self._admission = None
        if admitted is None:  # a worker from before admission made the call: ask as those runs did
            self._refuse_if_switched(await self._check_kill_switch())
            admitted = Admitted(policy=await self._resolve_policy())
        self._refuse_if_switched(admitted.switch)
        self._policy = admitted.policy

    async def _resolve_policy(self) -> PolicySet:
        return await workflow.execute_local_activity(
            Activity.RESOLVE_POLICY,
            self._spec.policy,
            result_type=PolicySet,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=[E.POLICY_FILE_ERROR]),
        )

    async def _check_kill_switch(self) -> KillSwitchState | None:
        return await workflow.execute_local_activity(
            Activity.CHECK_KILL_SWITCH,
            SwitchQuery(agent=self._spec.name, tenant=self._tenant),
            result_type=KillSwitchState | None,
            start_to_close_timeout=timedelta(seconds=10),
        )

    def _refuse_if_switched(self, switch: KillSwitchState | None) -> None:
        if switch is not None:
            self._switched = switch
            self._set_state(RunState.FAILED, "nothing")
            raise self._fail(f"refused at start: {switch.describe()}", E.RUN_STOPPED)

    # -- tools -----------------------------------------------------------------------------

    async def _run_tool(
        self, call_id: str, name: str, raw_args: str, index: int, tools: dict[str, ToolDefinition]
    ) -> None:
        spec = self._spec
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
        arguments = args.model_dump(mode="json")
        record = record.model_copy(update={"arguments": arguments})
        self._repeat_breaker(record)
        decision: PolicyDecision | None = None
        approved_by: str | None = None
        if self._policy is not None:
            decision = evaluate(
                self._policy.bundle,
                ToolCallFacts(
                    agent=spec.name,
                    tenant=self._tenant,
                    autonomy=spec.autonomy,
                    tool=name,
                    side_effect=definition.meta.side_effect,
                    data_classes=definition.meta.data_classes,
                    arguments=arguments,
                ),
            )
            record = record.model_copy(update={"decision": decision})
            if decision.outcome is Outcome.DENY:
                self._deny(record, f"denied by policy rule {decision.rule_id}: {decision.reason}")
                return
            if decision.outcome is Outcome.REQUIRE_APPROVAL:
                request = await self._await_approval(name, arguments, decision, index)
                record = record.model_copy(update={"approval_request": request.id})
                if request.status is not RequestStatus.APPROVED:
                    if request.status is RequestStatus.REJECTED:
                        why = f"rejected by {request.decided_by}: {request.note}"
                    else:
                        why = f"approval expired without a decision; safe default {request.approval.safe_default.value}"
                    self._deny(record, why)
                    if request.status is RequestStatus.EXPIRED and request.approval.safe_default is SafeDefault.STOP:
                        self._set_state(RunState.FAILED, "nothing")
                        raise self._fail(f"approval {request.id} for {name} expired: {why}", E.APPROVAL_EXPIRED)
                    return
                approved_by = request.decided_by
                record = record.model_copy(update={"approved_by": approved_by})
        key = idempotency_key(info.workflow_id, self._step, index) if definition.meta.needs_idempotency_key else None
        ctx = ToolContext(
            run_id=info.workflow_id,
            agent=spec.name,
            tenant=self._tenant,
            step=self._step,
            call_index=index,
            agent_version=self._release.release_version,
            idempotency_key=key,
            decision=decision,
            approved_by=approved_by,
        )
        record = record.model_copy(update={"idempotency_key": key})
        self._check_stop(record)
        self._set_state(RunState.CALLING_TOOL, f"tool {name}")
        meta = definition.meta
        while True:
            try:
                result = await self._cancellable(
                    workflow.start_activity(
                        # The short name is the model's; history records the declared activity name.
                        definition.activity_name,
                        args=[ctx, args],
                        result_type=definition.result_model,
                        start_to_close_timeout=meta.start_to_close,
                        schedule_to_close_timeout=meta.schedule_to_close,
                        retry_policy=definition.retry_policy(),
                        cancellation_type=ActivityCancellationType.TRY_CANCEL,
                        summary=f"{name} {summarize(record.arguments)}",
                    )
                )
                break
            except ActivityError as err:
                cause = err.cause
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                if self._write_ran_out(meta, cause):
                    # Not done, and the tool did not say it never will be: a person decides, the run does not
                    # go on as if the write had happened.
                    resolution = await self._await_operator(record, index, message)
                    if resolution.action == "retry":
                        continue
                    message = f"given up by {resolution.by}: {resolution.reason} (the call failed: {message})"
                self._records.append(record.model_copy(update={"outcome": ToolOutcome.FAILED, "error": message}))
                self._pending.append(
                    ChatMessage(role="tool", tool_call_id=call_id, content=json.dumps({"error": f"tool failed: {message}"}))
                )
                return
        self._records.append(record)
        self._pending.append(ChatMessage(role="tool", tool_call_id=call_id, content=result.model_dump_json()))

    # -- writes that ran out of retries -------------------------------------------------------

    def _write_ran_out(self, meta, cause: BaseException | None) -> bool:
        """A write or external call that failed for a reason that may pass (its retries ran out, or it
        timed out), as opposed to one the tool refused for good (a non-retryable error)."""
        if meta.side_effect is SideEffect.READ or (isinstance(cause, ApplicationError) and cause.non_retryable):
            return False
        return workflow.patched(WRITES_PARK_PATCH)

    async def _await_operator(self, record: ToolCallRecord, index: int, message: str) -> ToolResolution:
        """Park until an operator retries the call or gives it up (or a kill switch stops the run)."""
        tool, spec = record.tool, self._spec
        self._resolution = None
        self._state, self._waiting_on = RunState.AWAITING_OPERATOR, f"an operator: {tool} could not be done"
        workflow.upsert_search_attributes([search.AWAITING_OPERATOR.value_set(True)])
        workflow.set_current_details(
            f"**awaiting operator** · `{tool}` {summarize(record.arguments)} ran out of retries: {message[:200]}"
            f" · `aifactory tool retry {workflow.info().workflow_id} --as YOU` or `tool give-up ... --reason ...`"
        )
        self._stuck += 1
        await self._notify(
            "tool_stuck", f"{record.step}.{index}/stuck/{self._stuck}", f"{tool} for {spec.name} could not be done: an operator must retry or give up",
            group=None, recipients=[spec.escalation_contact], channels=self._owner_channels(),
            details={"tool": tool, "step": record.step, "arguments": summarize(record.arguments, 200), "error": message[:500]},
        )  # fmt: skip
        try:
            await workflow.wait_condition(lambda: self._resolution is not None or self._stop is not None)
        finally:
            workflow.upsert_search_attributes([search.AWAITING_OPERATOR.value_set(False)])
        if self._stop is not None:
            self._records.append(record.model_copy(update={"outcome": ToolOutcome.FAILED, "error": f"{message}; the run was stopped while it waited"}))
            self._check_stop()
        assert self._resolution is not None
        self._set_state(RunState.CALLING_TOOL, f"tool {tool}")
        return self._resolution

    def _take_resolution(self, resolution: ToolResolution) -> StopAnswer:
        state = self._state.value
        if self._state is not RunState.AWAITING_OPERATOR:
            raise ApplicationError(f"this run is not waiting for an operator (it is {state})", type=E.MESSAGE_REFUSED, non_retryable=True)
        if resolution.action == "give_up" and not resolution.reason.strip():
            raise ApplicationError("giving up a call needs a reason", type=E.MESSAGE_REFUSED, non_retryable=True)
        self._resolution = resolution
        return StopAnswer(acknowledged=True, state=state)

    # -- cost envelope and model tiers --------------------------------------------------------

    def _model(self):
        spec = self._spec
        return [spec.model, *spec.model_tiers][self._tier]

    def _economise(self, note: BudgetNote | None) -> None:
        """Drop to the cheapest tier once the envelope is spent past the agent's `economise_at`."""
        at = self._spec.routing.economise_at
        if self._tier and at is not None and note is not None and note.limit_usd > 0 and note.spent_usd >= at * note.limit_usd:
            workflow.logger.info("envelope %.0f%% spent: back to the cheapest model tier", 100 * note.spent_usd / note.limit_usd)
            self._tier = 0

    def _envelope(self) -> EnvelopeRef | None:
        spec = self._spec
        env = spec.envelope
        if env is None:
            return None
        return EnvelopeRef(
            key=env.key(spec.name, self._tenant, workflow.now().date()), agent=spec.name,
            tenant=env.tenant_of(self._tenant), limit_usd=env.limit_usd, max_prompt_tokens=spec.breakers.max_context_tokens,
        )  # fmt: skip

    async def _envelope_alert(self, envelope: EnvelopeRef, pct: int, note: BudgetNote) -> None:
        await self._notify(
            "envelope_alert", f"{pct}", f"{envelope.agent}: {pct}% of the cost envelope spent ({envelope.key})",
            group=None, key=f"envelope/{envelope.key}/{pct}", recipients=[self._spec.owner.name], channels=self._owner_channels(),
            details={"envelope": envelope.key, "threshold": pct, "spent_usd": round(note.spent_usd, 6), "limit_usd": note.limit_usd},
        )  # fmt: skip

    async def _envelope_spent(self, envelope: EnvelopeRef, note: BudgetNote) -> None:
        """The envelope has no room for the next call: stop, or wait for an operator, as the agent says."""
        spec = self._spec
        assert spec.envelope is not None
        await self._envelope_alert(envelope, 100, note)
        why = f"cost envelope spent: ${note.spent_usd:.4f} of ${note.limit_usd:.4f} this {spec.envelope.period}"
        if spec.envelope.on_exhausted == "stop":
            self._set_state(RunState.FAILED, "nothing")
            self._envelope_ended = True
            raise self._fail(why, E.BUDGET_EXCEEDED)
        self._budget_decision = None
        self._state, self._waiting_on = RunState.AWAITING_BUDGET, "an operator: raise the envelope or stop the run"
        workflow.set_current_details(f"**awaiting budget** · {why} · `aifactory envelope raise {spec.name}` or `stop`")
        await workflow.wait_condition(lambda: self._budget_decision is not None or self._stop is not None)
        self._check_stop()
        decision = self._budget_decision
        assert decision is not None
        if decision.action == "stop":
            self._set_state(RunState.FAILED, "nothing")
            self._envelope_ended = True
            raise self._fail(f"{why}; stopped by {decision.by}" + (f": {decision.note}" if decision.note else ""), E.BUDGET_EXCEEDED)
        self._set_state(RunState.CALLING_MODEL, f"model {self._model().name}")

    async def _cancellable(self, handle: workflow.ActivityHandle) -> Any:
        """Await an activity that a kill switch may cancel; a cancelled one ends the run as stopped."""
        self._inflight = handle
        try:
            return await handle
        except (ActivityError, asyncio.CancelledError):
            self._check_stop()
            raise
        finally:
            self._inflight = None

    def _check_stop(self, record: ToolCallRecord | None = None) -> None:
        """At a step boundary: end the run if a kill switch stopped it (the call about to run is not run)."""
        order = self._stop
        if order is None:
            return
        if self._listed_awaiting and not self._legacy:  # it waits no more: say so in the listings
            self._unlist_awaiting()
        if record is not None:
            self._ran_nothing(record, ToolOutcome.STOPPED, "not run: the run was stopped")
        self._set_state(RunState.FAILED, "nothing")
        switch = f" (kill switch #{order.switch_id})" if order.switch_id is not None else ""
        raise self._fail(f"stopped by {order.by}{switch}: {order.reason}", E.RUN_STOPPED)

    def _repeat_breaker(self, record: ToolCallRecord) -> None:
        """End the run before one tool runs with the same arguments once more than the agent allows."""
        limit = self._spec.breakers.max_repeated_calls
        ran = sum(1 for r in self._records if r.outcome is ToolOutcome.OK and r.tool == record.tool and r.arguments == record.arguments)
        if ran >= limit and workflow.patched(BREAKERS_PATCH):
            why = f"circuit breaker: {record.tool} already ran {ran} times with these arguments (limit {limit})"
            self._ran_nothing(record, ToolOutcome.STOPPED, why)
            self._set_state(RunState.FAILED, "nothing")
            raise self._fail(why, E.REPEATED_TOOL_CALL)

    def _ran_nothing(self, record: ToolCallRecord, outcome: ToolOutcome | None = None, error: str | None = None) -> ToolCallRecord:
        """Record a call that ran no activity; it reaches history with the next model call (or the failure)."""
        if outcome is not None:
            record = record.model_copy(update={"outcome": outcome, "error": error})
        self._records.append(record)
        self._settled.append(record)
        return record

    def _next_required(self) -> str | None:
        """The first required tool not yet called to a conclusion (ran, denied or failed)."""
        done = {r.tool for r in self._records if r.outcome in (ToolOutcome.OK, ToolOutcome.DENIED, ToolOutcome.FAILED)}
        return next((t for t in self._spec.required_tools if t not in done), None)

    def _reject(self, record: ToolCallRecord) -> None:
        """Report an invalid call to the model as a tool error; fail the run past the bound."""
        self._invalid += 1
        self._ran_nothing(record)
        self._pending.append(
            ChatMessage(role="tool", tool_call_id=record.call_id, content=json.dumps({"error": record.error}))
        )
        workflow.logger.info("rejected tool call %s: %s", record.tool, record.error)
        if self._invalid > MAX_INVALID_TOOL_CALLS:
            self._set_state(RunState.FAILED, "nothing")
            raise self._fail(
                f"model proposed {self._invalid} invalid tool calls (limit {MAX_INVALID_TOOL_CALLS}); "
                f"last: {record.error}",
                E.TOOL_ARGUMENTS_INVALID,
            )

    def _deny(self, record: ToolCallRecord, why: str) -> None:
        """Tell the model the call was not done (it may try another way); fail past the bound."""
        self._denials += 1
        record = self._ran_nothing(record, ToolOutcome.DENIED, why)
        d = record.decision
        content = {"error": "denied", "reason": why}
        if d is not None:
            content |= {"rule": d.rule_id, "policy": d.bundle, "policy_sha256": d.bundle_sha256}
        self._pending.append(ChatMessage(role="tool", tool_call_id=record.call_id, content=json.dumps(content)))
        if self._denials > MAX_DENIALS:
            self._set_state(RunState.FAILED, "nothing")
            raise self._fail(f"{self._denials} tool calls were denied (limit {MAX_DENIALS}); last: {why}", E.POLICY_DENIED)

    async def _await_approval(
        self, tool: str, arguments: dict, decision: PolicyDecision, index: int
    ) -> ApprovalRequest:
        """Park durably until a person decides, escalating tier by tier on timers; then the safe default."""
        assert decision.approval is not None
        now = workflow.now()
        deadline = await self._tier_deadline(decision.approval.chain[0], now)
        request = self._book.open(
            ApprovalRequest(
                id=f"{self._step}.{index}", tool=tool, arguments=arguments, rule_id=decision.rule_id,
                reason=decision.reason, approval=decision.approval, requester=self._inp.requester if self._inp else "",
                tenant=self._tenant, requested_at=now, deadline=deadline,
            )
        )  # fmt: skip
        event, subject = "requested", f"Approval needed: {tool} for {self._spec.name}"
        while True:
            self._show_awaiting(request)
            await self._notify(
                f"approval_{event}", f"{request.id}/{event}", subject, group=request.group,
                details={"request": request.id, "tool": tool, "arguments": summarize(arguments, 200),
                         "rule": decision.rule_id, "reason": decision.reason,
                         "deadline": request.deadline.isoformat(), "tier": request.tier + 1},
            )  # fmt: skip
            if request.terminal:
                break
            try:
                remaining = max(request.deadline - workflow.now(), timedelta(milliseconds=1))
                await workflow.wait_condition(lambda: request.terminal or self._stop is not None, timeout=remaining)
                self._check_stop()
                break
            except asyncio.CancelledError:  # the run is cancelled while it waits: the listings must not say it waits
                if self._listed_awaiting and not self._legacy:
                    self._unlist_awaiting()
                raise
            except asyncio.TimeoutError:
                now, nxt = workflow.now(), request.tier + 1
                deadline = await self._tier_deadline(request.approval.chain[nxt], now) if nxt < len(request.approval.chain) else None
                if request.terminal:  # decided while the next tier's deadline was being computed
                    break
                if self._book.escalate(request.id, now, deadline):
                    event = f"escalated_tier{request.tier + 1}"
                    subject = f"Escalated ({request.tier + 1}/{len(request.approval.chain)}): {tool} for {self._spec.name}"
                    continue
                await self._notify(
                    "approval_expired", f"{request.id}/expired",
                    f"No decision on {tool}: safe default {request.approval.safe_default.value} applied",
                    group=request.group, details={"request": request.id, "reason": request.note},
                )  # fmt: skip
                break
        if request.status in (RequestStatus.APPROVED, RequestStatus.REJECTED):
            await self._notify(
                "approval_decided", f"{request.id}/decided", f"{tool} {request.status.value} by {request.decided_by}",
                group=request.group,
                details={"request": request.id, "verdict": request.status.value, "by": request.decided_by, "note": request.note or "",
                         "waited_s": round((request.decided_at - request.requested_at).total_seconds(), 3) if request.decided_at else None},
            )  # fmt: skip
        self._unlist_awaiting()
        return request

    async def _tier_deadline(self, tier: Tier, now: datetime) -> datetime:
        """When `tier`, asked at `now`, escalates: wall-clock SLAs here; business-hours ones from the group's
        calendar, computed by a local activity so the deadline is in history and replays on any zone data."""
        calendar = self._policy.directory.calendar(tier.group) if self._policy else None
        wall = now + tier.sla
        # The patch check comes last: only a business-clock tier writes its marker, so histories of
        # wall-clock tiers (all recorded before this change) replay command for command.
        if tier.clock is not Clock.BUSINESS or calendar is None or not workflow.patched(BUSINESS_HOURS_PATCH):
            return wall
        try:
            result = await workflow.execute_local_activity(
                Activity.COMPUTE_BUSINESS_DEADLINE, BusinessDeadlineInput(calendar=calendar, start=now, sla=tier.sla),
                result_type=BusinessDeadlineResult, start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=[E.UNKNOWN_TIME_ZONE]),
            )  # fmt: skip
        except (ActivityError, ApplicationError) as e:  # a local activity's failure arrives unwrapped
            cause = e.cause if isinstance(e, ActivityError) else e
            if isinstance(cause, ActivityCancelled):
                raise
            # Waiting for working hours this worker cannot compute must not strand the request: the
            # wall-clock SLA asks the next tier (or applies the safe default) sooner, never later.
            workflow.logger.warning("business-hours deadline for group %s not computed, using the wall clock: %s", tier.group, cause)
            return wall
        return result.deadline

    def _unlist_awaiting(self) -> None:
        self._listed_awaiting = False
        workflow.upsert_search_attributes([search.AWAITING_APPROVAL.value_set(False), search.APPROVAL_GROUP.value_unset()])

    def _show_awaiting(self, request: ApprovalRequest) -> None:
        self._listed_awaiting = True
        workflow.upsert_search_attributes(
            [search.AWAITING_APPROVAL.value_set(True), search.APPROVAL_GROUP.value_set(request.group)]
        )
        self._state = RunState.AWAITING_APPROVAL
        self._waiting_on = f"approval {request.id} from {request.group}"
        workflow.set_current_details(
            f"**awaiting approval** from **{request.group}** (tier {request.tier + 1}/{len(request.approval.chain)})"
            f" · tool `{request.tool}` {summarize(request.arguments)} · rule {request.rule_id}: {request.reason}"
            f" · deadline {request.deadline:%Y-%m-%d %H:%M:%S} UTC · request {request.id}"
        )

    def _owner_channels(self) -> list[str]:
        """The agent's named owner and its escalation contact, as the spec gives them (each once)."""
        spec = self._release.spec if self._release else None
        return list(dict.fromkeys([spec.owner.contact, spec.escalation_contact])) if spec else []

    async def _alert_owner(self, failure: ApplicationError) -> None:
        """Tell the owner when a breaker tripped or a kill switch stopped (or refused) this run."""
        spec = self._release.spec if self._release else None
        if spec is None or self._legacy or (failure.type not in BREAKER_TRIPS and failure.type != E.RUN_STOPPED):
            return
        switch_id = self._stop.switch_id if self._stop is not None else (self._switched.id if self._switched else None)
        if (failure.type == E.RUN_STOPPED and switch_id is None) or (failure.type == E.BUDGET_EXCEEDED and self._envelope_ended):
            return  # a person stopped this one run, or the envelope did (its owner had the envelope's alerts)
        if not workflow.patched(OWNER_ALERTS_PATCH):
            return
        if failure.type == E.RUN_STOPPED:  # one alert per switch and agent, however many runs it stops
            kind, key, subject = "kill_switch", f"kill-switch/{switch_id}/{spec.name}", f"{spec.name}: kill switch #{switch_id} is stopping its runs"
        else:
            kind, key, subject = "breaker_tripped", None, f"{spec.name}: circuit breaker tripped ({failure.type})"
        await self._notify(
            kind, "breaker", subject, group=None, key=key, recipients=[spec.owner.name], channels=self._owner_channels(),
            details={"error": failure.type, "reason": str(failure.message)[:500], "owner": spec.owner.name, "version": spec.version},
        )  # fmt: skip

    async def _notify(
        self, kind: str, suffix: str, subject: str, *, group: str | None, details: dict, key: str | None = None,
        recipients: list[str] | None = None, channels: list[str] | None = None,
    ) -> None:
        info = workflow.info()
        directory = self._policy.directory if self._policy else None
        if recipients is None:
            recipients = directory.members(group) if (directory and group) else []
        if channels is None:  # an approver group's own Slack channel
            settings = directory.group(group) if (directory and group) else None
            channels = [settings.slack_channel] if settings and settings.slack_channel else []
        notification = Notification(
            key=key or f"{info.workflow_id}/{suffix}", kind=kind, run_id=info.workflow_id, agent=self._agent,
            tenant=self._tenant, group=group, recipients=recipients, subject=subject, details=details, channels=channels,
        )  # fmt: skip
        try:
            await workflow.execute_activity(
                Activity.SEND_NOTIFICATION,
                notification,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=6),
                summary=f"notify {kind}" + (f" {group}" if group else ""),
            )
        except ActivityError as err:
            # A notification must never hold up the approval clock or the run: the failure is logged
            # and the outbox row (if it was written) stays for operators.
            workflow.logger.error("notification %s/%s failed: %s", kind, suffix, err.cause or err)

    # -- bookkeeping -----------------------------------------------------------------------

    def _fail(self, message: str, type_: str) -> ApplicationError:
        """A typed, non-retryable run failure carrying what the audit trail finds nowhere else in history."""
        details = RunFailure(step=self._step, usage=self._usage, settled=self._settled)
        return ApplicationError(message, details, type=type_, non_retryable=True)

    @property
    def _agent(self) -> str:
        if self._release is not None:
            return self._release.spec.name
        parts = workflow.info().workflow_id.split("/")  # before the input is read: the business key
        return parts[1] if len(parts) >= 4 else "unknown"

    @property
    def _tenant(self) -> str:
        if self._inp is not None:
            return self._inp.tenant
        parts = workflow.info().workflow_id.split("/")
        return parts[2] if len(parts) >= 4 else "unknown"

    def _system_prompt(self) -> str:
        """The opening system message of runs recorded with their release's prompt in the input."""
        assert self._inp is not None and self._inp.release is not None
        release = self._inp.release
        return system_prompt(release.prompt, release.spec.output_schema)

    def _set_state(self, state: RunState, waiting_on: str) -> None:
        self._state = state
        self._waiting_on = waiting_on
        limit = self._release.spec.step_limit if self._release else 0
        workflow.set_current_details(
            f"**{state.value}** · step {self._step}/{limit} · waiting on {waiting_on} · "
            f"tokens {self._usage.total_tokens} · cost ${self._usage.cost_usd:.4f}"
        )

    def _label_run(self) -> None:
        """Set the run's search attributes from its release (a starter's own labels are corrected)."""
        release = self._release
        assert release is not None
        wanted = {
            search.AGENT_NAME: release.spec.name,
            search.AGENT_VERSION: release.release_version,
            search.AGENT_OWNER: release.spec.owner.name,
            search.TENANT: self._tenant,
        }
        present = workflow.info().typed_search_attributes
        updates = [key.value_set(v) for key, v in wanted.items() if present.get(key) != v]
        if not self._legacy and (present.get(search.AWAITING_APPROVAL) or present.get(search.APPROVAL_GROUP)):
            updates += [search.AWAITING_APPROVAL.value_set(False), search.APPROVAL_GROUP.value_unset()]
        if updates:
            workflow.upsert_search_attributes(updates)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        budget = self._inp.history_budget_events if self._inp else 0
        return bool(budget) and info.get_current_history_length() >= budget

    def _continue_as_new(self) -> None:
        inp, release = self._inp, self._release
        assert inp is not None and release is not None
        carry = RunCarry(
            step=self._step,
            transcript_seq=self._seq,
            usage=self._usage,
            invalid_tool_calls=self._invalid,
            repairs=self._repairs,
            tool_calls=self._records,
            pending=self._pending,
            policy=self._policy,
            ledger=self._ledger,
            denials=self._denials,
            settled=self._settled,
            context_tokens=self._context_tokens,
            tier=self._tier,
            release=PinnedRelease(spec=release.spec, prompt_sha256=release.prompt_sha256),
            lineage=workflow.info().first_execution_run_id,
            nonces=self._nonces[-MAX_NONCES_KEPT:],
        )
        # The next execution gets what a start gets, plus the carry; the release text stays behind.
        workflow.continue_as_new(
            AgentRunInput(
                agent=release.spec.name, tenant=inp.tenant, run_key=inp.run_key, input=inp.input, requester=inp.requester,
                labels=inp.labels, history_budget_events=inp.history_budget_events, carry=carry,
            )
        )  # fmt: skip
