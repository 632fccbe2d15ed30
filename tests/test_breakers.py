"""Circuit breakers: a runaway model is stopped by each breaker, overshooting by at most one call,
and the run ends with a failure that names the breaker and the reason."""

from __future__ import annotations

import pytest

from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory import ContextLimitExceeded, RepeatedToolCall, StepLimitExceeded
from tests.support.failures import fails_with
from contracts.agent import Breakers
from contracts.tools import ToolOutcome
from contracts.wire import Activity
from tests.support.harness import factory_with, replay

TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}


def scheduled(history, name: str) -> int:
    return sum(
        1 for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes") and e.activity_task_scheduled_event_attributes.activity_type.name == name
    )  # fmt: skip


async def test_step_limit_stops_a_model_that_always_wants_another_tool_call(client, db_url):
    # A different lookup every turn: no repetition, so only the step limit can stop it.
    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": f"user{i}@example.com"}) for i in range(20)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, step_limit=4)
        with fails_with(StepLimitExceeded) as failed:
            await run.result()
        status = await run.status()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    assert failed.value.type == "StepLimitExceeded" and "step limit of 4" in str(failed.value)
    assert len(model.requests) == 4 and status.step == 4 and scheduled(history, Activity.CALL_MODEL) == 4


async def test_repeated_identical_call_trips_the_breaker_before_it_runs_again(client, db_url):
    same = Reply.tool("lookup_requester", {"email": "ana.silva@example.com"})
    model = ScriptedModel(Turns([same] * 20))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, step_limit=20, breakers=Breakers(max_repeated_calls=3))
        with fails_with(RepeatedToolCall) as failed:
            await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    assert failed.value.type == "RepeatedToolCall"
    assert "lookup_requester already ran 3 times with these arguments (limit 3)" in str(failed.value)
    # Three lookups ran; the fourth identical proposal (one model call past the limit) ran nothing.
    assert scheduled(history, "lookup_requester") == 3 and len(model.requests) == 4
    details = failed.value.details
    assert [r.outcome for r in details.settled] == [ToolOutcome.STOPPED]


async def test_context_growth_ceiling_stops_the_run_after_one_call_over(client, db_url):
    # Each turn the model reports a bigger prompt, as a conversation that keeps growing would.
    model = ScriptedModel(
        Turns([Reply.tool("lookup_requester", {"email": f"user{i}@example.com"}, prompt_tokens=1000 * (i + 1)) for i in range(20)])
    )
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, step_limit=20, breakers=Breakers(max_context_tokens=3500))
        with fails_with(ContextLimitExceeded) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "ContextLimitExceeded"
    assert "reached 4000 prompt tokens, the agent's ceiling is 3500" in str(failed.value)
    # Calls at 1000..3000 were under the ceiling; the call that reached 4000 is the one overshoot.
    assert len(model.requests) == 4
