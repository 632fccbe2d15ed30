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

from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory import PolicyDenied
from contracts.tools import ToolOutcome
from tests.support.failures import fails_with
from tests.support.harness import factory_with, replay

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
