"""A governed agent run end to end: model turns, tool calls, typed output, replay."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.tools.it_desk_activities import Ticket
from contracts.tools import ToolOutcome
from contracts.wire import Activity
from tests.support.harness import factory_with, history_json, replay

TICKET = {"ticket_text": "I am locked out of my account after the reset.", "requester_email": "jonas.berg@example.com"}


def happy_script() -> list[Reply]:
    return [
        Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}),
        Reply.tool(
            "create_ticket",
            {"requester_email": "jonas.berg@example.com", "category": "access", "priority": "P2", "summary": "Locked out after reset"},
        ),
        Reply.text({"category": "access", "priority": "P2", "ticket_id": "INC0000001", "summary": "Locked out after reset", "requester_department": "Finance"}),
    ]


async def test_run_completes_with_tools_and_typed_output(client, db_url):
    model = ScriptedModel(Turns(happy_script()))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        await replay(run.handle)
        history = await history_json(run.handle)

    assert result.output["ticket_id"] == "INC0000001"
    assert result.steps == 3
    assert [r.tool for r in result.tool_calls] == ["lookup_requester", "create_ticket"]
    assert all(r.outcome is ToolOutcome.OK for r in result.tool_calls)
    assert result.usage.model_calls == 3 and result.usage.prompt_tokens > 0
    assert result.agent_version.startswith("1.3.0-t.") and "+prompt." in result.agent_version and result.policy_bundle == "it-desk@1.0.0"
    with Session(engine_for(db_url)) as s:
        tickets = s.exec(select(Ticket)).all()
    assert len(tickets) == 1 and tickets[0].idempotency_key == result.tool_calls[1].idempotency_key
    # The endpoint key stays in the worker: not in history.
    assert "sk-test-secret" not in history
    assert all(r.headers.get("authorization") == "Bearer sk-test-secret-never-in-history" for r in model.requests)


async def test_model_calls_carry_deltas_not_the_whole_conversation(client, db_url):
    model = ScriptedModel(Turns(happy_script()))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    inputs = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == Activity.CALL_MODEL
    ]
    # The business input, then one tool result per turn; the last turn also asks for the answer (the
    # procedure is done). The system prompt is not in history: the first call names the release whose
    # prompt the worker sends, and the model activity reports the hash of what it sent.
    assert [len(i["delta"]) for i in inputs] == [1, 1, 2]
    assert [m["role"] for m in inputs[0]["delta"]] == ["user"]
    assert inputs[0]["prompt"]["agent"] == "it-triage" and [i["prompt"] for i in inputs[1:]] == [None, None]
    assert [i["force_tool"] for i in inputs] == ["lookup_requester", "create_ticket", None]
    assert inputs[2]["tool_names"] == [] and inputs[2]["response_schema"]["required"] == ["category", "priority", "ticket_id", "summary"]
    assert [i["base_seq"] for i in inputs] == [0, 3, 5]
    # ...while the model itself saw the whole conversation each time.
    assert [len(r.body["messages"]) for r in model.requests] == [2, 4, 7]
