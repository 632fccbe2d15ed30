"""Admission: a run's first model call checks the kill switches and resolves the policy before it
is made, so a run starts without local activities; a bundle that cannot be loaded fails the run
with a typed error before any model call; and a first call answered by a worker that predates
admission is followed by the two local activities runs asked before."""

from __future__ import annotations

import pytest
from temporalio import activity
from temporalio.worker import Worker

from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import RunFailed
from contracts.model import ModelCallInput, ModelCallResult
from tests.support.harness import factory_with, replay
from workers.worker import WORKFLOWS, sandbox_runner

TICKET = {"ticket_text": "Outlook keeps asking for my password.", "requester_email": "jonas.berg@example.com"}
CREATE = {"requester_email": "jonas.berg@example.com", "category": "email", "priority": "P3", "summary": "Outlook password prompts"}
FINAL = {"category": "email", "priority": "P3", "ticket_id": "INC0000001", "summary": "Outlook password prompts"}
SCRIPT = [Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}), Reply.tool("create_ticket", CREATE), Reply.text(FINAL)]


def markers(history) -> int:
    return sum(1 for e in history.events if e.HasField("marker_recorded_event_attributes"))


def model_inputs(history) -> list[ModelCallInput]:
    from temporalio.contrib.pydantic import pydantic_data_converter

    out = []
    for e in history.events:
        a = e.activity_task_scheduled_event_attributes
        if e.HasField("activity_task_scheduled_event_attributes") and a.activity_type.name == "call_model":
            out.append(pydantic_data_converter.payload_converter.from_payloads(a.input.payloads, [ModelCallInput])[0])
    return out


async def test_the_first_model_call_admits_the_run_without_local_activities(client, db_url):
    async with factory_with(client, db_url, ScriptedModel(Turns(SCRIPT))) as f:
        run = await f.start(TICKET)
        result = await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    calls = model_inputs(history)
    assert markers(history) == 0
    assert calls[0].admission is not None and calls[0].admission.policy == "it-desk"
    assert all(c.admission is None for c in calls[1:])  # once per run
    # The bundle the first call resolved gated the run's tool calls and is on its result.
    assert result.policy_bundle and result.policy_bundle.startswith("it-desk@") and result.policy_sha256
    assert [t.decision.outcome.value for t in result.tool_calls] == ["allow", "allow"]


async def test_a_policy_bundle_that_cannot_be_loaded_fails_the_run_before_any_model_call(client, db_url):
    model = ScriptedModel(Turns(SCRIPT))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, policy="no-such-bundle")
        with pytest.raises(RunFailed) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "PolicyFileError"
    assert "policy 'no-such-bundle' could not be loaded" in str(failed.value) and "no-such-bundle.yaml" in str(failed.value)
    assert model.requests == []  # the endpoint was never called


async def test_a_first_call_from_an_older_worker_is_followed_by_the_local_activities(client, db_url):
    async with factory_with(client, db_url, ScriptedModel(Turns(SCRIPT))) as f:
        # The worker under test keeps polling; an older one on its own queue answers this run's calls:
        # it ignores `admission`, as a worker from before admission does.
        queue = f"{f.task_queue}-older"
        acts = f.parts.activities()
        current = next(a for a in acts if getattr(a, "__temporal_activity_definition").name == "call_model")

        @activity.defn(name="call_model")
        async def older_call_model(inp: ModelCallInput) -> ModelCallResult:
            return await current(inp.model_copy(update={"admission": None}))

        older = [a for a in acts if a is not current] + [older_call_model]
        async with Worker(client, task_queue=queue, workflows=WORKFLOWS, activities=older, workflow_runner=sandbox_runner(), max_cached_workflows=0):
            f.task_queue = queue
            run = await f.start(TICKET)
            result = await run.result()
            history = await run.handle.fetch_history()
            await replay(run.handle)
    assert markers(history) == 2  # check_kill_switch, then resolve_policy
    assert result.policy_bundle and result.policy_bundle.startswith("it-desk@")
    assert [t.decision.outcome.value for t in result.tool_calls] == ["allow", "allow"]
