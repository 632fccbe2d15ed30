"""Approvals through the gateway, over real HTTP: a P1 ticket parks under the shipped `it-desk`
policy, the run reads as waiting, the listing shows it to a desk lead's key and to nobody
outside its tenant, the lead decides as the key's person, and every refusal is named."""

from __future__ import annotations

import asyncio
import uuid

from activities.model.scripted import Reply, ScriptedModel, Turns
from tests.support.gateway import STARTS, Gateway, gateway, problems_named
from tests.support.harness import factory_with, replay
from tests.test_approvals_devserver import DONE, P1, TICKET, parked, tickets

START = STARTS.format(agent="it-triage")


def p1_model() -> ScriptedModel:
    return ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))


async def listed(gw: Gateway, headers: dict[str, str], run_id: str, query: str = "") -> list[dict]:
    """GET /v1/approvals until the run shows (visibility follows the run's own state closely, not at once)."""
    for _ in range(600):
        answer = await gw.http.get(f"/v1/approvals{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        approvals = answer.json()["approvals"]
        if any(a["run_id"] == run_id for a in approvals):
            return approvals
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never listed: {approvals}")


async def test_a_p1_run_is_listed_to_its_tenant_and_approved_by_a_lead_as_the_keys_person(client, db_url):
    tenant = f"acme-{uuid.uuid4().hex[:6]}"  # a tenant of its own: the listing sees only this test's runs
    async with factory_with(client, db_url, p1_model()) as f, gateway(f.factory, db_url) as gw:
        erp = gw.key(tenants=[tenant], agents=["it-triage"])
        lead = gw.key(tenants=[tenant], agents=["*"], person="maria.keller")
        globex = gw.key(tenants=["globex"], agents=["*"], person="omar.haddad")
        body = {"tenant": tenant, "run_key": "T-2001", "input": TICKET, "version": f.release().spec.version, "requester": "ana.silva"}
        started = await gw.http.post(START, json=body, headers=erp)
        assert started.status_code == 201, started.text
        wid = started.json()["run_id"]
        await parked(f.factory.handle(wid))

        waiting = (await gw.http.get(f"/v1/runs/{wid}", headers=erp)).json()
        approvals = await listed(gw, lead, wid)
        in_group = await listed(gw, lead, wid, "?group=it-desk-leads&agent=it-triage&tenant=" + tenant)
        managers = (await gw.http.get("/v1/approvals?group=it-managers", headers=lead)).json()["approvals"]
        not_theirs = (await gw.http.get("/v1/approvals", headers=globex)).json()["approvals"]

        get = lambda query, headers=lead: gw.http.get(f"/v1/approvals{query}", headers=headers)  # noqa: E731
        problems_named(await get("", headers={}), 401, "needs a bearer token")
        problems_named(await get(f"?tenant={tenant}", headers=globex), 403, f"does not cover tenant '{tenant}'")
        problems_named(await get("?agent=payroll"), 404, "no agent 'payroll'")
        problems_named(await get("?limit=none"), 400, "query parameter 'limit'")
        problems_named(await get("?limit=0"), 400, "query parameter 'limit'")

        decide = lambda json, headers=lead, run=wid: gw.http.post(f"/v1/runs/{run}/decisions", json=json, headers=headers)  # noqa: E731
        problems_named(await decide({"verdict": "approve"}, headers={}), 401, "needs a bearer token")
        problems_named(await decide({"verdict": "approve"}, headers=globex), 403, f"does not cover tenant '{tenant}'")
        problems_named(await decide({"verdict": "approve"}, headers=erp), 403, "acts for no person")
        broken = await gw.http.post(f"/v1/runs/{wid}/decisions", content=b'{"verdict": approve}', headers={**lead, "Content-Type": "application/json"})
        problems_named(broken, 400, "not valid JSON")
        problems_named(await decide({"note": "ok"}), 400, "field 'verdict' is required")
        problems_named(await decide({"verdict": "maybe"}), 400, "field 'verdict'")
        problems_named(await decide({"verdict": "reject"}), 400, "field 'note': a rejection needs a note")
        problems_named(await decide({"verdict": "approve", "request_id": "first"}), 400, "field 'request_id'")
        problems_named(await decide({"verdict": "approve"}, run=f"agent/payroll/{tenant}/T-2001"), 404, f"no run agent/payroll/{tenant}/T-2001")

        request_id = approvals[0]["request"]["id"]
        decided = await decide({"verdict": "approve", "note": "confirmed outage", "request_id": request_id})
        again = await decide({"verdict": "approve", "note": "confirmed outage", "request_id": request_id})
        done = await gw.until(wid, erp)
        late = await decide({"verdict": "reject", "note": "too late"})
        await replay(f.factory.handle(wid).handle)

    assert waiting["status"] == "running" and waiting["progress"]["state"] == "awaiting_approval"
    assert waiting["progress"]["approval"]["tool"] == "create_ticket" and waiting["result"] is None
    mine = [a for a in approvals if a["run_id"] == wid]
    assert len(mine) == 1 and all(a["tenant"] == tenant for a in approvals)
    request = mine[0]["request"]
    assert (request["tool"], request["rule_id"], request["status"]) == ("create_ticket", "p1-needs-a-lead", "pending")
    assert request["approval"]["chain"][request["tier"]]["group"] == "it-desk-leads" and request["requester"] == "ana.silva"
    assert mine[0]["links"] == {"run": f"/v1/runs/{wid}", "decisions": f"/v1/runs/{wid}/decisions"}
    assert [a["run_id"] for a in in_group if a["run_id"] == wid] == [wid]
    assert wid not in [a["run_id"] for a in managers] and wid not in [a["run_id"] for a in not_theirs]
    assert decided.status_code == 200, decided.text
    assert decided.json() == {
        "run_id": wid, "person": "maria.keller", "accepted": True, "request_id": request_id, "status": "approved",
        "reason": "approved by maria.keller", "duplicate": False,
    }  # fmt: skip
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert done["status"] == "completed" and done["result"]["output"] == DONE
    assert done["result"]["approvals"][0]["decided_by"] == "maria.keller" and len(tickets(db_url)) == 1
    assert problems_named(late, 409, "not running")["type"] == "ApprovalRefused"


async def test_the_requester_may_not_approve_a_run_started_with_their_own_key(client, db_url):
    async with factory_with(client, db_url, p1_model()) as f, gateway(f.factory, db_url) as gw:
        tom = gw.key(tenants=["acme"], agents=["it-triage"], person="tom.becker")  # a desk lead for acme
        lead = gw.key(tenants=["acme"], agents=["it-triage"], person="maria.keller")
        body = {"tenant": "acme", "run_key": uuid.uuid4().hex[:10], "input": TICKET, "version": f.release().spec.version}
        wid = (await gw.http.post(START, json=body, headers=tom)).json()["run_id"]
        await parked(f.factory.handle(wid))
        own = await gw.http.post(f"/v1/runs/{wid}/decisions", json={"verdict": "approve"}, headers=tom)
        rejected = await gw.http.post(f"/v1/runs/{wid}/decisions", json={"verdict": "reject", "note": "planned maintenance"}, headers=lead)
        done = await gw.until(wid, lead)
    refused = problems_named(own, 409, "tom.becker requested this run and may not decide")
    assert refused["type"] == "ApprovalRefused"
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert done["status"] == "completed" and done["result"]["approvals"][0]["requester"] == "tom.becker"
    assert tickets(db_url) == []
