"""The gateway over real HTTP: a start is idempotent on its run key, a run is read until it ends
(its result decoded, or its failure typed), and every way a start or a read can be refused
answers with the status and one sentence naming the problem."""

from __future__ import annotations

import uuid

from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.switches import set_switch
from aifactory.client import FactoryClient
from contracts.control import SwitchScope
from tests.support.gateway import STARTS, gateway, problems_named
from tests.support.harness import AGENTS, factory_with, replay
from tests.test_client import count_runs

GOOD = {"ticket_text": "Printer on floor 2 jams on every page.", "requester_email": "jonas.berg@example.com"}
FINAL = {"category": "hardware", "priority": "P3", "ticket_id": "INC0000001", "summary": "Printer jams"}
START = STARTS.format(agent="it-triage")


async def test_the_same_key_twice_starts_one_run_which_is_read_until_completed(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL, delay=0.3)]))
    async with factory_with(client, db_url, model) as f, gateway(f.factory, db_url) as gw:
        version = f.release().spec.version
        erp = gw.key(tenants=["acme"], agents=["it-triage"])
        run_key = f"T-{uuid.uuid4().hex[:8]}"
        body = {"tenant": "acme", "input": GOOD, "version": version, "requester": "jonas.berg", "labels": {"source": "erp"}}
        first = await gw.http.post(START, json=body, headers={**erp, "Idempotency-Key": run_key})
        second = await gw.http.post(START, json={**body, "run_key": run_key}, headers=erp)  # while it runs
        assert (first.status_code, second.status_code) == (201, 200), (first.text, second.text)
        wid = f"agent/it-triage/acme/{run_key}"
        assert first.json() == {
            "run_id": wid, "started": True, "agent": "it-triage", "tenant": "acme", "run_key": run_key,
            "links": {"run": f"/v1/runs/{wid}", "decisions": f"/v1/runs/{wid}/decisions"},
        }  # fmt: skip
        assert first.headers["location"] == f"/v1/runs/{wid}" and "location" not in second.headers
        assert second.json()["started"] is False and second.json()["run_id"] == wid
        view = await gw.until(wid, erp)
        third = await gw.http.post(START, json=body, headers={**erp, "Idempotency-Key": run_key})  # after it closed
        assert third.status_code == 200 and third.json()["started"] is False
        assert await count_runs(client, wid) == 1
        await replay(f.factory.handle(wid).handle)
    assert view["status"] == "completed" and view["failure"] is None and view["progress"] is None
    result = view["result"]
    assert result["output"] == FINAL and result["tenant"] == "acme" and result["run_key"] == run_key
    assert result["agent_version"].startswith(version + "+prompt.")
    assert len(model.requests) == 1


async def test_a_failed_run_reads_as_its_typed_failure(client, db_url):
    model = ScriptedModel(Turns([Reply.error(400, "the model refuses this request")]))
    async with factory_with(client, db_url, model) as f, gateway(f.factory, db_url) as gw:
        erp = gw.key()
        body = {"tenant": "acme", "run_key": uuid.uuid4().hex[:10], "input": GOOD, "version": f.release().spec.version}
        started = await gw.http.post(START, json=body, headers=erp)
        assert started.status_code == 201, started.text
        view = await gw.until(started.json()["run_id"], erp)
    assert view["status"] == "failed" and view["result"] is None
    assert view["failure"]["type"] == "ModelCallRejected" and "400" in view["failure"]["message"]


async def test_a_start_is_refused_with_the_status_and_the_problem_named(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f, gateway(f.factory, db_url) as gw:
        version = f.release().spec.version
        erp, globex, anything = gw.key(), gw.key(tenants=["globex"], agents=["*"]), gw.key(tenants=["*"], agents=["*"])
        body = {"tenant": "acme", "run_key": uuid.uuid4().hex[:10], "input": GOOD, "version": version}
        post = lambda json=body, headers=erp, agent="it-triage", **kw: gw.http.post(STARTS.format(agent=agent), json=json, headers=headers, **kw)  # noqa: E731

        answer = await post(headers={})
        problems_named(answer, 401, "needs a bearer token")
        assert answer.headers["www-authenticate"].startswith("Bearer")
        problems_named(await post(headers={"Authorization": "Basic dXNlcjpwdw=="}), 401, "'Bearer <API key or token>'")
        problems_named(await post(headers={"Authorization": "Bearer aif_000000000000_" + "0" * 48}), 401, "not one this gateway issued")
        problems_named(await post(headers=globex), 403, "does not cover tenant 'acme'")
        problems_named(await post(agent="helpdesk-bot", headers=gw.key(agents=["it-triage"])), 403, "does not cover agent 'helpdesk-bot'")
        problems_named(await post(agent="payroll", headers=anything), 404, "no such agent")
        problems_named(await post(agent="Payroll!"), 400, "path parameter 'agent'")

        broken = await gw.http.post(START, content=b'{"tenant": "acme", "input": {', headers={**erp, "Content-Type": "application/json"})
        assert problems_named(broken, 400, "not valid JSON")["type"] == "InvalidRequest"
        problems_named(await post(json={"tenant": "acme", "run_key": "k1"}), 400, "field 'input' is required")
        problems_named(await post(json={**body, "input": ["a", "list"]}), 400, "field 'input'")
        problems_named(await post(json={**body, "runKey": "k2"}), 400, "field 'runKey' is not allowed")
        problems_named(await post(json={**body, "tenant": "ACME Corp"}), 400, "field 'tenant': must be 1-63 lowercase")
        problems_named(await post(json=[body]), 400, "must be a JSON object")
        problems_named(await post(json={**body, "run_key": None}), 400, "field 'run_key' is required", "Idempotency-Key")
        problems_named(await post(headers={**erp, "Idempotency-Key": "other-key"}), 400, "'run_key' and header 'Idempotency-Key' differ")
        problems_named(await post(json={**body, "run_key": None}, headers={**erp, "Idempotency-Key": "no spaces"}), 400, "header 'Idempotency-Key'")
        rejected = problems_named(await post(json={**body, "input": {"ticket_text": "Printer jams"}}), 400, "field 'requester_email' is required")
        assert rejected["type"] == "RunInputRejected" and rejected["problems"] == ["field 'requester_email' is required"]
        problems_named(await post(json={**body, "version": "9.9.9"}), 404, "no such agent (or release of it)")
        person = gw.key(person="tom.becker")
        problems_named(await post(json={**body, "requester": "ana.silva"}, headers=person), 403, "acts for tom.becker")
        assert await count_runs(client, f"agent/it-triage/acme/{body['run_key']}") == 0
    assert model.requests == []


async def test_a_start_under_a_kill_switch_is_409_naming_it(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        # A factory that sees the store, as `aifactory gateway` has it: the switch refuses the start at once.
        factory = FactoryClient(client, AGENTS, db_url=db_url, releases=f.releases)
        set_switch(db_url, SwitchScope.AGENT, "it-triage", reason="tickets misrouted since 10:40", by="maria.keller")
        async with gateway(factory, db_url) as gw:
            body = {"tenant": "acme", "run_key": uuid.uuid4().hex[:10], "input": GOOD, "version": f.release().spec.version}
            answer = await gw.http.post(START, json=body, headers=gw.key())
    refused = problems_named(answer, 409, "refused", "tickets misrouted since 10:40", "maria.keller")
    assert refused["type"] == "RunRefused" and model.requests == []


async def test_a_read_is_refused_with_the_status_and_the_problem_named(client, db_url):
    model = ScriptedModel(Turns([Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f, gateway(f.factory, db_url) as gw:
        erp = gw.key()
        body = {"tenant": "acme", "run_key": uuid.uuid4().hex[:10], "input": GOOD, "version": f.release().spec.version}
        wid = (await gw.http.post(START, json=body, headers=erp)).json()["run_id"]
        await gw.until(wid, erp)
        get = lambda path, headers=erp: gw.http.get(path, headers=headers)  # noqa: E731

        problems_named(await get(f"/v1/runs/{wid}", headers={}), 401, "needs a bearer token")
        problems_named(await get(f"/v1/runs/{wid}", headers=gw.key(tenants=["globex"], agents=["*"])), 403, "does not cover tenant 'acme'")
        problems_named(await get("/v1/runs/agent/it-triage/acme"), 400, "agent/<agent>/<tenant>/<run key>")
        problems_named(await get("/v1/runs/agent/it-triage/ACME/k 1"), 400, "run id's tenant", "run id's run key")
        everything = gw.key(tenants=["*"], agents=["*"])
        problems_named(await get("/v1/runs/agent/payroll/acme/T-1", headers=everything), 404, "no run agent/payroll/acme/T-1")
        problems_named(await get(f"/v1/runs/{wid}-nope"), 404, f"no run {wid}-nope")
        problems_named(await get("/v2/nothing"), 404, "no route /v2/nothing")
        problems_named(await gw.http.delete(f"/v1/runs/{wid}", headers=erp), 405, "does not take DELETE")
