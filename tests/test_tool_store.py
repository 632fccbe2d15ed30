"""The reference tools against real SQL databases: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import Session, select
from temporalio.testing import ActivityEnvironment

from activities.db import engine_for
from activities.tools.it_desk_activities import ItDeskActivities, Ticket
from activities.tools.it_desk_tools import CreateTicketArgs, LookupRequesterArgs
from contracts.tools import ToolContext

ARGS = CreateTicketArgs(requester_email="Li.Wei@example.com", category="security", priority="P1", summary="Phishing mail")


def ctx(key: str | None = "k-1") -> ToolContext:
    return ToolContext(run_id="agent/it-triage/acme/r1", agent="it-triage", tenant="acme", step=2, call_index=0, idempotency_key=key)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request, db_url):
    return db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")


async def test_lookup_reads_the_directory(any_db):
    desk = ItDeskActivities(any_db)
    env = ActivityEnvironment()
    found = await env.run(desk.lookup_requester, ctx(None), LookupRequesterArgs(email="LI.WEI@example.com"))
    missing = await env.run(desk.lookup_requester, ctx(None), LookupRequesterArgs(email="nobody@example.com"))
    assert found.found and found.department == "Executive Office" and found.vip
    assert not missing.found and missing.name is None


async def test_create_ticket_has_one_effect_per_key(any_db):
    desk = ItDeskActivities(any_db)
    env = ActivityEnvironment()
    first = await env.run(desk.create_ticket, ctx("k-1"), ARGS)
    again = await env.run(desk.create_ticket, ctx("k-1"), ARGS)
    other = await env.run(desk.create_ticket, ctx("k-2"), ARGS)
    assert first.created and not again.created and first.ticket_id == again.ticket_id
    assert other.created and other.ticket_id != first.ticket_id
    with Session(engine_for(any_db)) as s:
        assert len(s.exec(select(Ticket)).all()) == 2


async def test_concurrent_duplicates_create_one_ticket(any_db):
    desk = ItDeskActivities(any_db)
    env = ActivityEnvironment()
    results = await asyncio.gather(*(env.run(desk.create_ticket, ctx("same-key"), ARGS) for _ in range(8)))
    assert len({r.ticket_id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    with Session(engine_for(any_db)) as s:
        assert len(s.exec(select(Ticket).where(Ticket.idempotency_key == "same-key")).all()) == 1


async def test_write_tool_refuses_a_call_without_key(any_db):
    from temporalio.exceptions import ApplicationError

    desk = ItDeskActivities(any_db)
    with pytest.raises(ApplicationError, match="idempotency key") as err:
        await ActivityEnvironment().run(desk.create_ticket, ctx(None), ARGS)
    assert err.value.non_retryable
