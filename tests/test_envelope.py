"""Cost envelopes: concurrent runs on two workers against PostgreSQL never spend past the
envelope, each alert (50/80/100%) fires exactly once, new runs are refused once it is spent,
and a run paused on a spent envelope resumes when an operator raises it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from temporalio.client import Client
from sqlmodel import Session, select

from activities.audit.export import AuditExporter
from activities.audit.query import run_story
from activities.budget import BudgetLedger, EnvelopeLedger
from activities.keys import KeyRing
from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.notify import OutboxMessage
from aifactory.client import RunFailed, RunRefused
from aifactory import BudgetExceeded
from activities.slack import SlackSettings
from contracts.agent import Breakers, Envelope, ModelSettings, Owner
from contracts.budget import BudgetDecision
from tests.support.harness import factory_with, replay
from tests.support.slack import TOKEN, FakeSlack
from tests.support.webhook import WebhookReceiver
from workers.worker import build_worker

TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}
ARGS = {"requester_email": "ana.silva@example.com", "category": "hardware", "priority": "P3", "summary": "Screen flickers"}
FINAL = {"category": "hardware", "priority": "P3", "ticket_id": None, "summary": "Screen flickers"}
# gpt-4o-mini prices: a call of 1,000 prompt and 40 output tokens costs $0.000174; the hold for one
# call at a context ceiling of 2,000 tokens and max_tokens 400 is $0.00054.
SCRIPT = [
    Reply.tool("lookup_requester", {"email": "ana.silva@example.com"}, prompt_tokens=1000, completion_tokens=40),
    Reply.tool("create_ticket", ARGS, prompt_tokens=1000, completion_tokens=40),
    Reply.text(FINAL, prompt_tokens=1000, completion_tokens=40),
]


def alerts(db_url: str, key: str) -> list[str]:
    with Session(engine_for(db_url)) as s:
        rows = s.exec(select(OutboxMessage).where(OutboxMessage.kind == "envelope_alert")).all()
    return sorted(r.key for r in rows if f"/{key}/" in r.key)


async def test_concurrent_runs_on_two_workers_never_overspend(client, pg_url):
    limit = 0.012
    tenant = f"env-{uuid.uuid4().hex[:8]}"
    model = ScriptedModel(Turns(SCRIPT))
    # Holds close to the real cost (a 1,100-token ceiling, 60 tokens of output: $0.000201 against
    # $0.000174 spent), so that when the envelope refuses a call it is nearly spent: every alert must fire.
    spec = dict(
        envelope=Envelope(limit_usd=limit, on_exhausted="stop"), breakers=Breakers(max_context_tokens=1100),
        model=ModelSettings(name="gpt-4o-mini", max_tokens=60),
    )
    # The agent's owner is reached on Slack, its escalation contact on a webhook.
    spec["owner"], fake, hook = Owner(name="Maria Keller", contact="#triage-owners"), FakeSlack(), WebhookReceiver()
    with fake.serve() as api_url, hook.serve() as spec["escalation_contact"]:
        async with factory_with(client, pg_url, model, max_cached_workflows=100, slack=SlackSettings(token=TOKEN, api_url=api_url)) as f:
            f.factory.db_url = pg_url
            # A second worker (its own connection, as on another machine) on the same queue and ledger.
            other = await Client.connect(client.service_client.config.target_host, data_converter=client.data_converter)
            async with build_worker(other, f.task_queue, f.parts, sandboxed=True, max_cached_workflows=100):
                runs = await asyncio.gather(*(f.start(TICKET, tenant=tenant, **spec) for _ in range(40)))
                costs, outcomes = [], {"completed": 0, "BudgetExceeded": 0}
                for run in runs:
                    try:
                        result = await run.result()
                        costs.append(result.usage.cost_usd)
                        outcomes["completed"] += 1
                    except BudgetExceeded as e:  # the exact class of its wire type, a RunFailed still
                        assert isinstance(e, RunFailed) and e.type == "BudgetExceeded", e
                        assert "cost envelope spent" in str(e)
                        costs.append(e.details.usage.cost_usd)
                        outcomes["BudgetExceeded"] += 1
                await replay(runs[-1].handle)
                key = f.factory.envelope_key("it-triage", tenant, spec["envelope"])
                with pytest.raises(RunRefused, match="cost envelope .* is spent"):
                    await f.start(TICKET, tenant=tenant, **spec)

    with Session(engine_for(pg_url)) as s:
        ledger = s.get(EnvelopeLedger, key)
    assert ledger is not None and ledger.reserved_usd == pytest.approx(0, abs=1e-12)
    assert ledger.spent_usd <= limit  # never past the envelope
    assert ledger.spent_usd == pytest.approx(sum(costs), abs=1e-9)  # the ledger is every call the runs made
    # The envelope ran out mid-way (40 runs need about 120 calls, it pays for about 70): runs were stopped
    # when their next call had no room; how many finished first depends on how the workers interleave.
    assert ledger.spent_usd > limit * 0.85 and outcomes["BudgetExceeded"] >= 10
    assert alerts(pg_url, key) == [f"envelope/{key}/{p}" for p in (100, 50, 80)]  # each exactly once
    # ... and each reached the owner's channel and the escalation contact once, and nothing else did.
    posted = sorted(m.body["text"] for m in fake.in_channel("#triage-owners"))
    assert posted == [f"it-triage: {p}% of the cost envelope spent ({key})" for p in (100, 50, 80)] and len(fake.messages) == 3
    # A webhook is delivered at least once, each post with its Idempotency-Key (concurrent runs may both post).
    assert set(hook.keys()) == {f"envelope/{key}/{p}" for p in (100, 50, 80)}


async def test_a_paused_run_resumes_when_the_envelope_is_raised(client, db_url, tmp_path):
    tenant = f"env-{uuid.uuid4().hex[:8]}"
    model = ScriptedModel(Turns(SCRIPT))
    spec = dict(envelope=Envelope(limit_usd=0.0008, on_exhausted="pause"), breakers=Breakers(max_context_tokens=2000))
    async with factory_with(client, db_url, model) as f:
        f.factory.db_url = db_url
        # Two calls fit (each spends about $0.00017 and holds $0.00054 while it runs); the third's hold does not.
        run = await f.start(TICKET, tenant=tenant, **spec)
        for _ in range(300):
            if (await run.status()).state.value == "awaiting_budget":
                break
            await asyncio.sleep(0.05)
        status = await run.status()
        assert status.state.value == "awaiting_budget" and status.step == 3
        with pytest.raises(RunRefused):
            await f.start(TICKET, tenant=tenant, **spec)
        key = f.factory.envelope_key("it-triage", tenant, spec["envelope"])
        taken = await f.factory.decide_budget(
            "it-triage", tenant, BudgetDecision(by="maria.keller", action="resume"), raise_to=0.01, key=key
        )
        assert taken == [run.workflow_id]
        result = await run.result()
        await replay(run.handle)
        store = f"sqlite:///{tmp_path / 'audit.db'}"
        await AuditExporter(client, store, KeyRing.generate("a1")).export(workflow_id=run.workflow_id)
    _, story = run_story(store, run.workflow_id)
    decided = [r for r in story if r["kind"] == "budget_decision"]
    assert len(decided) == 1 and decided[0]["person"] == "maria.keller" and decided[0]["outcome"] == "resume"
    assert result.output["category"] == "hardware" and result.steps == 3
    ledger = BudgetLedger(db_url).rows("it-triage")
    row = next(r for r in ledger if r.key == key)
    assert row.raised_by == "maria.keller" and row.limit_usd == 0.01 and row.spent_usd == pytest.approx(result.usage.cost_usd)
    assert alerts(db_url, key) == [f"envelope/{key}/100"]  # 50% of the raised envelope is far off


async def test_leases_of_stopped_and_dead_workers_go_back_to_the_envelope(db_url):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from activities.budget import EnvelopeReservation
    from contracts.budget import EnvelopeRef

    ref = EnvelopeRef(key=f"it-triage|lease-{uuid.uuid4().hex[:6]}|2026-11-21", agent="it-triage", tenant="t", limit_usd=1.0, max_prompt_tokens=1000)

    def row() -> EnvelopeLedger:
        with Session(engine_for(db_url)) as s:
            found = s.get(EnvelopeLedger, ref.key)
            assert found is not None
            return found

    dead, alive = BudgetLedger(db_url), BudgetLedger(db_url)
    # A first hold grows the worker's lease by a quarter of the free room (less than 16 holds of 0.1).
    assert (await dead.reserve(ref, "run-a|1|1", 0.1)).granted
    assert row().reserved_usd == pytest.approx(0.25)
    # That worker dies mid-call: it never settles or returns its lease, which expires.
    with Session(engine_for(db_url)) as s:
        s.exec(update(EnvelopeReservation).where(EnvelopeReservation.key == ref.key).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        s.commit()
    # The next growth anywhere releases it: the envelope holds only the live worker's lease.
    assert (await alive.reserve(ref, "run-b|1|1", 0.1)).granted
    assert row().reserved_usd == pytest.approx(0.25)
    # Holds while the lease has room touch no store; a settlement books exactly what the call cost.
    assert (await alive.reserve(ref, "run-c|1|1", 0.1)).granted
    note = await alive.settle(ref, "run-b|1|1", 0.04)
    assert note.spent_usd == pytest.approx(0.04) and row().spent_usd == pytest.approx(0.04)
    assert row().reserved_usd == pytest.approx(0.21)  # the cost moved from the lease to what is spent
    alive.release("run-c|1|1")  # a call that reached no endpoint spends nothing
    # A worker that stops returns its lease: nothing stays reserved.
    await asyncio.to_thread(alive.close)
    assert row().reserved_usd == pytest.approx(0, abs=1e-12) and row().spent_usd == pytest.approx(0.04)
