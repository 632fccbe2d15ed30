"""Worker metrics after a workload equal the audit records and the envelope ledger exactly: tokens, cost, model calls
(retries included), tool calls by tool and outcome, policy denials, and runs by outcome."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry
from sqlmodel import Session, select

from activities.audit.export import AuditExporter
from activities.audit.store import AuditRecordRow
from activities.budget import BudgetLedger
from activities.db import engine_for
from activities.keys import KeyRing
from activities.model.scripted import ScriptedModel, Turns
from aifactory.client import RunFailed
from tests.support.harness import factory_with, write_policy
from tests.test_approvals_devserver import parked
from tests.test_audit_reconcile import INPUTS, RULES, SCRIPTS
from workers.metrics import FactoryMetrics

NAMES = ("happy-1", "happy-2", "retried", "refused", "failed", "invalid", "approved")


def samples(metrics: FactoryMetrics, name: str) -> list[tuple[dict, float]]:
    return [(s.labels, s.value) for family in metrics.registry.collect() for s in family.samples if s.name == name]


def total(metrics: FactoryMetrics, name: str, **match: str) -> float:
    return sum(v for labels, v in samples(metrics, name) if all(labels.get(k) == want for k, want in match.items()))


async def test_metric_totals_equal_the_audit_records(client, db_url, tmp_path):
    metrics = FactoryMetrics(CollectorRegistry())
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    root = write_policy(tmp_path / "pol", "recon", RULES, [("it-desk-leads", 120), ("it-managers", 120)])
    model = ScriptedModel(Turns([], by_first_user={json.dumps(INPUTS[k], sort_keys=True): SCRIPTS[k] for k in NAMES}))
    async with factory_with(client, db_url, model, policy_root=root, metrics=metrics) as f:
        runs = {n: await f.start(INPUTS[n], policy="recon", requester="jonas.berg", run_key=f"m-{n}-{tmp_path.name[-6:]}") for n in NAMES}
        await parked(runs["approved"])
        # The run shows its request before the notification activity that counts it has finished.
        for _ in range(200):
            if total(metrics, "aifactory_approvals_pending"):
                break
            await asyncio.sleep(0.05)
        assert total(metrics, "aifactory_approvals_pending") == 1
        await f.factory.decide(runs["approved"].workflow_id, "maria.keller", "approve", note="ok")
        outcomes = Counter()
        for run in runs.values():
            try:
                await run.result()
                outcomes["completed"] += 1
            except RunFailed as e:
                outcomes[e.type] += 1
        exporter = AuditExporter(client, store, KeyRing.generate("a1"))
        for run in runs.values():
            await exporter.export(workflow_id=run.workflow_id)

    with Session(engine_for(store)) as s:
        rows = s.exec(select(AuditRecordRow)).all()
    calls = [r for r in rows if r.kind == "model_call"]
    tools = [r for r in rows if r.kind == "tool_call"]

    # Tokens and cost: every attempt that answered, retries included.
    assert total(metrics, "aifactory_tokens_total", direction="input") == sum(r.input_tokens or 0 for r in calls) > 0
    assert total(metrics, "aifactory_tokens_total", direction="output") == sum(r.output_tokens or 0 for r in calls) > 0
    assert total(metrics, "aifactory_cost_usd_total") == pytest.approx(sum(r.cost_usd or 0 for r in calls), abs=1e-9)
    # ... and equal to what the cost-envelope ledger booked for these runs (the agent's envelope, per tenant).
    ledger = BudgetLedger(db_url).rows("it-triage")
    assert len(ledger) == 1 and ledger[0].reserved_usd == pytest.approx(0, abs=1e-12)
    assert ledger[0].spent_usd > 0 and total(metrics, "aifactory_cost_usd_total") == pytest.approx(ledger[0].spent_usd, abs=1e-9)
    # Model call attempts, failed ones included: the retried 500 and 503, and the 400 that ended a run.
    attempts = sum(json.loads(r.body)["attempts"] for r in calls)
    assert total(metrics, "aifactory_model_calls_total") == attempts == len(calls) + 2
    assert total(metrics, "aifactory_model_calls_total", outcome="ok") == sum(1 for r in calls if r.outcome == "ok")
    assert total(metrics, "aifactory_model_calls_total", outcome="ModelCallRejected") == 1
    # Tool calls by tool and outcome, including those that ran nothing.
    by_metric = Counter()
    for labels, v in samples(metrics, "aifactory_tool_calls_total"):
        by_metric[(labels["tool"], labels["outcome"])] += int(v)
    by_audit = Counter((r.tool, r.outcome) for r in tools)
    assert by_metric == by_audit and by_audit[("create_ticket", "denied")] == 1
    # Policy decisions: denials and approvals as the audit records them.
    for decision, outcome in (("deny", "deny"), ("approval", "require_approval"), ("allow", "allow")):
        assert total(metrics, "aifactory_policy_decisions_total", outcome=outcome) == sum(1 for r in tools if r.decision == decision)
    # Runs started and finished, by outcome.
    assert total(metrics, "aifactory_runs_started_total") == len(NAMES)
    finished = Counter({labels["outcome"]: int(v) for labels, v in samples(metrics, "aifactory_runs_finished_total")})
    assert finished == outcomes and outcomes["completed"] == 5
    assert total(metrics, "aifactory_approvals_pending") == 0
    assert total(metrics, "aifactory_approval_wait_seconds_count") == 1
    labels = {l["agent"] for l, _ in samples(metrics, "aifactory_tokens_total")}
    assert labels == {"it-triage"}
