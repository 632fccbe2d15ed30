"""Strict encryption: a worker with a key ring fails a clear-text or altered start at once, typed,
in its first workflow task (no task is retried for it); a clear-text decision is refused and the
run goes on; and a client whose key ring differs from the workers' is told so when it connects."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from activities.codec_keys import check_codec_keys
from activities.keys import KeyRing, KeyRingError
from activities.model.scripted import Reply, ScriptedModel, Turns
from aifactory.client import RunHandle
from aifactory.errors import BY_TYPE
from contracts.approval import ApprovalDecision, ApprovalLedger
from contracts.wire import Query, Signal, Workflow
from tests.support.failures import fails_with
from tests.support.harness import REPO, encrypted_client, factory_with, replay
from tests.test_approvals_devserver import DONE, P1, TICKET, parked
from workers.codec import data_converter

RING = KeyRing.generate("k1")


def task_outcomes(history) -> tuple[int, int]:
    """(workflow tasks completed, workflow tasks failed)."""
    completed = sum(e.HasField("workflow_task_completed_event_attributes") for e in history.events)
    failed = sum(e.HasField("workflow_task_failed_event_attributes") for e in history.events)
    return completed, failed


async def fails_at_once(handle) -> ApplicationError:
    handle = encrypted_client(handle._client, RING).get_workflow_handle(handle.id)  # the failure is encrypted too
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    history = await handle.fetch_history()
    assert task_outcomes(history) == (1, 0), "failed in its first workflow task, none retried"
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    with fails_with(BY_TYPE[cause.type]):  # the face raises the class of that type
        await RunHandle(handle.id, False, handle).result()
    return cause


async def test_a_clear_text_start_fails_the_run_at_once(client, db_url):
    model = ScriptedModel(Turns([Reply.text(DONE)]))
    async with factory_with(encrypted_client(client, RING), db_url, model) as f:
        body = f.run_input(TICKET).model_dump(mode="json")
        handle = await client.start_workflow(Workflow.AGENT, body, id=f"agent/it-triage/acme/{body['run_key']}", task_queue=f.task_queue)
        cause = await fails_at_once(handle)
    assert cause.type == "PayloadNotEncrypted" and "sent in clear text" in cause.message and "--codec-endpoint" in cause.message
    assert model.requests == []


@pytest.mark.parametrize("damage", ["altered", "other key", "unknown key id"])
async def test_an_undecodable_start_fails_the_run_at_once(client, db_url, damage):
    model = ScriptedModel(Turns([Reply.text(DONE)]))
    async with factory_with(encrypted_client(client, RING), db_url, model) as f:
        run_input = f.run_input(TICKET)
        ring = {"altered": RING, "other key": KeyRing.generate("k1"), "unknown key id": KeyRing.generate("k9")}[damage]
        [payload] = await data_converter(ring).encode([run_input])
        if damage == "altered":
            payload.data = payload.data[:-1] + bytes([payload.data[-1] ^ 1])
        handle = await client.start_workflow(Workflow.AGENT, RawValue(payload), id=run_input.workflow_id, task_queue=f.task_queue)
        cause = await fails_at_once(handle)
    assert cause.type == "PayloadUndecodable" and "could not be decrypted" in cause.message
    assert model.requests == []


async def test_a_clear_text_decision_is_refused_and_the_run_goes_on(client, db_url):
    sealed = encrypted_client(client, RING)
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    async with factory_with(sealed, db_url, model) as f:
        run = await f.start(TICKET, requester="tom.becker")
        await parked(run)
        await client.get_workflow_handle(run.workflow_id).signal(Signal.APPROVE, ApprovalDecision(approver="maria.keller"))
        ledger = await run.handle.query(Query.APPROVALS, result_type=ApprovalLedger)
        assert "sent in clear text" in ledger.refusals[0].reason and ledger.requests[0].status == "pending"
        await f.factory.decide(run.workflow_id, "maria.keller", "approve")
        result = await run.result()
        await replay(run.handle, data_converter(RING, worker=True))
    assert result.approvals[0].decided_by == "maria.keller"


async def test_a_client_with_other_keys_is_refused_at_connect_in_one_sentence(client, db_url, env):
    model = ScriptedModel(Turns([Reply.text(DONE)]))
    async with factory_with(encrypted_client(client, RING), db_url, model):  # the worker registers its keys
        check_codec_keys(db_url, RING)  # the same ring: fine
        with pytest.raises(KeyRingError, match="codec key 'k1' of this client is not the key the factory's workers use"):
            check_codec_keys(db_url, KeyRing.generate("k1"))
        with pytest.raises(KeyRingError, match="encrypts with codec key 'k2', which no worker of this factory holds"):
            check_codec_keys(db_url, RING.rotated("k2"))
        other = KeyRing.generate("k1")
        import base64

        environ = {
            **os.environ, "TEMPORAL_ADDRESS": env.client.service_client.config.target_host, "AIFACTORY_DB_URL": db_url,
            "AIFACTORY_CODEC_KEYS": f"k1={base64.b64encode(other.keys['k1']).decode()}",
        }  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "aifactory.cli", "status", f"agent/it-triage/acme/{uuid.uuid4().hex[:6]}"],
            env=environ, cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aifactory status: codec key 'k1' of this client is not the key") and "Traceback" not in proc.stderr
