"""Model failures through a real run: retried, refused, tool calls written as text, endpoints missing.

Every test runs the agent workflow on the dev server against the scripted
model (real HTTP, real `openai` client), checks the outcome and the history,
and replays its own history at the end, failed runs included.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlmodel import Session, select
from temporalio.api.history.v1 import History

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.tools.it_desk_activities import Ticket
from aifactory import ModelCallRejected
from tests.support.failures import fails_with
from contracts.errors import MODEL_CALL_REJECTED
from contracts.model import ModelCallResult
from contracts.tools import ToolOutcome
from contracts.wire import Activity
from tests.support.harness import factory_with, replay

KEY = "sk-test-secret-never-in-history"  # what the harness registers for the `default` profile
TICKET = {"ticket_text": "I am locked out of my account after the reset.", "requester_email": "jonas.berg@example.com"}
LOOKUP = {"email": "jonas.berg@example.com"}
CREATE = {"requester_email": "jonas.berg@example.com", "category": "access", "priority": "P2", "summary": "Locked out after reset"}
ANSWER = {"category": "access", "priority": "P2", "ticket_id": "INC0000001", "summary": "Locked out after reset"}


class ModelCalls:
    """The `call_model` activities of one run, read from its history."""

    def __init__(self, history: History) -> None:
        events = history.events
        calls = {
            e.event_id
            for e in events
            if e.HasField("activity_task_scheduled_event_attributes")
            and e.activity_task_scheduled_event_attributes.activity_type.name == Activity.CALL_MODEL
        }
        # A retried activity records one started event, written when it closes, with the final attempt.
        self.started = [
            e.activity_task_started_event_attributes
            for e in events
            if e.HasField("activity_task_started_event_attributes")
            and e.activity_task_started_event_attributes.scheduled_event_id in calls
        ]
        self.results = [
            ModelCallResult.model_validate_json(e.activity_task_completed_event_attributes.result.payloads[0].data)
            for e in events
            if e.HasField("activity_task_completed_event_attributes")
            and e.activity_task_completed_event_attributes.scheduled_event_id in calls
        ]
        self.failures = [
            e.activity_task_failed_event_attributes.failure
            for e in events
            if e.HasField("activity_task_failed_event_attributes")
            and e.activity_task_failed_event_attributes.scheduled_event_id in calls
        ]


async def model_calls(handle) -> tuple[ModelCalls, str]:
    history = await handle.fetch_history()
    return ModelCalls(history), history.to_json()


async def test_rate_limit_is_retried_after_the_delay_the_endpoint_asked_for(client, db_url):
    model = ScriptedModel(Turns([Reply.error(429, "Rate limit reached", retry_after=0.2, times=2), Reply.text(ANSWER)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        calls, history = await model_calls(run.handle)
        await replay(run.handle)

    assert result.output == ANSWER and result.steps == 1
    assert [r.status for r in model.requests] == [429, 429, 200]
    assert result.usage.model_calls == 1  # only the answered attempt is billed
    assert [r.attempt for r in calls.results] == [3]
    (started,) = calls.started
    assert started.attempt == 3
    last = started.last_failure.application_failure_info
    assert last.type == "ModelHTTP429" and not last.non_retryable
    # Retry-After reached Temporal as the next retry delay (instead of MODEL_RETRY's 1 s interval).
    assert last.next_retry_delay.ToTimedelta() == timedelta(milliseconds=200)
    assert KEY not in history


async def test_server_error_is_retried_with_the_policy_interval(client, db_url):
    script = [Reply.tool("lookup_requester", LOOKUP), Reply.error(500, "upstream crashed"), Reply.text(ANSWER)]
    model = ScriptedModel(Turns(script))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        calls, history = await model_calls(run.handle)
        await replay(run.handle)

    assert result.output == ANSWER and result.steps == 2
    assert [r.tool for r in result.tool_calls] == ["lookup_requester"]
    assert [r.status for r in model.requests] == [200, 500, 200]
    assert [r.attempt for r in calls.results] == [1, 2]
    assert [s.attempt for s in calls.started] == [1, 2]
    last = calls.started[1].last_failure.application_failure_info
    assert last.type == "ModelHTTP500" and not last.non_retryable
    assert not last.HasField("next_retry_delay")  # no Retry-After: the retry policy decides
    # The retried turn resent the same conversation: tool result included, nothing duplicated.
    assert model.requests[1].body["messages"] == model.requests[2].body["messages"]
    assert KEY not in history


@pytest.mark.parametrize(
    ("status", "detail"),
    [(400, "model 'gpt-4o-mini' does not exist"), (401, f"Incorrect API key provided: {KEY}")],
    ids=["400", "401-echoing-the-key"],
)
async def test_refused_call_fails_the_run_without_retrying(client, db_url, status, detail):
    # The answer after the error would be served to a second attempt; there must not be one.
    model = ScriptedModel(Turns([Reply.error(status, detail, times=1), Reply.text(ANSWER)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        with fails_with(ModelCallRejected) as failed:
            await run.result()
        calls, history = await model_calls(run.handle)
        await replay(run.handle)

    assert failed.value.type == MODEL_CALL_REJECTED
    assert f"endpoint 'default' refused the call with HTTP {status}" in str(failed.value)
    assert len(model.requests) == 1
    assert [s.attempt for s in calls.started] == [1] and calls.results == []
    (failure,) = calls.failures
    assert failure.application_failure_info.type == MODEL_CALL_REJECTED
    assert failure.application_failure_info.non_retryable
    # A 401 text that echoes the key is redacted before it reaches history or the caller.
    assert KEY not in str(failed.value) and KEY not in history


async def test_tool_call_written_as_text_runs_the_tool(client, db_url):
    script = [Reply.tool_as_text("lookup_requester", LOOKUP), Reply.tool_as_text("create_ticket", CREATE), Reply.text(ANSWER)]
    model = ScriptedModel(Turns(script))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        result = await run.result()
        calls, _ = await model_calls(run.handle)
        await replay(run.handle)

    assert result.output == ANSWER and result.steps == 3
    assert [(r.tool, r.outcome) for r in result.tool_calls] == [
        ("lookup_requester", ToolOutcome.OK),
        ("create_ticket", ToolOutcome.OK),
    ]
    assert [r.tool_calls_from_text for r in calls.results] == [True, True, False]
    assert calls.results[0].message.content is None  # the prose around the block is not kept as an answer
    # The directory lookup ran: its record went back to the model as the tool result.
    second = model.requests[1].body["messages"]
    assert second[-2]["tool_calls"][0]["id"] == result.tool_calls[0].call_id
    assert second[-2]["tool_calls"][0]["id"].startswith("text_")
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == result.tool_calls[0].call_id
    assert json.loads(second[-1]["content"])["department"] == "Finance"
    # The ticket was really written, once, under the run's idempotency key.
    with Session(engine_for(db_url)) as s:
        tickets = s.exec(select(Ticket)).all()
    assert [(t.ticket_id, t.idempotency_key) for t in tickets] == [("INC0000001", result.tool_calls[1].idempotency_key)]


async def test_endpoint_not_configured_on_the_worker_is_refused(client, db_url):
    model = ScriptedModel(Turns([Reply.text(ANSWER)]))
    async with factory_with(client, db_url, model) as f:
        elsewhere = f.release().spec.model.model_copy(update={"endpoint": "elsewhere"})
        run = await f.start(TICKET, model=elsewhere)
        with fails_with(ModelCallRejected) as failed:
            await run.result()
        calls, _ = await model_calls(run.handle)
        await replay(run.handle)

    assert failed.value.type == MODEL_CALL_REJECTED
    assert "endpoint profile 'elsewhere' is not configured on this worker" in str(failed.value)
    assert "AIFACTORY_ENDPOINT_ELSEWHERE_BASE_URL" in str(failed.value)
    assert model.requests == []
    assert [s.attempt for s in calls.started] == [1]
