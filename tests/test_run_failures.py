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
"""

from __future__ import annotations

import json
import uuid

from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.releases.loader import find_agent
from activities.releases.registry import ReleaseRegistry
from aifactory import AgentNotAdmitted, PolicyDenied
from aifactory.client import FactoryClient
from contracts.policy import Autonomy
from contracts.run import AgentRunInput
from contracts.tools import ToolOutcome
from tests.support.failures import fails_with
from tests.support.harness import AGENTS, agent_folder, factory_with, replay

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
    told = model.requests[1].body["messages"][-1]
    assert told["role"] == "tool" and json.loads(told["content"]) == {"error": f"tool failed: {call.error}"}
