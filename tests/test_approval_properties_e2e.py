"""Hypothesis over real runs: sequences of approve, reject, duplicate, timeout and worker restart
against the time-skipping server never make a run act without an accepted approval, and never
give a request two terminal decisions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select
from temporalio.service import RPCError, RPCStatusCode

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.policy import PolicyActivities
from activities.tools.it_desk_activities import Ticket
from aifactory.client import RunFailed
from contracts.approval import ApprovalDecision, ApprovalLedger
from contracts.tools import ToolOutcome
from contracts.wire import Query
from policies.loader import PolicyStore
from tests.support.harness import FactoryUnderTest, seed_db, policies_with_keys, write_policy

P1 = {"requester_email": "ana.silva@example.com", "category": "network", "priority": "P1", "summary": "Building B network outage"}
TICKET = {"ticket_text": "Core switch in building B is down.", "requester_email": "ana.silva@example.com"}
FINAL = {"category": "network", "priority": "P1", "ticket_id": None, "summary": "outcome reported"}
PEOPLE = ["maria.keller", "tom.becker", "sara.lind", "omar.haddad", "mallory"]
AUTHORIZED_AT = {0: {"maria.keller"}, 1: {"maria.keller", "sara.lind"}}  # tom.becker is the requester
SLA = 600
RULES = [{"id": "p1", "match": {"tools": ["create_ticket"], "when": "priority == 'P1'"}, "decision": "require_approval", "reason": "P1 pages on-call"}]

actions = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["approve", "reject"]), st.sampled_from(PEOPLE)),
        st.just(("duplicate",)),
        st.just(("timeout",)),
        st.just(("restart",)),
    ),
    max_size=6,
)


class Workers:
    """One worker at a time on the run's task queue; `restart` replaces it mid-run."""

    def __init__(self, fut: FactoryUnderTest) -> None:
        self.fut = fut
        self.worker = None
        self.task = None

    def start(self) -> None:
        self.worker = self.fut.worker()
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        if self.worker is not None:
            await self.worker.shutdown()
            await self.task
            self.worker = None

    async def restart(self) -> None:
        await self.stop()
        self.start()


async def drive(ts_env, fut: FactoryUnderTest, workers: Workers, steps) -> tuple:
    run = await fut.start(TICKET, policy="chain", requester="tom.becker")
    for _ in range(1000):  # up to 20 s on a loaded machine: decisions before parking would only test refusals
        if (await run.status()).approval is not None:
            break
        await asyncio.sleep(0.02)
    request_id = (await run.status()).approval.id if (await run.status()).approval else None

    async def send(verdict: str, decision: ApprovalDecision) -> None:
        try:
            await run.handle.signal(verdict, decision)
        except RPCError as e:  # the run already finished: the server refuses a late decision
            assert e.status is RPCStatusCode.NOT_FOUND

    last = None
    for step in steps:
        if step[0] in ("approve", "reject"):
            # Signed by the person's own key, at the run's (skipped) time; mallory has no key: unsigned.
            now = await ts_env.get_current_time()
            last = (step[0], fut.signed(run.workflow_id, step[1], step[0], request_id, "because", now=now))
            await send(*last)
        elif step[0] == "duplicate" and last is not None:
            await send(*last)  # the very same signed decision again: a replay, refused
        elif step[0] == "timeout":
            await ts_env.sleep(timedelta(seconds=SLA + 1))
        elif step[0] == "restart":
            await workers.restart()
    try:
        result = await asyncio.wait_for(run.result(), timeout=120)
    except RunFailed:
        result = None
    ledger = await run.handle.query(Query.APPROVALS, result_type=ApprovalLedger)
    return run, ledger, result


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=actions)
async def test_no_run_acts_without_an_accepted_approval(ts_env, tmp_path_factory, steps):
    tmp = tmp_path_factory.mktemp("prop")
    db_url = f"sqlite:///{tmp / 'factory.db'}"
    seed_db(db_url)
    root = write_policy(tmp / "pol", "chain", RULES, [("it-desk-leads", SLA), ("it-managers", SLA)])
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(FINAL)]))
    with model.serve() as base_url:
        fut = FactoryUnderTest(ts_env.client, db_url, base_url, f"tq-{uuid.uuid4().hex[:10]}")
        fut.parts.policies = policies_with_keys(root)
        workers = Workers(fut)
        workers.start()
        try:
            run, ledger, result = await drive(ts_env, fut, workers, steps)
        finally:
            await workers.stop()
    (request,) = ledger.requests
    with Session(engine_for(db_url)) as s:
        made = s.exec(select(Ticket).where(Ticket.run_id == run.workflow_id)).all()
    assert request.status in ("approved", "rejected", "expired"), "one terminal decision"
    if request.status == "approved":
        assert request.decided_by in AUTHORIZED_AT[request.tier]
        assert len(made) == 1
    else:
        assert made == [], "acted without an accepted approval"
    if result is not None:
        assert result.tool_calls[0].outcome is (ToolOutcome.OK if request.status == "approved" else ToolOutcome.DENIED)
    assert all(r.reason for r in ledger.refusals)
