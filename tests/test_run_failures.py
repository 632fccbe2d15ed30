"""Failures with no other test to carry them: a real run ends with each, and `RunHandle.result()`
raises its class. The other run failure types are asserted where their behaviour is tested:

    StepLimitExceeded, RepeatedToolCall, ContextLimitExceeded   test_breakers.py
    RunStopped            test_kill_switch.py, test_signed_decisions.py, test_trust_boundary.py
    ApprovalExpired, ToolArgumentsInvalid                        test_approvals_timeskip.py
    ToolArgumentsInvalid, OutputInvalid                          test_tool_calls.py
    BudgetExceeded        test_envelope.py          PolicyFileError       test_admission.py
    ModelCallRejected     test_model_failures.py    ModelUnavailable      test_model_retry_logs.py
    ModelResponseTooLarge test_writes_never_dropped.py
    InvalidRunInput, ReleaseUnknown                              test_trust_boundary.py
    PayloadNotEncrypted, PayloadUndecodable                      test_strict_encryption.py
    AgentNotAdmitted      the client's refusal before a start: test_client.py; the worker's, here
    PolicyDenied, TranscriptMissing                              here

Three wire types never end a run; the tests here show what a real run does instead:

    ToolFailed            a FAILED tool call the model is told about; the run goes on (gate.py, `_execute`)
    ModelResponseInvalid  retried; once the attempts are spent the run ends ModelUnavailable, naming it
    ReleaseUnavailable    retried (another worker may hold the release); then ModelUnavailable, naming it

(`workflows/agent/model.py`, `call_model`: only ModelCallRejected, TranscriptMissing,
ModelResponseTooLarge and PolicyFileError end a run with the model call's own type.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid

from sqlmodel import Session, col, delete
from temporalio.worker import Worker

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.model.transcripts import TranscriptMessage
from activities.releases.loader import find_agent
from activities.releases.registry import ReleaseRegistry
from aifactory import AgentNotAdmitted, ModelUnavailable, PolicyDenied, TranscriptMissing
from aifactory.client import FactoryClient
from contracts.policy import Autonomy
from contracts.run import AgentRunInput
from contracts.tools import ToolOutcome
from contracts.wire import Update
from workflows.agent.model import MODEL_RETRY
from tests.support.failures import fails_with
from tests.support.harness import AGENTS, FactoryUnderTest, agent_folder, factory_with, replay, shipped_triage

TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}


async def test_a_model_that_keeps_proposing_denied_calls_ends_with_policy_denied(client, db_url):
    # The `default` bundle allows nothing: every lookup is denied, each with different arguments
    # (so no other breaker trips first), until the denial bound ends the run.
    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": f"user{i}@example.com"}) for i in range(20)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, step_limit=20, policy="default")
        with fails_with(PolicyDenied) as failed:
            await run.result()
        await replay(run.handle)
    assert "tool calls were denied (limit 5)" in str(failed.value)
    assert failed.value.details is not None and [r.outcome for r in failed.value.details.settled] == [ToolOutcome.DENIED]


async def test_a_run_of_an_agent_the_workers_gate_refuses_ends_with_agent_not_admitted(client, db_url, tmp_path):
    # The worker's agents folder holds it-triage without its runbook, so its registry refuses the agent
    # by name. The client has no agents folder (the worker checks), so the run starts and the worker's
    # admission ends it: `AgentNotAdmitted` from a run, with its id, not the client's refusal before one.
    agents = agent_folder(tmp_path, "unused")
    (agents / "it-triage" / "runbook.md").unlink()
    model = ScriptedModel(Turns([Reply.text("{}")]))
    async with factory_with(client, db_url, model, releases=ReleaseRegistry.from_folder(agents)) as f:
        run = await FactoryClient(client, task_queue=f.task_queue).start_run("it-triage", TICKET, tenant="acme", run_key=uuid.uuid4().hex[:10])
        with fails_with(AgentNotAdmitted) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.workflow_id == run.workflow_id and isinstance(failed.value, ValueError)
    assert "agent 'it-triage' is not admitted on this worker: it fails the admission gate (`aifactory check it-triage`)" in str(failed.value)
    assert model.requests == []


STATEMENT = "doc:sha256:" + "2" * 64
PAIR = {"invoice_number": "NL-2024-0412", "transaction_id": "BK2404", "score": 1.0, "reasons": ["amount 611.25 EUR equal"], "amount": "611.25", "currency": "EUR"}
NOT_POSTED = {
    "currency": "EUR", "invoices": [], "matched": [], "unmatched_transactions": [], "batch_id": None,
    "exceptions": [{"invoice_number": "NL-2024-0412", "kind": "not_posted", "reason": "the ledger refused the posting"}],
    "invoice_total": 611.25, "matched_total": 0, "unmatched_total": 611.25,
}  # fmt: skip


def finance_input(f) -> AgentRunInput:
    """A run of finance-reconciliation on the test's queue, no longer supervised (small exact postings pass)."""
    shipped = find_agent(AGENTS, "finance-reconciliation").release
    assert shipped is not None
    spec = shipped.spec.model_copy(update={"task_queue": f.task_queue, "autonomy": Autonomy.ASSISTED})
    release = f.releases.add(shipped.model_copy(update={"spec": spec}))
    return AgentRunInput(
        agent=release.spec.name, version=release.spec.version, tenant="acme", run_key=uuid.uuid4().hex[:10],
        input={"invoices": ["doc:sha256:" + "1" * 64], "statement": STATEMENT},
    )  # fmt: skip


async def test_a_tools_tool_failed_is_reported_to_the_model_and_does_not_end_the_run(client, db_url):
    # ToolFailed cannot end a run: a tool's non-retryable error is recorded as a FAILED call and sent to
    # the model as the tool's answer (workflows/agent/gate.py, `_execute`'s `except ActivityError`).
    # Here the policy allows the posting by the total the model declared; the tool refuses that total,
    # which is not the pairs' sum (activities/tools/finance/activities.py, `_refuse_undeclared_figures`).
    post = {"matches": [PAIR], "statement": STATEMENT, "total": "61.12", "lowest_score": 1.0}
    model = ScriptedModel(Turns([Reply.tool("post_reconciliation", post), Reply.text(NOT_POSTED)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.factory.start_prepared(finance_input(f))
        result = await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    (call,) = result.tool_calls
    assert call.tool == "post_reconciliation" and call.outcome is ToolOutcome.FAILED and call.decision.rule_id == "exact-postings"
    assert call.error == "total: 61.12 is not the sum of the pairs' amounts (611.25)"
    assert result.output == NOT_POSTED
    # History holds the type: the tool's one attempt failed with ToolFailed, not retried.
    (failed,) = [e.activity_task_failed_event_attributes for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert failed.failure.application_failure_info.type == "ToolFailed" and failed.failure.application_failure_info.non_retryable
    (attempt,) = [e.activity_task_started_event_attributes.attempt for e in history.events
                  if e.activity_task_started_event_attributes.scheduled_event_id == failed.scheduled_event_id]  # fmt: skip
    assert attempt == 1
    told = [m for m in model.requests[1].body["messages"] if m["role"] == "tool"][-1]
    assert json.loads(told["content"]) == {"error": f"tool failed: {call.error}"}


P1 = {"requester_email": "ana.silva@example.com", "category": "hardware", "priority": "P1", "summary": "Laptop screen flickering"}
DONE = {"category": "hardware", "priority": "P1", "ticket_id": "INC0000001", "summary": "Laptop screen flickering"}


async def parked_request(run) -> str:
    for _ in range(500):
        status = await run.status()
        if status.approval is not None:
            return status.approval.id
        await asyncio.sleep(0.02)
    raise AssertionError("the run never parked on an approval")


async def test_a_continued_run_whose_transcript_the_store_lost_ends_with_transcript_missing(client, db_url):
    # A run keeps its conversation in worker memory to resend if the store loses it, but not across
    # continue-as-new (workflows/agent/state.py, `restore`); there, a lost transcript ends the run
    # (workflows/agent/model.py, `call_model`: TranscriptMissing is not retried, and with no memory
    # nothing is resent). The run parks on a P1 approval; meanwhile its worker is replaced (a new
    # worker has no cached transcript) and the store loses the rows; once approved, the ticket is
    # created and the run continues as new (history budget), and its next model call finds no transcript.
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    with model.serve() as base_url:
        f = FactoryUnderTest(client, db_url, base_url, f"tq-{uuid.uuid4().hex[:10]}")
        async with f.worker():
            run = await f.factory.start_prepared(f.run_input(TICKET, history_budget_events=10))
            request = await parked_request(run)
        with Session(engine_for(db_url)) as s:
            s.exec(delete(TranscriptMessage).where(col(TranscriptMessage.transcript_id).startswith(run.workflow_id)))
            s.commit()
        async with f.worker():
            await run.handle.execute_update(Update.DECIDE_APPROVAL, f.signed(run.workflow_id, "maria.keller", "approve", request))
            with fails_with(TranscriptMissing) as failed:
                await run.result()
            executions = [w async for w in client.list_workflows(f'WorkflowId = "{run.workflow_id}"')]
            for execution in executions:
                await replay(client.get_workflow_handle(run.workflow_id, run_id=execution.run_id))
    assert len(executions) == 2, "the run continued as new once"
    assert re.search(rf"model call failed: transcript {re.escape(run.workflow_id)}#\S+ holds 0 messages, the run expects \d+", failed.value.message)
    assert len(model.requests) == 1  # the continued run never reached the model
    assert failed.value.details is not None and failed.value.details.step == 2  # the approved ticket's step came first


def failed_activities(history) -> list:
    """How each failed activity of a run failed: history records the last attempt's error."""
    return [e.activity_task_failed_event_attributes.failure.application_failure_info for e in history.events if e.HasField("activity_task_failed_event_attributes")]


async def test_an_endpoint_that_answers_without_choices_is_retried_and_the_run_ends_model_unavailable(ts_env, db_url):
    # ModelResponseInvalid does not end a run as such: `call_model` raises it retryable
    # (activities/model/activity.py, `_reply`), and once MODEL_RETRY's attempts are spent the workflow
    # ends the run ModelUnavailable, naming the invalid answer (workflows/agent/model.py, `call_model`:
    # only ModelCallRejected, TranscriptMissing, ModelResponseTooLarge and PolicyFileError keep their
    # type). The time-skipping server passes the retries' backoff at once.
    model = ScriptedModel(Turns([Reply.raw({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "scripted", "choices": []})]))
    async with factory_with(ts_env.client, db_url, model) as f:
        run = await f.start(TICKET)
        with fails_with(ModelUnavailable) as failed:
            await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    assert failed.value.message == "model call failed after retries: endpoint answered without choices"
    assert len(model.requests) == MODEL_RETRY.maximum_attempts
    (last,) = failed_activities(history)
    assert last.type == "ModelResponseInvalid" and not last.non_retryable


async def test_a_model_call_on_workers_without_the_runs_release_is_retried_and_the_run_ends_model_unavailable(ts_env, db_url):
    # ReleaseUnavailable does not end a run as such: a worker that does not hold the release a run
    # was admitted under raises it retryable, since another worker on the queue may hold it
    # (activities/model/activity.py, `_opening`); when none does, the run ends ModelUnavailable naming
    # it (workflows/agent/model.py, `call_model`). Here the workflow worker (admission is its local
    # activity) holds the run's release, and the only worker taking activities is deployed without it.
    model = ScriptedModel(Turns([Reply.text(DONE)]))
    async with factory_with(ts_env.client, db_url, model, no_remote_activities=True) as f:
        elsewhere = dataclasses.replace(f.parts, releases=ReleaseRegistry([shipped_triage()]))
        async with Worker(ts_env.client, task_queue=f.task_queue, activities=elsewhere.activities()):
            start = f.run_input(TICKET, step_limit=7)  # a variant of it-triage: only the workflow worker holds it
            run = await f.factory.start_prepared(start)
            with fails_with(ModelUnavailable) as failed:
                await run.result()
            history = await run.handle.fetch_history()
            await replay(run.handle)
    assert re.fullmatch(
        rf"model call failed after retries: this worker does not hold release it-triage {re.escape(start.version)} "
        r"\(prompt [0-9a-f]{12}\); another worker may",
        failed.value.message,
    ), failed.value.message
    assert model.requests == []  # no worker could send the run's prompt
    (last,) = failed_activities(history)
    assert last.type == "ReleaseUnavailable" and not last.non_retryable
