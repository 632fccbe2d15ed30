"""Tool calls the model proposes are validated before anything is scheduled."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.tools.it_desk_activities import Ticket
from aifactory import OutputInvalid, ToolArgumentsInvalid
from tests.support.failures import fails_with
from contracts.tools import ToolOutcome
from tests.support.harness import factory_with, replay

TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}
GOOD_TICKET_ARGS = {"requester_email": "ana.silva@example.com", "category": "hardware", "priority": "P3", "summary": "Laptop screen flickers"}
FINAL = {"category": "hardware", "priority": "P3", "ticket_id": "INC0000001", "summary": "Laptop screen flickers"}


def scheduled_activities(history) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


def tickets(db_url: str) -> list[Ticket]:
    with Session(engine_for(db_url)) as s:
        return list(s.exec(select(Ticket)).all())


async def test_invalid_arguments_go_back_to_the_model_never_to_the_tool(client, db_url):
    bad = dict(GOOD_TICKET_ARGS, category="furniture", priority="urgent")
    model = ScriptedModel(Turns([Reply.tool("create_ticket", bad), Reply.tool("create_ticket", GOOD_TICKET_ARGS), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    first, second = result.tool_calls
    assert first.outcome is ToolOutcome.INVALID_ARGUMENTS
    assert "category" in first.error and "priority" in first.error
    assert second.outcome is ToolOutcome.OK
    # Only the valid call became an activity; the model saw the error as a tool message.
    assert scheduled_activities(history).count("create_ticket") == 1
    assert len(tickets(db_url)) == 1
    tool_msg = model.requests[1].body["messages"][-1]
    assert tool_msg["role"] == "tool" and "invalid arguments" in tool_msg["content"]


async def test_unparseable_arguments_are_refused(client, db_url):
    model = ScriptedModel(Turns([Reply.tool("create_ticket", "{not json"), Reply.tool("create_ticket", GOOD_TICKET_ARGS), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        await replay(run.handle)
    assert result.tool_calls[0].outcome is ToolOutcome.INVALID_ARGUMENTS
    assert "not valid JSON" in result.tool_calls[0].error


async def test_tool_outside_the_grant_is_never_run(client, db_url):
    # The agent is granted only the lookup; the model asks to open a ticket anyway.
    model = ScriptedModel(Turns([Reply.tool("create_ticket", GOOD_TICKET_ARGS), Reply.tool("delete_everything", {}), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, tools=["lookup_requester"])
        result = await run.result()
        history = await run.handle.fetch_history()
        await replay(run.handle)
    assert [r.outcome for r in result.tool_calls] == [ToolOutcome.NOT_GRANTED, ToolOutcome.NOT_GRANTED]
    assert scheduled_activities(history) == ["call_model"] * 3
    assert tickets(db_url) == []
    # Only granted tools are offered to the model.
    assert [t["function"]["name"] for t in model.requests[0].body["tools"]] == ["lookup_requester"]


async def test_invalid_calls_are_bounded(client, db_url):
    model = ScriptedModel(Turns([Reply.tool("create_ticket", {"category": "nope"})] * 6))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        with fails_with(ToolArgumentsInvalid) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "ToolArgumentsInvalid"
    assert len(model.requests) == 4  # three tolerated, the fourth ends the run
    assert tickets(db_url) == []


async def test_invalid_final_answer_gets_one_repair_round(client, db_url):
    model = ScriptedModel(Turns([Reply.text({"category": "hardware"}), Reply.text("```json\n" + __import__("json").dumps(FINAL) + "\n```")]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        await replay(run.handle)
    assert result.output == FINAL
    repair = model.requests[1].body["messages"][-1]
    assert repair["role"] == "user" and "'priority' is required" in repair["content"]


async def test_output_still_invalid_after_repair_fails_typed(client, db_url):
    model = ScriptedModel(Turns([Reply.text("I think it is hardware."), Reply.text({"category": "chairs"})]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        with fails_with(OutputInvalid) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "OutputInvalid"
    assert "category" in str(failed.value)
