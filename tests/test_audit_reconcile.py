"""The audit store says what history says, field by field, over runs with retries, denials,
approvals, refusals, escalations and failures; re-exporting adds nothing; a run exported
while it waits is completed later exactly as a one-shot export would have written it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest
from sqlmodel import Session, func, select

from activities.audit.export import AuditExporter, ExportReport
from activities.audit.store import AuditAnchor, AuditRecordRow, AuditRun
from activities.audit.verify import verify
from activities.db import engine_for
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import RunFailed
from contracts.approval import ApprovalDecision
from contracts.model import ModelCallResult
from contracts.run import AgentRunResult
from contracts.tools import ToolContext
from contracts.wire import Activity, Signal
from tests.support.harness import encrypted_client, factory_with, replay, write_policy
from tests.test_approvals_devserver import parked

RULES = [
    {"id": "lookups", "match": {"tools": ["lookup_requester"]}, "decision": "allow", "reason": "directory reads"},
    {"id": "no-hardware", "match": {"tools": ["create_ticket"], "when": "category == 'hardware'"}, "decision": "deny",
     "reason": "hardware goes to the vendor portal"},
    {"id": "p1-needs-a-lead", "match": {"tools": ["create_ticket"], "when": "priority == 'P1'"}, "decision": "require_approval",
     "reason": "P1 pages on-call"},
    {"id": "routine", "match": {"agents": ["it-triage"], "tools": ["create_ticket"]}, "decision": "allow", "reason": "routine tickets"},
]  # fmt: skip


def ticket(n: int) -> dict:
    return {"ticket_text": f"Case {n}: something is broken.", "requester_email": "jonas.berg@example.com"}


def create(priority: str = "P3", category: str = "access", n: int = 0) -> Reply:
    return Reply.tool("create_ticket", {"requester_email": "jonas.berg@example.com", "category": category, "priority": priority, "summary": f"Case {n} summary"})


def answer(priority: str = "P3", ticket_id: str | None = "INC0000001", category: str = "access") -> Reply:
    return Reply.text({"category": category, "priority": priority, "ticket_id": ticket_id, "summary": "triaged"})


LOOKUP = Reply.tool("lookup_requester", {"email": "jonas.berg@example.com"})

SCRIPTS = {
    "happy-1": [LOOKUP, create(n=1), answer()],
    "happy-2": [create(n=2), answer()],
    "retried": [Reply.error(500, "upstream hiccup"), LOOKUP, Reply.error(503, "overloaded"), create(n=3), answer()],
    "refused": [Reply.tool("delete_user", {"email": "x@example.com"}), Reply.tool("create_ticket", {"priority": "P9"}),
                create("P2", "hardware", 4), answer("P2", None, "hardware")],
    "approved": [create("P1", "network", 5), answer("P1", category="network")],
    "rejected": [create("P1", "network", 6), answer("P1", None, "network")],
    "escalated": [create("P1", "network", 7), answer("P1", category="network")],
    "failed": [LOOKUP, Reply.error(400, "context length exceeded")],
    "invalid": [Reply.tool("create_ticket", {"priority": "P9"})] * 5,
}  # fmt: skip
INPUTS = {name: ticket(i) for i, name in enumerate(SCRIPTS)}


@dataclass
class HistoryView:
    """What a run's history says, read straight from its events (not through the exporter)."""

    model_calls: list[tuple[int, int, int, float]] = field(default_factory=list)
    tool_runs: list[tuple[str, dict, dict, str | None, str | None]] = field(default_factory=list)
    approval_attempts: int = 0


async def read_history(handle, converter) -> HistoryView:
    view = HistoryView()
    history = await handle.fetch_history()
    scheduled, attempts = {}, {}
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes
        elif e.HasField("activity_task_started_event_attributes"):
            attempts[e.activity_task_started_event_attributes.scheduled_event_id] = e.activity_task_started_event_attributes.attempt
        elif e.HasField("activity_task_completed_event_attributes"):
            a = e.activity_task_completed_event_attributes
            s = scheduled[a.scheduled_event_id]
            if s.activity_type.name == Activity.CALL_MODEL:
                (r,) = await converter.decode(a.result.payloads, [ModelCallResult])
                view.model_calls.append((attempts[a.scheduled_event_id], r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.cost_usd))
            elif s.activity_type.name != "send_notification":
                ctx, args = await converter.decode(s.input.payloads, [ToolContext, None])
                (result,) = await converter.decode(a.result.payloads)
                view.tool_runs.append((s.activity_type.name, args, result, ctx.idempotency_key, ctx.approved_by))
        elif e.HasField("workflow_execution_signaled_event_attributes"):
            view.approval_attempts += 1
        elif e.HasField("workflow_execution_update_completed_event_attributes"):
            view.approval_attempts += 1
    return view


async def export(exporter: AuditExporter, runs: dict) -> ExportReport:
    """Export this test's runs (the dev server is shared with other tests, whose keys differ)."""
    total = ExportReport()
    for run in runs.values():
        r = await exporter.export(workflow_id=run.workflow_id)
        total.records += r.records
        total.runs_changed += r.runs_changed
        total.open_runs += r.open_runs
        total.errors += r.errors
    return total


def stored(db_url: str, workflow_id: str) -> tuple[AuditRun, list[dict]]:
    with Session(engine_for(db_url)) as s:
        run = s.exec(select(AuditRun).where(AuditRun.workflow_id == workflow_id)).one()
        rows = s.exec(select(AuditRecordRow).where(AuditRecordRow.run_pk == run.id).order_by(AuditRecordRow.seq)).all()
        s.expunge(run)
        return run, [json.loads(r.body) | {"seq": r.seq} for r in rows]


def counts(db_url: str) -> tuple[int, int, int]:
    with Session(engine_for(db_url)) as s:
        return tuple(s.exec(select(func.count()).select_from(t)).one() for t in (AuditRun, AuditRecordRow, AuditAnchor))  # type: ignore[return-value]


async def test_audit_rows_match_history_field_by_field(client, db_url, tmp_path):
    ring = KeyRing.generate("k1")
    enc = encrypted_client(client, ring)
    audit_ring = KeyRing.generate("a1")
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    root = write_policy(tmp_path / "pol", "recon", RULES, [("it-desk-leads", 120), ("it-managers", 120)])
    write_policy(root, "recon-fast", RULES, [("it-desk-leads", 1.5), ("it-managers", 120)])
    model = ScriptedModel(Turns([], by_first_user={json.dumps(v, sort_keys=True): SCRIPTS[k] for k, v in INPUTS.items()}))
    exporter = AuditExporter(enc, store, audit_ring)
    async with factory_with(enc, db_url, model, policy_root=root) as f:
        start = lambda name: f.start(  # noqa: E731
            INPUTS[name], policy="recon-fast" if name == "escalated" else "recon", requester="jonas.berg", run_key=name
        )
        runs = {name: await start(name) for name in ("happy-1", "happy-2", "retried", "refused", "failed", "invalid")}
        for name in ("approved", "rejected", "escalated"):
            runs[name] = await start(name)
            await parked(runs[name])
        # Export while three runs wait for a person: they are stored up to their last event.
        await asyncio.gather(*(runs[n].result() for n in ("happy-1", "happy-2", "retried", "refused")))
        partial = await export(exporter, runs)
        assert partial.open_runs >= 3  # the three waiting for a person, and any still on their way to failing
        # Spoofs first (a signal from another tenant's lead, an update from the requester), then the real decisions.
        await runs["approved"].handle.signal(Signal.APPROVE, ApprovalDecision(approver="omar.haddad"))
        with pytest.raises(Exception, match="unsigned"):  # jonas.berg has no key: nobody can sign as him
            await f.factory.decide(runs["approved"].workflow_id, "jonas.berg", "approve")
        await f.factory.decide(runs["approved"].workflow_id, "tom.becker", "approve", note="on-call paged")
        await f.factory.decide(runs["rejected"].workflow_id, "maria.keller", "reject", note="duplicate of INC0000002")
        while (await runs["escalated"].status()).approval.tier == 0:  # tier 1 has 1.5 s, then managers
            await asyncio.sleep(0.1)
        await f.factory.decide(runs["escalated"].workflow_id, "sara.lind", "approve", note="manager on duty")
        results: dict[str, AgentRunResult | None] = {}
        for name, run in runs.items():
            try:
                results[name] = await run.result()
            except RunFailed:
                results[name] = None
            await replay(run.handle, enc.data_converter)
    report = await export(exporter, runs)
    assert report.errors == [] and partial.errors == []

    for name, run in runs.items():
        audit_run, records = stored(store, run.workflow_id)
        view = await read_history(enc.get_workflow_handle(run.workflow_id), enc.data_converter)
        kinds = [r["kind"] for r in records]
        assert kinds[0] == "run_started" and records[0]["person"] == "jonas.berg" and records[0]["arguments"] == INPUTS[name]
        models = [r for r in records if r["kind"] == "model_call" and r["outcome"] == "ok"]
        assert [(r["attempts"], r["input_tokens"], r["output_tokens"], r["cost_usd"]) for r in models] == view.model_calls, name
        ran = [r for r in records if r["kind"] == "tool_call" and r["outcome"] == "ok"]
        assert [(r["tool"], r["arguments"], r["result"], r.get("idempotency_key"), r.get("person")) for r in ran] == view.tool_runs, name
        assert kinds.count("approval_attempt") == view.approval_attempts, name
        assert audit_run.input_tokens == sum(m[1] for m in view.model_calls)
        assert audit_run.output_tokens == sum(m[2] for m in view.model_calls)
        calls = [r for r in records if r["kind"] == "tool_call"]
        result = results[name]
        if result is None:
            assert audit_run.status == "failed" and kinds[-1] == "run_failed", name
            continue
        # The workflow's own ledger of tool calls, one for one, in order.
        assert [(c["step"], c["tool"], c["outcome"], c.get("idempotency_key"), c.get("person"), c.get("rule_id")) for c in calls] == [
            (t.step, t.tool, t.outcome.value, t.idempotency_key, t.approved_by, t.decision.rule_id if t.decision else None)
            for t in result.tool_calls
        ], name
        assert (audit_run.status, audit_run.steps, audit_run.agent_version, audit_run.prompt_sha256) == (
            "completed", result.steps, result.agent_version, result.prompt_sha256)
        assert (audit_run.input_tokens, audit_run.output_tokens) == (result.usage.prompt_tokens, result.usage.completion_tokens)
        assert audit_run.cost_usd == pytest.approx(result.usage.cost_usd, abs=1e-9)
        assert (audit_run.policy_bundle, audit_run.policy_sha256) == (result.policy_bundle, result.policy_sha256)
        assert (audit_run.tool_calls, audit_run.denials) == (len(result.tool_calls), result.denials)
        assert kinds.count("approval_requested") == len(result.approvals)
        for request in result.approvals:
            decided = [r for r in records if r["kind"] == "approval_decided" and r["request_id"] == request.id]
            assert [(d["person"], d["outcome"], d.get("note")) for d in decided] == [(request.decided_by, request.status.value, request.note)]

    _, retried = stored(store, runs["retried"].workflow_id)
    assert [r["attempts"] for r in retried if r["kind"] == "model_call"] == [2, 2, 1]
    _, refused = stored(store, runs["refused"].workflow_id)
    assert [(r["tool"], r["outcome"]) for r in refused if r["kind"] == "tool_call"] == [
        ("delete_user", "not_granted"), ("create_ticket", "invalid_arguments"), ("create_ticket", "denied")]
    assert refused[-2]["kind"] == "model_call" and [r for r in refused if r.get("outcome") == "denied"][0]["rule_id"] == "no-hardware"
    assert [r for r in refused if r.get("outcome") == "invalid_arguments"][0]["arguments"] == '{"priority": "P9"}'
    _, approved = stored(store, runs["approved"].workflow_id)
    assert [(r["person"], r["detail"].split(" · ")[0].split(":")[0]) for r in approved if r["kind"] == "approval_attempt"] == [
        ("omar.haddad", "signal approve"), ("jonas.berg", "update refused"), ("tom.becker", "update accepted")]
    assert [r["person"] for r in approved if r["kind"] == "approval_refused"] == ["omar.haddad", "jonas.berg"]
    _, escalated = stored(store, runs["escalated"].workflow_id)
    assert [r["group"] for r in escalated if r["kind"].startswith("approval_") and r["kind"] != "approval_attempt"] == [
        "it-desk-leads", "it-managers", "it-managers"]
    _, invalid = stored(store, runs["invalid"].workflow_id)
    assert invalid[-1]["outcome"] == "ToolArgumentsInvalid" and [r["outcome"] for r in invalid if r["kind"] == "tool_call"] == ["invalid_arguments"] * 4

    # Re-export: nothing changes. A one-shot export into a fresh store writes the very same chains.
    before = counts(store)
    again = await export(exporter, runs)
    assert (again.records, again.runs_changed, counts(store)) == (0, 0, before)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    await export(AuditExporter(enc, fresh, audit_ring), runs)
    for run in runs.values():
        assert stored(fresh, run.workflow_id)[1] == stored(store, run.workflow_id)[1]
    check = verify(store, audit_ring)
    assert check.ok and check.runs == len(runs), check.problems
