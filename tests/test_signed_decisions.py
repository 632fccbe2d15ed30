"""Decisions people can trust: every approval, stop order, budget decision and switch lift counts only
with valid proof of who made it. Forged decisions, sent as an attacker with frontend access would
(through the plain temporalio client), are each refused with a reason, the run does not move, and
the audit store shows every refusal; the one valid decision is accepted once."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.client import WorkflowUpdateFailedError

from activities.audit.export import AuditExporter
from activities.audit.query import run_story
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.policy import PolicyActivities
from activities.switches import set_switch
from aifactory.client import RunRefused
from aifactory import RunStopped
from tests.support.failures import fails_with
from aifactory.keys_cli import register
from aifactory.signing import Signer, generate
from contracts import signing as S
from contracts.approval import ApprovalDecision
from contracts.budget import BudgetDecision
from contracts.control import StopOrder, SwitchScope
from contracts.wire import Query, Update
from policies.loader import PolicyStore
from tests.support.harness import factory_with, replay, people_keys, directory_keys, write_policy
from tests.test_approvals_devserver import DONE, P1, RULES, TICKET, parked, tickets

NOW = datetime.now(timezone.utc)
REVOKED = generate("maria.keller", key_id="maria-revoked")
EXPIRED = generate("maria.keller", key_id="maria-expired")


@pytest.fixture
def policies(tmp_path):
    """The test directory's keys, plus a revoked and an expired key of maria.keller's."""
    overlay = tmp_path / "directory.yaml"
    shutil.copy(directory_keys(), overlay)
    register(overlay, "maria.keller", {**REVOKED.directory_entry(), "revoked_at": (NOW - timedelta(hours=1)).isoformat()})
    register(overlay, "maria.keller", {**EXPIRED.directory_entry(), "valid_from": (NOW - timedelta(days=2)).isoformat(),
                                       "valid_until": (NOW - timedelta(hours=1)).isoformat()})  # fmt: skip
    return lambda root=None: PolicyActivities(PolicyStore(root, overlay=overlay))


def sign_as(key, wid: str, person: str, request_id: str | None, verdict: str = "approve", note: str | None = None, **kw) -> ApprovalDecision:
    decision = ApprovalDecision(approver=person, verdict=verdict, request_id=request_id, note=note)
    decision.signature = Signer([key], service=key.person).sign(S.APPROVAL, kw.get("run", wid), person, S.approval_body(request_id, verdict, note))
    return decision


async def refused(handle, decision) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(Update.DECIDE_APPROVAL, decision)
    return failed.value.cause.message


async def test_forged_approvals_are_refused_on_record_and_the_valid_one_counts_once(client, db_url, tmp_path, policies):
    keys = people_keys()
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE, delay=3.0)]))
    async with factory_with(client, db_url, model, policies=policies()) as f:
        run = await f.start(TICKET, requester="tom.becker")
        request = (await parked(run)) or (await run.status()).approval
        wid, rid = run.workflow_id, request.id
        raw = client.get_workflow_handle(wid)  # the plain temporalio client: no aifactory in between
        altered_verdict = sign_as(keys["maria.keller"], wid, "maria.keller", rid)
        altered_verdict.verdict = "reject"
        altered_note = sign_as(keys["maria.keller"], wid, "maria.keller", rid, note="confirmed")
        altered_note.note = "confirmed, and open three more"
        forged = {
            "unsigned": (ApprovalDecision(approver="maria.keller", request_id=rid), "unsigned"),
            "another person's key": (sign_as(keys["sara.lind"], wid, "maria.keller", rid), "signed by sara.lind, who may not decide for maria.keller"),
            "a revoked key": (sign_as(REVOKED, wid, "maria.keller", rid), "key 'maria-revoked' of maria.keller, revoked at"),
            "an expired key": (sign_as(EXPIRED, wid, "maria.keller", rid), "key 'maria-expired' of maria.keller, which expired at"),
            "another run": (sign_as(keys["maria.keller"], wid, "maria.keller", rid, run="agent/it-triage/acme/other"), "signed for another run"),
            "another request": (sign_as(keys["maria.keller"], wid, "maria.keller", "7.0"), "no approval request '7.0' on this run"),
            "altered verdict": (altered_verdict, "the signature does not verify"),
            "altered note": (altered_note, "the signature does not verify"),
            "outside the group": (sign_as(keys["sara.lind"], wid, "sara.lind", rid), "is not in approver group 'it-desk-leads'"),
            "the requester": (sign_as(keys["tom.becker"], wid, "tom.becker", rid), "requested this run and may not decide"),
            "another tenant": (sign_as(keys["omar.haddad"], wid, "omar.haddad", rid), "may not decide for tenant 'acme'"),
        }  # fmt: skip
        for case, (decision, reason) in forged.items():
            assert reason in await refused(raw, decision), case
        # The run did not move.
        assert (await run.status()).state.value == "awaiting_approval" and tickets(db_url) == []
        valid = sign_as(keys["maria.keller"], wid, "maria.keller", rid, note="confirmed with the site")
        answer = await raw.execute_update(Update.DECIDE_APPROVAL, valid)
        assert "a replay" in await refused(raw, valid)  # the same signed decision, sent again after acceptance
        result = await run.result()
        await replay(run.handle)
        store = f"sqlite:///{tmp_path / 'audit.db'}"
        await AuditExporter(client, store, KeyRing.generate("a1"), witness_queue=None).export(workflow_id=wid)
    assert answer["accepted"] is True and result.approvals[0].decided_by == "maria.keller" and len(tickets(db_url)) == 1
    _, story = run_story(store, wid)
    refusals = [r for r in story if r["kind"] == "approval_refused"]
    attempts = [r for r in story if r["kind"] == "approval_attempt"]
    assert len(refusals) == len(forged) + 1  # and the replay
    assert sum("unsigned" in a["detail"] for a in attempts) == 1 and attempts[-2]["signer"] == "maria.keller"
    assert all(a["detail"].startswith("update refused") for a in attempts if a is not attempts[-2])


async def test_a_valid_signature_after_the_request_expired_is_refused(client, db_url, tmp_path, policies):
    root = write_policy(tmp_path / "pol", "brief", RULES, [("it-desk-leads", 1)])  # safe default: deny, the run goes on
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE, delay=4.0)]))
    async with factory_with(client, db_url, model, policies=policies(root)) as f:
        run = await f.start(TICKET, requester="tom.becker", policy="brief")
        request = (await parked(run)) or (await run.status()).approval
        for _ in range(100):  # the request expires after its 1 s SLA; the run asks the model again, slowly
            if (await run.handle.query(Query.APPROVALS))["requests"][0]["status"] == "expired":
                break
            await asyncio.sleep(0.1)
        late = sign_as(people_keys()["maria.keller"], run.workflow_id, "maria.keller", request.id)
        reason = await refused(client.get_workflow_handle(run.workflow_id), late)
        result = await run.result()
    assert f"request {request.id} expired" in reason
    assert result.approvals[0].status == "expired" and tickets(db_url) == []


async def test_forged_stop_orders_and_budget_decisions_are_refused_and_a_signed_stop_counts(client, db_url, policies):
    keys = people_keys()
    model = ScriptedModel(Turns([Reply.tool("lookup_requester", {"email": f"u{i}@example.com"}, delay=0.3) for i in range(60)]))
    tenant = f"s-{uuid.uuid4().hex[:6]}"
    async with factory_with(client, db_url, model, policies=policies()) as f:
        f.factory.db_url = db_url
        run = await f.start(TICKET, tenant=tenant, step_limit=60)
        await asyncio.sleep(1.0)
        raw = client.get_workflow_handle(run.workflow_id)
        sara_for_maria = Signer([keys["sara.lind"]], service="sara.lind")
        forged = [
            ("stop", StopOrder(by="maria.keller", reason="forged"), "update stop: unsigned"),
            ("stop", StopOrder(by="maria.keller", reason="forged", signature=sara_for_maria.sign(S.STOP, run.workflow_id, "maria.keller", S.stop_body("forged", None))),
             "may not decide for maria.keller"),
            ("stop", StopOrder(by="maria.keller", reason="forged", signature=Signer([REVOKED]).sign(S.STOP, run.workflow_id, "maria.keller", S.stop_body("forged", None))),
             "revoked"),
            ("budget_decision", BudgetDecision(by="maria.keller", action="stop"), "update budget_decision: unsigned"),
            ("budget_decision", BudgetDecision(by="maria.keller", action="resume", signature=Signer([EXPIRED]).sign(S.BUDGET, run.workflow_id, "maria.keller", S.budget_body("resume", ""))),
             "expired"),
        ]  # fmt: skip
        for name, message, reason in forged:
            with pytest.raises(WorkflowUpdateFailedError) as failed:
                await raw.execute_update(name, message)
            assert reason in failed.value.cause.message, name
        assert (await run.status()).state.value in ("calling_model", "calling_tool")  # still running
        report = await f.factory.kill(SwitchScope.TENANT, tenant, reason="runaway", by="maria.keller")
        with fails_with(RunStopped) as stopped:
            await run.result()
        await replay(run.handle)
    assert report.stopped == [run.workflow_id] and stopped.value.type == "RunStopped"


async def test_a_switch_lifted_without_proof_stays_on_and_a_signed_lift_counts(client, db_url, policies):
    model = ScriptedModel(Turns([Reply.text(DONE)]))
    tenant = f"u-{uuid.uuid4().hex[:6]}"
    async with factory_with(client, db_url, model, policies=policies()) as f:
        switch = set_switch(db_url, SwitchScope.TENANT, tenant, reason="incident", by="maria.keller")
        # An insider lifts it in the store, with no proof of who did: the worker still refuses runs.
        from sqlalchemy import text
        from sqlmodel import Session

        from activities.db import engine_for

        with Session(engine_for(db_url)) as s:
            s.execute(text("UPDATE kill_switch SET lifted_at = CURRENT_TIMESTAMP, lifted_by = 'maria.keller' WHERE id = :i"), {"i": switch.id})
            s.commit()
        refused_run = await f.start(TICKET, tenant=tenant)
        with fails_with(RunStopped) as failed:
            await refused_run.result()
        assert failed.value.type == "RunStopped" and f"kill switch #{switch.id}" in str(failed.value)
        # Lifted by its operator, with a signature: runs start again.
        f.factory.db_url = db_url
        lifted = await f.factory.unkill(SwitchScope.TENANT, tenant, reason="fixed", by="maria.keller")
        ok = await f.start(TICKET, tenant=tenant)
        result = await ok.result()
    assert lifted and result.output["ticket_id"] == DONE["ticket_id"]
