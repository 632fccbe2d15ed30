"""Kill switches: 50 runs in flight are stopped at their next step boundary, no tool activity is
scheduled after a run acknowledged the stop, new starts are refused, and who and why are on record."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from activities.audit.export import AuditExporter
from activities.audit.query import run_story
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.switches import switch_history
from aifactory.client import RunRefused
from aifactory import RunStopped, StepLimitExceeded
from tests.support.failures import fails_with
from contracts.agent import Breakers
from contracts.control import SwitchScope
from contracts import signing as S
from contracts.wire import Activity, Update
from tests.support.harness import factory_with, people_signer, replay

TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}
TOOLS = {"lookup_requester", "create_ticket"}


CLOSED = (
    "activity_task_completed_event_attributes", "activity_task_failed_event_attributes",
    "activity_task_timed_out_event_attributes", "activity_task_canceled_event_attributes",
)  # fmt: skip


def uncancelled_in_flight(history) -> list[int]:
    """Model calls in flight when the stop was accepted (scheduled, not closed) that got no cancel request.

    What must hold for every run, however the machine is loaded: whatever call was in flight at
    the stop is cancelled, not awaited (whether one was in flight depends on timing; this does not)."""
    scheduled: set[int] = set()
    closed: set[int] = set()
    in_flight: set[int] | None = None
    cancelled: set[int] = set()
    for e in history.events:
        which = e.WhichOneof("attributes")
        if which == "activity_task_scheduled_event_attributes" and e.activity_task_scheduled_event_attributes.activity_type.name == Activity.CALL_MODEL:
            scheduled.add(e.event_id)
        elif which in CLOSED:
            closed.add(getattr(e, which).scheduled_event_id)
        elif which == "workflow_execution_update_accepted_event_attributes" and in_flight is None:
            if e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name == "stop":
                in_flight = scheduled - closed
        elif which == "activity_task_cancel_requested_event_attributes":
            cancelled.add(e.activity_task_cancel_requested_event_attributes.scheduled_event_id)
    return sorted((in_flight or set()) - cancelled)


def tool_scheduled_after_stop(history) -> tuple[int | None, int]:
    """(event id of the accepted stop update, tool activities scheduled after it)."""
    accepted = None
    after = 0
    for e in history.events:
        if e.HasField("workflow_execution_update_accepted_event_attributes"):
            if e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name == "stop":
                accepted = e.event_id
        elif e.HasField("activity_task_scheduled_event_attributes") and accepted is not None:
            after += e.activity_task_scheduled_event_attributes.activity_type.name in TOOLS
    return accepted, after


async def test_kill_switch_stops_fifty_runs_in_flight_and_refuses_new_ones(client, db_url, tmp_path):
    # A slow model that always wants one more (different) lookup: runs stay busy until stopped.
    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": f"u{i}@example.com"}, delay=0.5) for i in range(200)]))
    tenant = f"kill-{uuid.uuid4().hex[:8]}"
    # 50 runs at once: the worker keeps its workflow cache, as a production worker does
    # (every other workflow test replays from scratch on each task, which this load would swamp).
    async with factory_with(client, db_url, model, max_cached_workflows=100) as f:
        f.factory.db_url = db_url
        runs = [await f.start(TICKET, tenant=tenant, step_limit=200, breakers=Breakers(max_repeated_calls=100)) for _ in range(50)]
        # Let every run get going: each has had its first model call answered, so it was admitted
        # (a run whose first call comes after the switch is refused at admission instead; below).
        for _ in range(300):
            if all([(await r.status()).usage.model_calls >= 1 for r in runs]):
                break
            await asyncio.sleep(0.1)
        report = await f.factory.kill(SwitchScope.TENANT, tenant, reason="runaway lookups", by="maria.keller")
        assert sorted(report.stopped) == sorted(r.workflow_id for r in runs) and not report.missed

        for run in runs:
            with fails_with(RunStopped) as failed:
                await run.result()
            assert failed.value.type == "RunStopped"
            assert f"stopped by maria.keller (kill switch #{report.switch.id}): runaway lookups" in str(failed.value)
            history = await run.handle.fetch_history()
            accepted, after = tool_scheduled_after_stop(history)
            assert accepted is not None and after == 0
            # A model call in flight when the run acknowledged the stop was cancelled, not awaited.
            assert uncancelled_in_flight(history) == []
        await replay(runs[0].handle)
        store = f"sqlite:///{tmp_path / 'audit.db'}"
        await AuditExporter(client, store, KeyRing.generate("a1")).export(workflow_id=runs[0].workflow_id)
        _, story = run_story(store, runs[0].workflow_id)
        killed = [r for r in story if r["kind"] == "killed"]
        assert len(killed) == 1 and killed[0]["person"] == "maria.keller"
        assert killed[0]["detail"] == f"kill switch #{report.switch.id}: runaway lookups · signed by maria.keller (key maria.keller-test)"
        assert killed[0]["signer"] == "maria.keller"
        assert story[-1]["kind"] == "run_failed" and story[-1]["outcome"] == "RunStopped"

        # New starts are refused: by the client that sees the store, and by the run itself otherwise.
        with pytest.raises(RunRefused, match="kill switch .* on tenant .* set by maria.keller"):
            await f.start(TICKET, tenant=tenant)
        f.factory.db_url = None
        late = await f.start(TICKET, tenant=tenant)
        with fails_with(RunStopped, match="refused at start: kill switch"):
            await late.result()
        f.factory.db_url = db_url

        lifted = await f.factory.unkill(SwitchScope.TENANT, tenant, reason="fixed", by="maria.keller")
        assert [s.id for s in lifted] == [report.switch.id]
        again = await f.start(TICKET, tenant=tenant, step_limit=2)
        with fails_with(StepLimitExceeded) as failed:
            await again.result()
        assert failed.value.type == "StepLimitExceeded"  # it ran: the switch is off

    rows = [r for r in switch_history(db_url) if r.target == tenant]
    assert len(rows) == 1 and rows[0].set_by == "maria.keller" and rows[0].reason == "runaway lookups"
    assert rows[0].lifted_by == "maria.keller" and rows[0].lift_reason == "fixed"


async def test_a_stopped_run_interrupts_its_slow_model_call_on_the_worker(client, db_url):
    from prometheus_client import CollectorRegistry

    from contracts.control import StopAnswer, StopOrder
    from workers.metrics import FactoryMetrics

    def cancelled_calls() -> float:
        return sum(
            s.value for family in metrics.registry.collect() for s in family.samples
            if s.name == "aifactory_model_calls_total" and s.labels.get("outcome") == "CancelledError"
        )  # fmt: skip

    metrics = FactoryMetrics(CollectorRegistry())
    # The model would answer after 40 s; the call heartbeats every 5 s while it waits.
    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": "ana.silva@example.com"}, delay=40)]))
    async with factory_with(client, db_url, model, metrics=metrics) as f:
        run = await f.start(TICKET)
        while not model.requests:
            await asyncio.sleep(0.05)
        await asyncio.sleep(7)  # past the call's first heartbeat: the cancellation must ride on a later one
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        order = StopOrder(by="maria.keller", reason="hung model")
        order.signature = people_signer().sign(S.STOP, run.workflow_id, "maria.keller", S.stop_body(order.reason, None))
        answer = await run.handle.execute_update(Update.STOP, order, result_type=StopAnswer)
        assert answer.acknowledged
        with fails_with(RunStopped, match="stopped by maria.keller: hung model"):
            await run.result()
        # The worker's call is interrupted by the next heartbeat's answer, long before the model would reply.
        while cancelled_calls() < 1 and loop.time() - stopped_at < 30:
            await asyncio.sleep(0.1)
        assert cancelled_calls() == 1 and loop.time() - stopped_at < 15
