"""Honest gauges, read from a worker's metrics endpoint over HTTP: approvals pending go back to zero
whichever way a waiting run leaves (stopped, rejected, expired, approved and completed); runs that
wait on a task queue nobody polls are counted by the audit export pass; a pass is counted by outcome."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from activities.audit.activity import AuditActivities
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import RunFailed
from contracts.audit import AuditPassInput, AuditPassResult
from contracts.control import SwitchScope
from contracts.wire import Workflow
from tests.support.harness import factory_with, write_policy
from tests.test_approvals_devserver import DONE, NOT_OPENED, P1, RULES, TICKET, parked
from workers.devserver import free_port
from workers.metrics import FactoryMetrics
from workflows.audit_export import AuditExportWorkflow


def scrape(port: int, name: str) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples if s.name == name
    }  # fmt: skip


async def eventually(check, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    assert check()


async def test_approvals_pending_go_back_to_zero_however_the_run_leaves(client, db_url, tmp_path):
    metrics = FactoryMetrics(CollectorRegistry())
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    root = write_policy(tmp_path / "pol", "wait", RULES, [("it-desk-leads", 120)])
    write_policy(root, "lapse", RULES, [("it-desk-leads", 2)])
    tenant = f"g-{uuid.uuid4().hex[:6]}"
    script = {name: [Reply.tool("create_ticket", {**P1, "summary": f"{name}: building B outage"}), Reply.text(NOT_OPENED)] for name in ("stopped", "rejected", "expired", "approved")}
    inputs = {name: {**TICKET, "ticket_text": f"{name}: the core switch in building B is down"} for name in script}
    model = ScriptedModel(Turns([], by_first_user={json.dumps(inputs[n], sort_keys=True): s for n, s in script.items()}))
    try:
        async with factory_with(client, db_url, model, policy_root=root, metrics=metrics) as f:
            f.factory.db_url = db_url
            runs = {
                name: await f.start(inputs[name], tenant=tenant, requester="tom.becker", policy="lapse" if name == "expired" else "wait")
                for name in script
            }  # fmt: skip
            for name in ("stopped", "rejected", "approved"):
                await parked(runs[name])
            pending = lambda: sum(scrape(port, "aifactory_approvals_pending").values())  # noqa: E731
            await eventually(lambda: pending() >= 3)  # (the one with a 2 s SLA may have expired already)
            await f.factory.decide(runs["rejected"].workflow_id, "maria.keller", "reject", note="planned maintenance")
            await f.factory.decide(runs["approved"].workflow_id, "maria.keller", "approve", note="confirmed")
            for name in ("rejected", "approved", "expired"):
                await runs[name].result()
            report = await f.factory.kill(SwitchScope.TENANT, tenant, reason="gauge test", by="maria.keller")
            outcomes = {}
            for name, run in runs.items():
                try:
                    await run.result()
                    outcomes[name] = "completed"
                except RunFailed as e:
                    outcomes[name] = e.type
            await eventually(lambda: pending() == 0)
            values = scrape(port, "aifactory_approvals_pending")
    finally:
        server.shutdown()
    assert outcomes == {"stopped": "RunStopped", "rejected": "completed", "expired": "completed", "approved": "completed"}
    assert report.stopped == [runs["stopped"].workflow_id]
    assert values and all(v == 0 for v in values.values()), values


async def test_runs_on_a_queue_no_worker_polls_are_counted_by_the_export_pass(client, db_url, tmp_path):
    metrics = FactoryMetrics(CollectorRegistry())
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=metrics.registry)
    lonely = f"nobody-polls-{uuid.uuid4().hex[:6]}"
    try:
        await client.start_workflow(Workflow.AGENT, {"agent": "it-triage", "tenant": "acme", "run_key": lonely, "input": TICKET},
                                    id=f"agent/it-triage/acme/{lonely}", task_queue=lonely)  # fmt: skip
        model = ScriptedModel(Turns([Reply.text(DONE)]))
        async with factory_with(client, db_url, model, metrics=metrics, audit=AuditActivities(db_url, KeyRing.generate("a1"))) as f:
            result = await client.execute_workflow(
                AuditExportWorkflow.run, AuditPassInput(enforce_retention=False), id=f"audit-pass-{uuid.uuid4().hex[:6]}",
                task_queue=f.task_queue, result_type=AuditPassResult,
            )  # fmt: skip
            gauge = scrape(port, "aifactory_runs_without_workers")
            passes = scrape(port, "aifactory_audit_export_passes_total")
    finally:
        server.shutdown()
        await client.get_workflow_handle(f"agent/it-triage/acme/{lonely}").terminate(reason="test over")
    assert result.queues_without_workers.get(lonely) == 1
    assert gauge[(("task_queue", lonely),)] == 1
    assert sum(passes.values()) == 1
