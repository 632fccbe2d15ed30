"""Approvals on the real dev server: spoofed decisions are refused and on record, a decision
counts once, nothing counts after expiry, and a worker down across a deadline neither loses
nor duplicates an escalation."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import pytest
from sqlmodel import Session, select

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.notify import read_outbox
from activities.tools.it_desk_activities import Ticket
from aifactory.client import ApprovalRefused, FactoryClient
from contracts.approval import ApprovalDecision, ApprovalLedger
from contracts.wire import Query, Signal
from tests.support.harness import agent_folder, factory_with, replay, write_policy
from tests.support.webhook import WebhookReceiver
from tests.test_durability import start_worker_process, wait_for

TICKET = {"ticket_text": "Core switch in building B is down, nobody has network.", "requester_email": "ana.silva@example.com"}
P1 = {"requester_email": "ana.silva@example.com", "category": "network", "priority": "P1", "summary": "Building B network outage"}
DONE = {"category": "network", "priority": "P1", "ticket_id": "INC0000001", "summary": "Building B network outage"}
NOT_OPENED = {"category": "network", "priority": "P1", "ticket_id": None, "summary": "not opened: no approval"}
RULES = [{"id": "p1-needs-a-lead", "match": {"tools": ["create_ticket"], "when": "priority == 'P1'"}, "decision": "require_approval", "reason": "P1 pages on-call"}]


def tickets(db_url: str) -> list[Ticket]:
    with Session(engine_for(db_url)) as s:
        return list(s.exec(select(Ticket)).all())


async def parked(run) -> None:
    for _ in range(600):
        if (await run.status()).approval is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the run never parked on an approval")


async def test_spoofed_decisions_are_refused_and_on_record(client, db_url, tmp_path):
    root = write_policy(tmp_path / "pol", "chain", RULES, [("it-desk-leads", 120), ("it-managers", 120)])
    # The final answer takes a while, so the run is still open for the repeated decisions below.
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE, delay=3.0)]))
    async with factory_with(client, db_url, model, policy_root=root) as f:
        run = await f.start(TICKET, policy="chain", requester="tom.becker")
        await parked(run)
        wid = run.workflow_id
        attempts = {
            "omar.haddad": "may not decide for tenant 'acme'",            # another tenant
            "tom.becker": "requested this run and may not decide",        # the requester himself
            "sara.lind": "is not in approver group 'it-desk-leads'",      # outside the group (tier 1)
            "mallory": "unsigned: decisions must be signed",              # nobody: no key to sign with
        }  # fmt: skip
        for person, reason in attempts.items():
            with pytest.raises(ApprovalRefused, match=reason):
                await f.factory.decide(wid, person, "approve")
        await run.handle.signal(Signal.APPROVE, ApprovalDecision(approver="omar.haddad"))  # the same spoof, as a signal
        answers = [await f.factory.decide(wid, "maria.keller", "approve", note="confirmed") for _ in range(3)]
        with pytest.raises(ApprovalRefused, match="already approved by maria.keller"):
            await f.factory.decide(wid, "maria.keller", "reject", note="changed my mind")
        result = await run.result()
        history = await run.handle.fetch_history()
        ledger = await run.handle.query(Query.APPROVALS, result_type=ApprovalLedger)
        await replay(run.handle)
    assert [a.duplicate for a in answers] == [False, True, True]
    assert result.approvals[0].decided_by == "maria.keller" and len(tickets(db_url)) == 1
    refusals = [r for r in read_outbox(db_url, run_id=wid, kind="approval_refused")]
    assert len(refusals) == 6
    assert [json.loads(r.details)["person"] for r in refusals] == ["omar.haddad", "tom.becker", "sara.lind", "mallory", "omar.haddad", "maria.keller"]
    assert len(ledger.refusals) == 6
    updates = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(updates) == 8 and len(signals) == 1  # every attempt is in history, refused or not
    assert len([m for m in read_outbox(db_url, run_id=wid) if m.kind == "approval_decided"]) == 1


async def test_a_decision_after_expiry_is_refused(client, db_url, tmp_path):
    root = write_policy(tmp_path / "pol", "chain", RULES, [("it-desk-leads", 1)])
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(NOT_OPENED, delay=2.0)]))
    async with factory_with(client, db_url, model, policy_root=root) as f:
        run = await f.start(TICKET, policy="chain", requester="tom.becker")
        await wait_for(lambda: len(model.requests) >= 2, timeout=30)  # expired: the model hears the denial
        with pytest.raises(ApprovalRefused, match="expired"):
            await f.factory.decide(run.workflow_id, "maria.keller", "approve")
        result = await run.result()
        await replay(run.handle)
    assert result.approvals[0].status == "expired" and tickets(db_url) == []


@pytest.mark.slow
async def test_worker_down_across_a_deadline_escalates_once(env, db_url, tmp_path):
    root = write_policy(tmp_path / "pol", "chain", RULES, [("it-desk-leads", 3), ("it-managers", 3)])
    receiver = WebhookReceiver()
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(NOT_OPENED)]))
    task_queue = f"tq-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    with model.serve() as base_url, receiver.serve() as hook:
        import os

        os.environ["AIFACTORY_POLICIES_DIR"] = str(root)
        os.environ["AIFACTORY_NOTIFY_WEBHOOK_URL"] = hook
        try:
            agents = agent_folder(tmp_path, task_queue, policy="chain")
            first = start_worker_process(env, task_queue, db_url, base_url, log, agents)
            run = await FactoryClient(env.client, agents).start_run(
                "it-triage", TICKET, tenant="acme", run_key=uuid.uuid4().hex[:8], requester="tom.becker"
            )
            # Tier 1 asked, and the outbox has recorded the delivery: killing the worker between the
            # post and that record would post again on the retry (same Idempotency-Key), which is not
            # what this test is about.
            await wait_for(lambda: any(m.delivered_at for m in read_outbox(db_url, run_id=run.workflow_id)), timeout=60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            await asyncio.sleep(4.0)  # the tier-1 deadline passes while no worker runs
            second = start_worker_process(env, task_queue, db_url, base_url, log)
            try:
                result = await asyncio.wait_for(run.result(), timeout=90)
            finally:
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=15)
        finally:
            os.environ.pop("AIFACTORY_POLICIES_DIR", None)
            os.environ.pop("AIFACTORY_NOTIFY_WEBHOOK_URL", None)
        await replay(run.handle)
    wid = run.workflow_id
    assert [m.kind for m in read_outbox(db_url, run_id=wid)] == ["approval_requested", "approval_escalated_tier2", "approval_expired"]
    assert dict(receiver.keys()) == {f"{wid}/1.0/requested": 1, f"{wid}/1.0/escalated_tier2": 1, f"{wid}/1.0/expired": 1}
    assert all(m.delivered_at is not None for m in read_outbox(db_url, run_id=wid))
    assert result.approvals[0].status == "expired" and tickets(db_url) == []
    assert "text" in receiver.posts[0][1] and "blocks" in receiver.posts[0][1]
