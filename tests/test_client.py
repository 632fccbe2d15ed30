"""The typed client: input refused before anything starts, starts idempotent on the business key."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import AgentNotAdmitted, RunFailed, RunInputRejected
from contracts.run import AgentRunInput
from contracts.wire import Workflow
from tests.support.harness import factory_with, replay
from workflows.agent import AgentWorkflow

GOOD = {"ticket_text": "Printer on floor 2 jams on every page.", "requester_email": "jonas.berg@example.com"}
FINAL = {"category": "hardware", "priority": "P3", "ticket_id": "INC0000001", "summary": "Printer jams"}


async def count_runs(client, workflow_id: str) -> int:
    return len([w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')])


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({"ticket_text": "Printer jams again"}, "'requester_email' is required"),
        ({**GOOD, "requester_email": "not-an-email"}, "field 'requester_email'"),
        ({**GOOD, "ticket_text": 42}, "field 'ticket_text': 42 is not of type 'string'"),
        ({**GOOD, "channel": "fax"}, "field 'channel'"),
        ({**GOOD, "extra": 1}, "Additional properties are not allowed ('extra'"),
        (["not", "an", "object"], "input must be a JSON object"),
    ],
)
async def test_invalid_input_is_refused_naming_the_field(client, db_url, payload, names):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run_key = uuid.uuid4().hex[:10]
        with pytest.raises(RunInputRejected) as refused:
            await f.factory.start_run("it-triage", payload, tenant="acme", run_key=run_key)
        assert names in str(refused.value)
        assert await count_runs(client, f"agent/it-triage/acme/{run_key}") == 0
    assert model.requests == []


@pytest.mark.parametrize(("tenant", "run_key", "field"), [("ACME Corp", "k1", "tenant"), ("acme", "no spaces allowed", "run_key")])
async def test_bad_tenant_or_run_key_is_refused(client, db_url, tenant, run_key, field):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        with pytest.raises(RunInputRejected, match=field):
            await f.factory.start_run("it-triage", GOOD, tenant=tenant, run_key=run_key)


async def test_unknown_agent_is_refused(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        with pytest.raises(LookupError, match="no agent 'payroll'"):
            await f.factory.start_run("payroll", GOOD, tenant="acme", run_key="k")


async def test_same_business_key_starts_once(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL, delay=0.3)]))
    async with factory_with(client, db_url, model) as f:
        run_key = uuid.uuid4().hex[:10]
        first = await f.start(GOOD, run_key=run_key)
        second = await f.start(GOOD, run_key=run_key)  # while the first is running
        result = await first.result()
        third = await f.start(GOOD, run_key=run_key)  # after it closed
        assert (first.started, second.started, third.started) == (True, False, False)
        assert (await second.result()).output == result.output == (await third.result()).output
        assert await count_runs(client, first.workflow_id) == 1
        await replay(first.handle)
    assert len(model.requests) == 1


async def test_status_query_reports_progress(client, db_url):
    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}), Reply.text(FINAL, delay=1.0)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(GOOD)
        while len(model.requests) < 2:
            await __import__("asyncio").sleep(0.05)
        status = await run.status()
        await run.result()
        await replay(run.handle)
    assert status.state.value == "calling_model" and status.step == 2
    assert status.waiting_on == "model gpt-4o-mini" and status.tool_calls == 1
    assert status.usage.model_calls == 1 and status.usage.prompt_tokens > 0


async def test_input_that_bypasses_the_client_fails_the_run_typed(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run_input = f.run_input({"ticket_text": 5})
        handle = await client.start_workflow(AgentWorkflow.run, run_input, id=run_input.workflow_id, task_queue=f.task_queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        await replay(handle)
    assert isinstance(failed.value.cause, ApplicationError) and failed.value.cause.type == "InvalidRunInput"
    assert "'requester_email' is required" in failed.value.cause.message
    assert model.requests == []


async def test_undecodable_workflow_input_fails_instead_of_retrying_forever(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        handle = await client.start_workflow(Workflow.AGENT, {"release": {"spec": "garbage"}, "tenant": "acme"}, id=f"raw-{uuid.uuid4().hex[:8]}", task_queue=f.task_queue
        )
        with pytest.raises(WorkflowFailureError):
            await __import__("asyncio").wait_for(handle.result(), timeout=30)
        assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
        await replay(handle)


async def test_agent_failing_the_gate_cannot_start(client, db_url, tmp_path):
    import shutil

    from aifactory.client import FactoryClient
    from tests.support.harness import AGENTS

    shutil.copytree(AGENTS / "it-triage", tmp_path / "it-triage")
    (tmp_path / "it-triage" / "runbook.md").unlink()
    with pytest.raises(AgentNotAdmitted, match="runbook"):
        await FactoryClient(client, tmp_path).start_run("it-triage", GOOD, tenant="acme", run_key="k1")


async def test_run_failure_surfaces_as_typed_error(client, db_url):
    model = ScriptedModel(Turns([Reply.error(400, "model does not exist")]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(GOOD)
        with pytest.raises(RunFailed) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "ModelCallRejected" and "model does not exist" in str(failed.value)
