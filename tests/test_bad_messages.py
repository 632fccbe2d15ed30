"""Bad messages never wedge a run: a signal of random bytes marked as encrypted, a signal of the
wrong shape, and updates with an unknown verdict or a blank approver are each refused and
recorded, while the run answers queries, completes after a valid decision, and still obeys a
kill switch. A run whose workflow task fails for any other reason is terminated by the switch."""

from __future__ import annotations

import os
import uuid

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.worker import Worker

from activities.audit.export import AuditExporter
from activities.audit.query import run_story
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory import RunStopped
from tests.support.failures import fails_with
from contracts import search
from contracts.approval import ApprovalLedger
from contracts.control import SwitchScope
from contracts.wire import Query, Signal, Update, Workflow
from tests.support.harness import encrypted_client, factory_with, replay
from tests.test_approvals_devserver import DONE, P1, TICKET, parked, tickets
from workers.codec import data_converter
from workers.worker import sandbox_runner

RING = KeyRing.generate("k1")
GARBAGE = Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": b"k1"}, data=os.urandom(64))


async def send_bad_messages(client, sealed_handle) -> None:
    """The four bad messages of the issue, each as someone with frontend access could send it."""
    raw = client.get_workflow_handle(sealed_handle.id)  # a plain client: the payload goes as written
    await raw.signal(Signal.APPROVE, RawValue(GARBAGE))
    await sealed_handle.signal(Signal.APPROVE, "approve it")
    with pytest.raises(WorkflowUpdateFailedError) as verdict:
        await sealed_handle.execute_update(Update.DECIDE_APPROVAL, {"approver": "maria.keller", "verdict": "maybe"})
    assert "verdict" in verdict.value.cause.message
    with pytest.raises(WorkflowUpdateFailedError) as blank:
        await sealed_handle.execute_update(Update.DECIDE_APPROVAL, {"approver": "   ", "verdict": "approve"})
    assert "approver is required" in blank.value.cause.message


async def test_bad_messages_are_refused_on_record_and_the_run_goes_on(client, db_url, tmp_path):
    sealed = encrypted_client(client, RING)
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    async with factory_with(sealed, db_url, model) as f:
        run = await f.start(TICKET, requester="tom.becker")
        await parked(run)
        await send_bad_messages(client, run.handle)
        status = await run.status()  # still answers, still waiting for a person
        assert status.approval is not None and status.state.value == "awaiting_approval"
        ledger = await run.handle.query(Query.APPROVALS, result_type=ApprovalLedger)
        reasons = [r.reason for r in ledger.refusals]
        assert len(reasons) == 4 and "could not be decrypted" in reasons[0] and "is not a ApprovalDecision" in reasons[1]
        await f.factory.decide(run.workflow_id, "maria.keller", "approve", note="confirmed")
        result = await run.result()
        await replay(run.handle, data_converter(RING, worker=True))
        store = f"sqlite:///{tmp_path / 'audit.db'}"
        report = await AuditExporter(sealed, store, KeyRing.generate("a1")).export(workflow_id=run.workflow_id)
    assert result.approvals[0].decided_by == "maria.keller" and len(tickets(db_url)) == 1
    assert report.errors == [] and report.gaps == []
    _, story = run_story(store, run.workflow_id)
    attempts = [r for r in story if r["kind"] == "approval_attempt"]
    refused = [r for r in story if r["kind"] == "approval_refused"]
    # Unreadable ones are recorded as refused; a readable one with its verdict, refused in its detail.
    assert [a["outcome"] for a in attempts] == ["refused", "refused", "refused", "approve", "approve"]
    assert "signal approve unreadable" in attempts[0]["detail"] and "signal approve unreadable" in attempts[1]["detail"]
    assert all(a["detail"].startswith("update refused") for a in attempts[2:4]) and attempts[4]["detail"].startswith("update accepted")
    assert len(refused) == 4 and story[-1]["kind"] == "run_completed"


async def test_a_run_that_took_bad_messages_still_obeys_the_kill_switch(client, db_url):
    sealed = encrypted_client(client, RING)
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    async with factory_with(sealed, db_url, model) as f:
        f.factory.db_url = db_url
        run = await f.start(TICKET, tenant=f"t-{uuid.uuid4().hex[:6]}", requester="tom.becker")
        await parked(run)
        await send_bad_messages(client, run.handle)
        report = await f.factory.kill(SwitchScope.TENANT, run.handle.id.split("/")[2], reason="bad messages", by="maria.keller")
        with fails_with(RunStopped) as failed:
            await run.result()
        described = await run.handle.describe()
        await replay(run.handle, data_converter(RING, worker=True))
    assert report.stopped == [run.workflow_id] and failed.value.type == "RunStopped"
    # It waits for nobody now, and the listings say so.
    assert described.typed_search_attributes.get(search.AWAITING_APPROVAL) is False
    assert described.typed_search_attributes.get(search.APPROVAL_GROUP) is None


@workflow.defn(name=Workflow.AGENT, sandboxed=False)
class BrokenAgentWorkflow:
    """A workflow task that fails every time (a bug, a missing dependency): the run can take nothing."""

    @workflow.run
    async def run(self, raw: RawValue) -> None:
        raise RuntimeError("this build of the workflow is broken")

    @workflow.update(name=Update.STOP)
    async def stop(self, order: RawValue) -> None:
        return None


async def test_a_run_whose_workflow_task_keeps_failing_is_terminated_by_the_kill_switch(client, db_url, tmp_path):
    model = ScriptedModel(Turns([Reply.text(DONE)]))
    async with factory_with(client, db_url, model) as f:
        f.factory.db_url = db_url
        tenant = f"w-{uuid.uuid4().hex[:6]}"
        queue = f"{f.task_queue}-broken"
        async with Worker(client, task_queue=queue, workflows=[BrokenAgentWorkflow], workflow_runner=sandbox_runner()):
            f.task_queue = queue
            run = await f.start(TICKET, tenant=tenant)
            for _ in range(200):  # let its workflow task fail a few times
                if (await run.handle.describe()).raw_description.pending_workflow_task.attempt >= 3:
                    break
                await __import__("asyncio").sleep(0.1)
            report = await f.factory.kill(SwitchScope.TENANT, tenant, reason="wedged run", by="maria.keller")
        described = await run.handle.describe()
        store = f"sqlite:///{tmp_path / 'audit.db'}"
        await AuditExporter(client, store, KeyRing.generate("a1")).export(workflow_id=run.workflow_id)
    assert report.terminated == [run.workflow_id] and report.stopped == [] and report.missed == []
    assert described.status.name == "TERMINATED"
    _, story = run_story(store, run.workflow_id)
    assert story[-1]["kind"] == "run_terminated"
    assert f"kill switch #{report.switch.id} by maria.keller: wedged run" in story[-1]["detail"]
