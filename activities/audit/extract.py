"""Read an agent run's story out of its workflow history.

Not workflow-safe (decodes payloads with the client's data converter, which may
decrypt). A pure function of one execution's history: the same history gives
the same records, each stamped with the event that completed it, so an export
of a running run can stop at its last event and a later export carries on
after it without changing what is already stored.

Where each record comes from:

- run_started: the first execution's start event (requester, business input, labels).
- run_admitted: the `admit_run` local activity's marker: the release and policy the
  worker resolved for the run (or why it refused it). The prompt hash a run is
  recorded under is the one its model activity reports having sent.
- model_call: a `call_model` activity closing (model, tokens, cost, latency from
  schedule to close, attempts).
- tool_call: a tool activity closing (arguments, result, idempotency key, the
  policy decision and approver it ran under); or, for calls that ran nothing
  (outside the grant, invalid, denied, not approved), the `settled` list the
  workflow sends with its next model call or attaches to its failure.
- approval_*: `send_notification` activities (requested, escalated, expired,
  refused, decided) and the approve / reject signals and `decide_approval`
  updates (approval_attempt, accepted or refused; one the exporter cannot read
  is recorded as refused, with the reason, and the story goes on).
- run_continued / run_completed / run_failed / ...: the execution's last event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from contracts import errors as E
from contracts.audit import AuditRecord, Decision, RecordKind as K
from contracts.approval import ApprovalDecision
from contracts.model import ModelCallInput, ModelCallResult
from contracts.notify import Notification
from contracts.agent import PinnedRelease
from contracts.control import RunAdmitted
from contracts.policy import Outcome, PolicyDecision, PolicySet
from contracts.run import AgentRunInput, AgentRunResult, RunFailure
from contracts.tools import ToolCallRecord, ToolContext, ToolOutcome
from contracts.budget import BudgetDecision
from contracts.control import StopOrder, ToolResolution
from contracts.wire import AGENT_SIGNALS, Activity
from contracts.wire import Update as U

MODEL_ACTIVITY = Activity.CALL_MODEL
NOTIFY_ACTIVITY = Activity.SEND_NOTIFICATION
APPROVAL_NOTICES = {
    "approval_requested": K.APPROVAL_REQUESTED,
    "approval_expired": K.APPROVAL_EXPIRED,
    "approval_refused": K.APPROVAL_REFUSED,
    "approval_decided": K.APPROVAL_DECIDED,
}

#: Outcomes of tool calls that never ran an activity.
RAN_NOTHING = frozenset({ToolOutcome.INVALID_ARGUMENTS, ToolOutcome.NOT_GRANTED, ToolOutcome.UNKNOWN_TOOL, ToolOutcome.DENIED, ToolOutcome.STOPPED})


@dataclass
class RunFacts:
    """What one execution's history says about the run as a whole."""

    workflow_id: str
    execution: str
    first_execution: str
    continued_from: str | None
    started_at: datetime
    input: AgentRunInput
    policy: PolicySet | None = None
    release: PinnedRelease | None = None
    """The release the run ran under: from its admission, its carry, or (older runs) its input."""
    prompt_sha256: str | None = None
    """SHA-256 of the prompt the model activity reported sending (older runs: the input release's)."""
    status: str = "running"
    outcome: str | None = None
    closed_at: datetime | None = None
    continued_to: str | None = None
    result: AgentRunResult | None = None
    last_event_id: int = 0


@dataclass
class Extract:
    facts: RunFacts
    records: list[AuditRecord] = field(default_factory=list)


def _at(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime(tzinfo=timezone.utc)


def _decision(d: PolicyDecision | None) -> dict[str, Any]:
    if d is None:
        return {}
    kind = {Outcome.ALLOW: Decision.ALLOW, Outcome.DENY: Decision.DENY, Outcome.REQUIRE_APPROVAL: Decision.APPROVAL}[d.outcome]
    return {"decision": kind, "rule_id": d.rule_id, "policy": d.bundle, "policy_sha256": d.bundle_sha256}


class UnreadableHistory(ValueError):
    """The exporter cannot read the run's start (a key it lacks, altered bytes): the run is a gap."""


class _Reader:
    def __init__(self, history: WorkflowHistory, execution: str, converter: DataConverter) -> None:
        self.history = history
        self.execution = execution
        self.converter = converter
        self.records: list[AuditRecord] = []
        self.scheduled: dict[int, tuple[str, Any, HistoryEvent]] = {}
        self.attempts: dict[int, int] = {}
        self.updates: dict[str, tuple[str, Any, str | None, str]] = {}
        """update id -> (name, the decoded value or None, why it could not be read, client identity)."""
        self.proposed: dict[str, str] = {}
        """call id -> raw arguments the model proposed, for calls that never ran."""
        self.reported: set[tuple[int, str]] = set()
        self.carries_settled = False
        self.step = 0
        self.facts: RunFacts | None = None

    async def decode(self, payloads, hint) -> Any:
        if not payloads or not payloads.payloads:
            return None
        values = await self.converter.decode(payloads.payloads, [hint] * len(payloads.payloads) if hint else None)
        return values[0] if len(values) == 1 else values

    def add(self, event: HistoryEvent, kind: K, **fields: Any) -> None:
        self.records.append(AuditRecord(kind=kind, at=_at(event), execution=self.execution, event_id=event.event_id, **fields))

    def settled(self, event: HistoryEvent, calls: list[ToolCallRecord]) -> None:
        for call in calls:
            if (call.step, call.call_id) in self.reported:  # sent again with a resent model call
                continue
            self.reported.add((call.step, call.call_id))
            arguments = call.arguments if call.arguments is not None else self.proposed.get(call.call_id)
            self.add(
                event, K.TOOL_CALL, step=call.step, tool=call.tool, arguments=arguments, outcome=call.outcome.value,
                detail=call.error, request_id=call.approval_request, person=call.approved_by, **_decision(call.decision),
            )  # fmt: skip

    # -- events ----------------------------------------------------------------------------

    async def started(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_started_event_attributes
        try:
            inp: AgentRunInput = await self.decode(a.input, AgentRunInput)
        except Exception as e:
            raise UnreadableHistory(f"its start input cannot be read: {type(e).__name__}: {_message(e)}"[:500]) from None
        carry = inp.carry
        release = (carry.release if carry else None) or (inp.release.pinned() if inp.release else None)
        self.facts = RunFacts(
            workflow_id=a.workflow_id or self.history.workflow_id, execution=self.execution,
            first_execution=a.first_execution_run_id or self.execution,
            continued_from=a.continued_execution_run_id or None, started_at=_at(event), input=inp,
            policy=carry.policy if carry else None, release=release,
            prompt_sha256=inp.release.prompt_sha256 if (inp.release and not carry) else None,
        )  # fmt: skip
        self.step = carry.step if carry else 0
        if carry is None:
            fields: dict[str, Any] = {}
            if inp.release is not None:  # started with its release, before workers resolved them
                what = f"agent {inp.release.spec.name} {inp.release.release_version}"
                fields = {"version": inp.release.release_version, "prompt_sha256": inp.release.prompt_sha256}
            else:
                what = f"agent {inp.agent_name}" + (f" (version {inp.version} asked)" if inp.version else "")
            labels = "".join(f" · {k}={v}" for k, v in sorted(inp.labels.items()))
            self.add(
                event, K.RUN_STARTED, person=inp.requester or None, arguments=inp.input, agent=inp.agent_name,
                tenant=inp.tenant, run_key=inp.run_key, detail=f"{what} · tenant {inp.tenant} · run key {inp.run_key}{labels}",
                **fields,
            )  # fmt: skip

    async def marker(self, event: HistoryEvent) -> None:
        a = event.marker_recorded_event_attributes
        if a.marker_name != "core_local_activity" or "result" not in a.details:
            return
        kind = _local_activity_type(a.details.get("data"))
        if kind == "admit_run":
            admitted: RunAdmitted = await self.decode(a.details["result"], RunAdmitted)
            self.admitted(event, admitted)
            return
        try:
            value = await self.decode(a.details["result"], PolicySet)
        except Exception:  # another local activity's result: not ours to read
            return
        if isinstance(value, PolicySet) and self.facts is not None:  # runs that resolved it at start
            self.admitted(event, RunAdmitted(policy=value))

    def admitted(self, event: HistoryEvent, admitted: RunAdmitted) -> None:
        f = self.facts
        assert f is not None
        f.release = admitted.release or f.release
        f.policy = admitted.policy or f.policy
        fields: dict[str, Any] = {}
        if admitted.release is not None:
            r = admitted.release
            fields |= {"agent": r.spec.name, "version": r.release_version, "prompt_sha256": r.prompt_sha256,
                       "detail": f"release {r.spec.name} {r.release_version} · prompt sha256 {r.prompt_sha256}"}  # fmt: skip
        if admitted.policy is not None:
            b = admitted.policy.bundle
            fields |= {"policy": f"{b.name}@{b.version}", "policy_sha256": b.sha256}
        if admitted.refused is not None:
            fields |= {"outcome": admitted.refused.type, "detail": admitted.refused.message}
        else:
            fields["outcome"] = "admitted"
        self.add(event, K.RUN_ADMITTED, **fields)

    async def scheduled_activity(self, event: HistoryEvent) -> None:
        a = event.activity_task_scheduled_event_attributes
        kind = a.activity_type.name
        if kind == MODEL_ACTIVITY:
            request: ModelCallInput = await self.decode(a.input, ModelCallInput)
            self.step = request.step or self.step + 1
            self.carries_settled |= "settled" in request.model_fields_set
            self.settled(event, request.settled)
            value: Any = request
        elif kind == NOTIFY_ACTIVITY:
            value = await self.decode(a.input, Notification)
            self.notice(event, value)
        else:
            values = await self.converter.decode(a.input.payloads, [ToolContext, None]) if len(a.input.payloads) == 2 else None
            value = values
        self.scheduled[event.event_id] = (kind, value, event)

    def notice(self, event: HistoryEvent, n: Notification) -> None:
        d = n.details
        if n.kind == "tool_stuck":
            self.add(event, K.TOOL_STUCK, tool=d.get("tool"), step=d.get("step"), detail=d.get("error"))
            return
        kind = APPROVAL_NOTICES.get(n.kind)
        if kind is None and n.kind.startswith("approval_escalated"):
            kind = K.APPROVAL_ESCALATED
        if kind is None:
            return
        fields: dict[str, Any] = {"group": n.group, "request_id": d.get("request")}
        if kind is K.APPROVAL_REQUESTED:
            fields |= {"tool": d.get("tool"), "rule_id": d.get("rule"), "detail": d.get("reason"), "note": f"deadline {d.get('deadline')}"}
        elif kind is K.APPROVAL_ESCALATED:
            fields |= {"tool": d.get("tool"), "detail": f"tier {d.get('tier')}", "note": f"deadline {d.get('deadline')}"}
        elif kind is K.APPROVAL_REFUSED:
            fields |= {"person": d.get("person"), "outcome": d.get("verdict"), "detail": d.get("reason")}
        elif kind is K.APPROVAL_DECIDED:
            fields |= {"person": d.get("by"), "outcome": d.get("verdict"), "note": d.get("note") or None, "detail": n.subject}
        else:
            fields |= {"detail": d.get("reason")}
        self.add(event, kind, **fields)

    async def closed_activity(self, event: HistoryEvent, scheduled_id: int, result: Any, failure: Any) -> None:
        kind, value, sched = self.scheduled.pop(scheduled_id, (None, None, None))
        if kind is None or kind == NOTIFY_ACTIVITY:
            return
        latency = int((_at(event) - _at(sched)).total_seconds() * 1000)
        attempts = self.attempts.pop(scheduled_id, 1)
        error = None
        if failure is not None:
            exc = await self.converter.decode_failure(failure)
            error = _message(exc)
        if kind == MODEL_ACTIVITY:
            request: ModelCallInput = value
            common = {"step": request.step or self.step, "latency_ms": latency, "attempts": attempts}
            if error is not None:
                self.add(event, K.MODEL_CALL, model=request.model.name, outcome="failed", detail=error, **common)
                return
            res: ModelCallResult = await self.decode(result, ModelCallResult)
            if res.prompt_sha256 and self.facts is not None:  # what the model was actually sent
                self.facts.prompt_sha256 = res.prompt_sha256
            if res.admitted is not None:  # a run's first call: the policy it is gated by, or its refusal
                if res.admitted.policy is not None and self.facts is not None:
                    self.admitted(event, RunAdmitted(policy=res.admitted.policy))
                if res.admitted.switch is not None:
                    return  # refused under a kill switch: no call was made (the run's failure says so)
            for call in res.message.tool_calls:
                self.proposed[call.id] = call.arguments
            self.add(
                event, K.MODEL_CALL, model=res.model, input_tokens=res.usage.prompt_tokens,
                output_tokens=res.usage.completion_tokens, cost_usd=res.usage.cost_usd, outcome="ok",
                detail=f"finish {res.finish_reason}" + (" · tool call parsed from text" if res.tool_calls_from_text else ""),
                prompt_sha256=res.prompt_sha256, **common,
            )  # fmt: skip
            return
        ctx, args = value if isinstance(value, list) else (None, None)
        fields: dict[str, Any] = {"tool": kind, "arguments": args, "latency_ms": latency, "attempts": attempts}
        if isinstance(ctx, ToolContext):
            fields |= {"step": ctx.step, "idempotency_key": ctx.idempotency_key, "person": ctx.approved_by}
            fields |= _decision(ctx.decision)
        if error is not None:
            self.add(event, K.TOOL_CALL, outcome=ToolOutcome.FAILED.value, detail=error, **fields)
        else:
            self.add(event, K.TOOL_CALL, outcome=ToolOutcome.OK.value, result=await self.decode(result, None), **fields)

    async def signaled(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_signaled_event_attributes
        if a.signal_name not in AGENT_SIGNALS:
            return
        client = f" · client {a.identity}" if a.identity else ""
        try:
            if len(a.input.payloads) != 1:
                raise ValueError(f"it carries {len(a.input.payloads)} values, not one decision")
            d: ApprovalDecision = await self.decode(a.input, ApprovalDecision)
        except Exception as e:  # the run refused it too: it is on record as refused, and the story goes on
            self.add(event, K.APPROVAL_ATTEMPT, outcome="refused", detail=f"signal {a.signal_name} unreadable: {_message(e)}"[:500] + client)
            return
        self.add(
            event, K.APPROVAL_ATTEMPT, person=d.approver, outcome=a.signal_name, note=d.note, request_id=d.request_id,
            detail=f"signal {a.signal_name}{_proof(d.signature)}{client}", signer=_signer(d.signature),
        )  # fmt: skip

    async def update_accepted(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_update_accepted_event_attributes
        name = a.accepted_request.input.name
        model = {U.DECIDE_APPROVAL: ApprovalDecision, U.STOP: StopOrder, U.BUDGET_DECISION: BudgetDecision, U.RESOLVE_TOOL: ToolResolution}.get(name)
        value, problem = None, None
        try:
            if model is None:
                raise ValueError("this run takes no such update")
            if len(a.accepted_request.input.args.payloads) != 1:
                raise ValueError(f"it carries {len(a.accepted_request.input.args.payloads)} values, not one {model.__name__}")
            value = await self.decode(a.accepted_request.input.args, model)
        except Exception as e:
            problem = f"update {name} unreadable: {_message(e)}"[:500]
        self.updates[a.accepted_request.meta.update_id] = (name, value, problem, a.accepted_request.meta.identity)

    async def update_completed(self, event: HistoryEvent) -> None:
        a = event.workflow_execution_update_completed_event_attributes
        name, value, problem, identity = self.updates.pop(a.meta.update_id, (None, None, None, None))
        if name is None:
            return
        refused = None
        if a.outcome.HasField("failure"):
            refused = problem or _message(await self.converter.decode_failure(a.outcome.failure))
        client = f" · client {identity}" if identity else ""
        if name == U.DECIDE_APPROVAL:
            d: ApprovalDecision | None = value
            detail = f"update refused: {refused}" if refused else "update accepted"
            self.add(
                event, K.APPROVAL_ATTEMPT, person=d.approver if d else None, outcome=d.verdict.value if d else "refused",
                note=d.note if d else None, request_id=d.request_id if d else None,
                detail=detail + (_proof(d.signature) if d else "") + client, signer=_signer(d.signature) if d else None,
            )  # fmt: skip
        elif refused is not None:
            by = getattr(value, "by", None)
            self.add(event, K.MESSAGE_REFUSED, outcome=name, person=by, detail=f"{refused}{client}", signer=_signer(getattr(value, "signature", None)))
        elif name == U.STOP:  # a kill switch: who threw it and why
            order: StopOrder = value
            switch = f"kill switch #{order.switch_id}: " if order.switch_id is not None else ""
            self.add(event, K.KILLED, person=order.by, outcome="stop", detail=f"{switch}{order.reason}{_proof(order.signature)}", signer=_signer(order.signature))
        elif name == U.RESOLVE_TOOL:
            tr: ToolResolution = value
            self.add(event, K.TOOL_RESOLVED, person=tr.by, outcome=tr.action, note=tr.reason or None, detail=f"resolved{_proof(tr.signature)}{client}", signer=_signer(tr.signature))
        elif name == U.BUDGET_DECISION:
            bd: BudgetDecision = value
            self.add(event, K.BUDGET_DECISION, person=bd.by, outcome=bd.action, note=bd.note or None, detail=f"cost envelope spent{_proof(bd.signature)}", signer=_signer(bd.signature))

    async def closed_run(self, event: HistoryEvent, which: str) -> None:
        f = self.facts
        assert f is not None
        f.closed_at = _at(event)
        if which == "workflow_execution_completed_event_attributes":
            res: AgentRunResult = await self.decode(event.workflow_execution_completed_event_attributes.result, AgentRunResult)
            f.status, f.result = "completed", res
            if not self.carries_settled:  # recorded before model calls carried `settled`: the result lists them
                self.settled(event, [t for t in res.tool_calls if t.outcome in RAN_NOTHING])
            self.add(
                event, K.RUN_COMPLETED, step=res.steps, result=res.output, input_tokens=res.usage.prompt_tokens,
                output_tokens=res.usage.completion_tokens, cost_usd=res.usage.cost_usd, outcome="completed",
                policy=res.policy_bundle, policy_sha256=res.policy_sha256,
            )  # fmt: skip
        elif which == "workflow_execution_failed_event_attributes":
            exc = await self.converter.decode_failure(event.workflow_execution_failed_event_attributes.failure)
            kind = exc.type if isinstance(exc, ApplicationError) and exc.type else type(exc).__name__
            details = _failure_details(exc)
            if details is not None:
                self.settled(event, details.settled)
            f.status, f.outcome = "failed", kind
            if kind == E.BUDGET_EXCEEDED:
                self.add(event, K.BUDGET_EXCEEDED, outcome=kind, detail=_message(exc))
            usage = details.usage if details else None
            self.add(
                event, K.RUN_FAILED, outcome=kind, detail=_message(exc), step=details.step if details else None,
                input_tokens=usage.prompt_tokens if usage else None, output_tokens=usage.completion_tokens if usage else None,
                cost_usd=usage.cost_usd if usage else None,
            )  # fmt: skip
        elif which == "workflow_execution_canceled_event_attributes":
            f.status = f.outcome = "canceled"
            self.add(event, K.RUN_CANCELED, outcome="canceled")
        elif which == "workflow_execution_terminated_event_attributes":
            a = event.workflow_execution_terminated_event_attributes
            f.status = f.outcome = "terminated"
            self.add(event, K.RUN_TERMINATED, outcome="terminated", person=a.identity or None, detail=a.reason or None)
        elif which == "workflow_execution_timed_out_event_attributes":
            f.status = f.outcome = "timed_out"
            self.add(event, K.RUN_TIMED_OUT, outcome="timed_out")
        elif which == "workflow_execution_continued_as_new_event_attributes":
            a = event.workflow_execution_continued_as_new_event_attributes
            f.status, f.continued_to = "continued", a.new_execution_run_id
            self.add(event, K.RUN_CONTINUED, detail=f"continued as new execution {a.new_execution_run_id}", step=self.step)


def _signer(sig) -> str | None:
    """Who signed a decision (`signer`, for the record), or None when it came unsigned."""
    return sig.signer if sig is not None else None


def _proof(sig) -> str:
    if sig is None:
        return " · unsigned"
    via = f" for the person, on {sig.evidence}" if sig.evidence else ""
    return f" · signed by {sig.signer} (key {sig.key_id}){via}"


def _local_activity_type(data) -> str | None:
    """The activity type a local-activity marker records (its `data` detail is Core's own JSON)."""
    try:
        return json.loads(data.payloads[0].data).get("activity_type") if data and data.payloads else None
    except (ValueError, AttributeError):
        return None


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    cause = exc.__cause__
    while cause is not None:  # an ActivityError's own message is generic; the cause says why
        message = getattr(cause, "message", None) or str(cause)
        cause = cause.__cause__
    return message


def _failure_details(exc: BaseException) -> RunFailure | None:
    if not isinstance(exc, ApplicationError) or not exc.details:
        return None
    try:
        return RunFailure.model_validate(exc.details[0])
    except Exception:  # a failure recorded before details were attached, or another shape
        return None


_CLOSING = (
    "workflow_execution_completed_event_attributes",
    "workflow_execution_failed_event_attributes",
    "workflow_execution_canceled_event_attributes",
    "workflow_execution_terminated_event_attributes",
    "workflow_execution_timed_out_event_attributes",
    "workflow_execution_continued_as_new_event_attributes",
)


async def extract(history: WorkflowHistory, execution: str, converter: DataConverter) -> Extract:
    """Every record the execution's history holds, in event order."""
    r = _Reader(history, execution, converter)
    for event in history.events:
        which = event.WhichOneof("attributes")
        if which == "workflow_execution_started_event_attributes":
            await r.started(event)
        elif which == "marker_recorded_event_attributes":
            await r.marker(event)
        elif which == "activity_task_scheduled_event_attributes":
            await r.scheduled_activity(event)
        elif which == "activity_task_started_event_attributes":
            a = event.activity_task_started_event_attributes
            r.attempts[a.scheduled_event_id] = a.attempt
        elif which == "activity_task_completed_event_attributes":
            a = event.activity_task_completed_event_attributes
            await r.closed_activity(event, a.scheduled_event_id, a.result, None)
        elif which == "activity_task_failed_event_attributes":
            a = event.activity_task_failed_event_attributes
            await r.closed_activity(event, a.scheduled_event_id, None, a.failure)
        elif which == "activity_task_timed_out_event_attributes":
            a = event.activity_task_timed_out_event_attributes
            await r.closed_activity(event, a.scheduled_event_id, None, a.failure)
        elif which == "activity_task_canceled_event_attributes":
            a = event.activity_task_canceled_event_attributes
            kind, _, _ = r.scheduled.get(a.scheduled_event_id, (None, None, None))
            if kind and kind not in (MODEL_ACTIVITY, NOTIFY_ACTIVITY):
                r.scheduled.pop(a.scheduled_event_id)
                r.add(event, K.TOOL_CALL, tool=kind, outcome="canceled")
        elif which == "workflow_execution_signaled_event_attributes":
            await r.signaled(event)
        elif which == "workflow_execution_update_accepted_event_attributes":
            await r.update_accepted(event)
        elif which == "workflow_execution_update_completed_event_attributes":
            await r.update_completed(event)
        elif which in _CLOSING:
            await r.closed_run(event, which)
    if r.facts is None:
        raise ValueError(f"history of {history.workflow_id} has no start event")
    r.facts.last_event_id = history.events[-1].event_id if history.events else 0
    return Extract(r.facts, r.records)
