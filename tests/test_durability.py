"""Durability: a worker killed mid-run resumes on restart with no duplicated tool effect;
long runs continue as new before history limits and keep their state."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlmodel import Session, select

from activities.db import engine_for
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.tools.it_desk_activities import Ticket
from aifactory.client import FactoryClient
from tests.support.harness import AGENTS, REPO, agent_folder, factory_with, replay, shipped_triage

TICKET = {"ticket_text": "VPN drops every ten minutes.", "requester_email": "ana.silva@example.com"}
CREATE = {"requester_email": "ana.silva@example.com", "category": "network", "priority": "P3", "summary": "VPN keeps dropping"}
FINAL = {"category": "network", "priority": "P3", "ticket_id": "INC0000001", "summary": "VPN keeps dropping"}


def start_worker_process(env, task_queue: str, db_url: str, base_url: str, log: Path, agents: Path = AGENTS) -> subprocess.Popen:
    """`aifactory worker` as its own process, deployed with the agents folder `agents`."""
    environ = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "AIFACTORY_TASK_QUEUE": task_queue,
        "AIFACTORY_DB_URL": db_url,
        "AIFACTORY_AGENTS_DIR": str(agents),
        "AIFACTORY_ENDPOINT_DEFAULT_BASE_URL": base_url,
        "AIFACTORY_ENDPOINT_DEFAULT_API_KEY": "sk-worker-only",
        "AIFACTORY_CODEC": "off",  # the test's own client speaks clear text
    }
    return subprocess.Popen(
        [sys.executable, "-m", "aifactory.cli", "worker"], env=environ, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_worker_killed_mid_run_resumes_without_duplicate_effects(env, db_url, tmp_path):
    # Turn 3 (the final answer) is slow, so the worker is killed after the ticket exists
    # and while a model call is in flight; a fresh worker process must finish the run.
    model = ScriptedModel(
        Turns([Reply.tool("lookup_requester", {"email": "ana.silva@example.com"}), Reply.tool("create_ticket", CREATE), Reply.text(FINAL, delay=3.0)])
    )
    task_queue = f"tq-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    with model.serve() as base_url:
        model_settings = shipped_triage().spec.model.model_copy(update={"timeout_seconds": 5.0})
        agents = agent_folder(tmp_path, task_queue, model=model_settings)
        factory = FactoryClient(env.client, agents)
        first = start_worker_process(env, task_queue, db_url, base_url, log, agents)
        try:
            run = await factory.start_run("it-triage", TICKET, tenant="acme", run_key=uuid.uuid4().hex[:8])
            await wait_for(lambda: len(model.requests) >= 3)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            second = start_worker_process(env, task_queue, db_url, base_url, log)
            try:
                result = await asyncio.wait_for(run.result(), timeout=90)
            finally:
                second.terminate()
                second.wait(timeout=15)
        finally:
            if first.poll() is None:
                first.kill()
        await replay(run.handle)
        history = await run.handle.fetch_history()

    with Session(engine_for(db_url)) as s:
        rows = s.exec(select(Ticket)).all()
    assert len(rows) == 1, "the ticket was created once"
    assert result.output["category"] == "network"
    assert [r.tool for r in result.tool_calls] == ["lookup_requester", "create_ticket"]
    # The final model call ran again on the new worker (attempt 2); the tools did not.
    assert len(model.requests) >= 4
    tool_runs = [
        e for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    assert any(e.activity_task_started_event_attributes.attempt >= 2 for e in tool_runs)
    assert "sk-worker-only" not in history.to_json()


async def test_long_run_continues_as_new_and_keeps_its_state(client, db_url):
    # Six different lookups (six identical ones would trip the repeated-call breaker).
    lookups = [Reply.tool("lookup_requester", {"email": f"person{i}@example.com"}) for i in range(6)]
    model = ScriptedModel(Turns([*lookups, Reply.tool("create_ticket", CREATE), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.factory.start_prepared(f.run_input(TICKET, history_budget_events=20, step_limit=20))
        result = await run.result()
        executions = [w async for w in client.list_workflows(f'WorkflowId = "{run.workflow_id}"')]
        for execution in executions:
            await replay(client.get_workflow_handle(run.workflow_id, run_id=execution.run_id))
    assert len(executions) >= 3, "the run continued as new"
    assert result.steps == 8 and result.usage.model_calls == 8
    assert [r.tool for r in result.tool_calls] == ["lookup_requester"] * 6 + ["create_ticket"]
    # Each model call still saw the whole conversation, across executions.
    # (the last call also carries the request for the answer, once the required tools have run)
    assert [len(r.body["messages"]) for r in model.requests] == [2 + 2 * i for i in range(7)] + [17]
    with Session(engine_for(db_url)) as s:
        assert len(s.exec(select(Ticket)).all()) == 1
