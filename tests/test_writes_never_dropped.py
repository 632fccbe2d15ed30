"""A write is never given up silently: a write tool that runs out of retries parks the run for an
operator (retry now, or give up with a reason), visible in the listings and the outbox and on the
audit record; a store outage of a minute on PostgreSQL ends with exactly one ticket, never a run
that completes without it; and a model reply too large for history fails the run at once."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from urllib.parse import urlsplit

import pytest
from sqlmodel import Session, SQLModel, select

from activities.audit.export import AuditExporter
from activities.audit.query import run_story
from activities.db import engine_for
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.notify import read_outbox
from activities.tools import catalog
from activities.tools.it_desk_activities import ItDeskActivities, Ticket
from aifactory.client import RunFailed
from aifactory import ModelResponseTooLarge
from tests.support.failures import fails_with
from contracts import search
from tests.support.harness import factory_with, replay
from tests.support.proxy import CuttableProxy
from tests.test_agent_run import TICKET

CREATE = {"requester_email": "jonas.berg@example.com", "category": "access", "priority": "P3", "summary": "Locked out after reset"}
DONE = {"category": "access", "priority": "P3", "ticket_id": "INC0000001", "summary": "Locked out after reset"}
SCRIPT = [Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"}), Reply.tool("create_ticket", CREATE), Reply.text(DONE)]


def tickets(db_url: str) -> list[Ticket]:
    with Session(engine_for(db_url)) as s:
        return list(s.exec(select(Ticket)).all())


@pytest.fixture
def short_write_retries(monkeypatch):
    """create_ticket gives up after two quick attempts (the shipped budget rides out minutes)."""
    definition = catalog.CATALOG["create_ticket"]
    meta = definition.meta.model_copy(update={"max_attempts": 2, "maximum_retry_interval": definition.meta.initial_retry_interval})
    monkeypatch.setitem(catalog.CATALOG, "create_ticket", dataclasses.replace(definition, meta=meta))


def drop_ticket_table(db_url: str) -> None:
    with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
        conn.execute("DROP TABLE service_ticket")


async def stuck(run) -> None:
    for _ in range(600):
        if (await run.status()).state.value == "awaiting_operator":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never waited for an operator")


async def test_a_write_that_runs_out_of_retries_waits_for_an_operator_who_retries_it(client, db_url, short_write_retries, tmp_path):
    async with factory_with(client, db_url, ScriptedModel(Turns(SCRIPT))) as f:
        drop_ticket_table(db_url)  # the store lost its table: every attempt fails
        f.factory.db_url = db_url
        run = await f.start(TICKET)
        await stuck(run)
        listed = (await run.handle.describe()).typed_search_attributes.get(search.AWAITING_OPERATOR)
        outbox = [m for m in read_outbox(db_url, run_id=run.workflow_id) if m.kind == "tool_stuck"]
        SQLModel.metadata.create_all(engine_for(db_url))  # the store is back, with its table
        await f.factory.resolve_tool(run.workflow_id, "retry", by="maria.keller")
        result = await run.result()
        after = (await run.handle.describe()).typed_search_attributes.get(search.AWAITING_OPERATOR)
        await replay(run.handle)
        store = f"sqlite:///{tmp_path / 'audit.db'}"
        await AuditExporter(client, store, KeyRing.generate("a1"), witness_queue=None).export(workflow_id=run.workflow_id)
    assert listed is True and after is False and len(outbox) == 1
    assert [t.outcome.value for t in result.tool_calls] == ["ok", "ok"] and len(tickets(db_url)) == 1
    _, story = run_story(store, run.workflow_id)
    kinds = [r["kind"] for r in story]
    assert "tool_stuck" in kinds and [r["outcome"] for r in story if r["kind"] == "tool_resolved"] == ["retry"]


async def test_an_operator_gives_up_a_stuck_write_with_a_reason_and_the_model_is_told(client, db_url, short_write_retries):
    model = ScriptedModel(Turns([*SCRIPT[:2], Reply.text({**DONE, "ticket_id": None})]))
    async with factory_with(client, db_url, model) as f:
        drop_ticket_table(db_url)
        run = await f.start(TICKET)
        await stuck(run)
        with pytest.raises(Exception, match="giving up a call needs a reason"):
            await f.factory.resolve_tool(run.workflow_id, "give_up", by="maria.keller")
        await f.factory.resolve_tool(run.workflow_id, "give_up", by="maria.keller", reason="desk system migration, ticket opened by hand")
        result = await run.result()
        await replay(run.handle)
    failed = result.tool_calls[-1]
    assert failed.tool == "create_ticket" and failed.outcome.value == "failed"
    assert failed.error.startswith("given up by maria.keller: desk system migration, ticket opened by hand")
    assert "given up by maria.keller" in model.requests[-1].body["messages"][-2]["content"]


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_minute_without_the_store_ends_with_exactly_one_ticket(client, pg_url, monkeypatch):
    # The ticket write takes a second before it reaches the store, so the outage below catches it in flight.
    original = ItDeskActivities._create

    def slow_create(self, ctx, args):
        time.sleep(1.0)
        return original(self, ctx, args)

    monkeypatch.setattr(ItDeskActivities, "_create", slow_create)
    target = urlsplit(pg_url)
    with CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        via_proxy = pg_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        async with factory_with(client, via_proxy, ScriptedModel(Turns(SCRIPT))) as f:
            run = await f.start(TICKET)
            for _ in range(600):  # the moment create_ticket is scheduled, the store goes away for a minute
                history = await run.handle.fetch_history()
                if any(e.activity_task_scheduled_event_attributes.activity_type.name == "create_ticket" for e in history.events):
                    break
                await asyncio.sleep(0.05)
            proxy.cut()
            await asyncio.sleep(60)
            proxy.restore()
            try:
                result = await asyncio.wait_for(run.result(), timeout=300)
            except RunFailed as e:  # it may not complete without its ticket; failing is not completing
                pytest.fail(f"the run failed: {e}")
            state = (await run.status()).state.value
            history = await run.handle.fetch_history()
            await replay(run.handle)
    scheduled = {e.event_id for e in history.events if e.activity_task_scheduled_event_attributes.activity_type.name == "create_ticket"}
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events
                if e.HasField("activity_task_started_event_attributes") and e.activity_task_started_event_attributes.scheduled_event_id in scheduled]  # fmt: skip
    assert max(attempts) >= 2, "the outage caught the ticket write: it was retried"
    assert state == "completed" and len(tickets(pg_url)) == 1
    assert [t.tool for t in result.tool_calls if t.outcome.value == "ok"] == ["lookup_requester", "create_ticket"]


async def test_a_model_reply_too_large_for_history_fails_the_run_at_once(client, db_url):
    model = ScriptedModel(Turns([Reply.text("x" * 3_000_000)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET)
        with fails_with(ModelResponseTooLarge) as failed:
            await run.result()
        await replay(run.handle)
    assert failed.value.type == "ModelResponseTooLarge" and "3,000,000 bytes" in str(failed.value)
    assert len(model.requests) == 1  # fetched once, not once per retry
