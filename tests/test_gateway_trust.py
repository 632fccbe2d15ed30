"""What the gateway lets through to the factory, over real HTTP: a hostile tenant, agent, group
or run key is refused with 400 before any call to Temporal (every call is recorded by a client
interceptor on the real dev server), a revoked key stops at its next request, no body carries a
traceback or a path, and the OpenAPI document validates and describes what the gateway does."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from openapi_spec_validator import validate
from temporalio.client import Client, Interceptor, OutboundInterceptor

from aifactory.client import FactoryClient
from tests.support.gateway import STARTS, gateway, problems_named
from tests.support.harness import AGENTS, REPO
from tests.test_hostile_queries import HOSTILE

GOOD = {"ticket_text": "Printer on floor 2 jams on every page.", "requester_email": "jonas.berg@example.com"}


class Recorder(Interceptor):
    """Every call the gateway's client makes to Temporal, with its input."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Recording(next, self.calls)


class _Recording(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, calls: list[tuple[str, str]]) -> None:
        super().__init__(next)
        self.calls = calls

    def _note(self, name: str, input: Any) -> None:
        self.calls.append((name, repr(input)))

    async def start_workflow(self, input):
        self._note("start_workflow", input)
        return await super().start_workflow(input)

    def list_workflows(self, input):
        self._note("list_workflows", input)
        return super().list_workflows(input)

    async def count_workflows(self, input):
        self._note("count_workflows", input)
        return await super().count_workflows(input)

    async def describe_workflow(self, input):
        self._note("describe_workflow", input)
        return await super().describe_workflow(input)

    async def query_workflow(self, input):
        self._note("query_workflow", input)
        return await super().query_workflow(input)

    async def start_workflow_update(self, input):
        self._note("start_workflow_update", input)
        return await super().start_workflow_update(input)

    async def signal_workflow(self, input):
        self._note("signal_workflow", input)
        return await super().signal_workflow(input)


def recording_factory(client: Client) -> tuple[FactoryClient, Recorder]:
    """A factory client on the real server, as `aifactory gateway` has one (the agents folder), recording its calls."""
    recorder = Recorder()
    recording = Client(client.service_client, namespace=client.namespace, data_converter=client.data_converter, interceptors=[recorder])
    return FactoryClient(recording, AGENTS), recorder


async def test_hostile_names_are_refused_before_any_call_to_temporal(client, db_url):
    factory, recorder = recording_factory(client)
    own = f"t-{uuid.uuid4().hex[:8]}"  # the control lists a tenant no other test uses: one call, no run to query
    async with gateway(factory, db_url) as gw:
        anything = gw.key(tenants=["*"], agents=["*"], person="maria.keller")
        listed = await gw.http.get("/v1/approvals", params={"group": "it-desk-leads", "tenant": own}, headers=anything)
        recorded_before = list(recorder.calls)
        answers: dict[str, Any] = {}
        for hostile in HOSTILE:
            start = {"tenant": "acme", "run_key": "k", "input": GOOD}
            answers[f"start tenant {hostile!r}"] = await gw.http.post(STARTS.format(agent="it-triage"), json={**start, "tenant": hostile}, headers=anything)
            for name in ("tenant", "agent", "group"):
                answers[f"approvals {name} {hostile!r}"] = await gw.http.get("/v1/approvals", params={name: hostile}, headers=anything)
            if hostile.isascii() and hostile.isprintable():  # what an HTTP header can carry at all
                del start["run_key"]
                answers[f"Idempotency-Key {hostile!r}"] = await gw.http.post(STARTS.format(agent="it-triage"), json=start, headers={**anything, "Idempotency-Key": hostile})
            if hostile:  # an empty path segment is another route
                segment = quote(hostile, safe="")
                answers[f"start agent {hostile!r}"] = await gw.http.post(STARTS.format(agent=segment), json=start, headers=anything)
                answers[f"read tenant {hostile!r}"] = await gw.http.get(f"/v1/runs/agent/it-triage/{segment}/T-1", headers=anything)
                answers[f"read agent {hostile!r}"] = await gw.http.get(f"/v1/runs/agent/{segment}/acme/T-1", headers=anything)
                answers[f"decide tenant {hostile!r}"] = await gw.http.post(f"/v1/runs/agent/it-triage/{segment}/T-1/decisions", json={"verdict": "approve"}, headers=anything)
    assert listed.status_code == 200 and listed.json() == {"approvals": []}
    assert [name for name, _ in recorded_before] == ["list_workflows"] and own in recorded_before[0][1]
    for case, answer in answers.items():
        assert answer.status_code == 400, (case, answer.text)
        assert problems_named(answer, 400)["type"] == "InvalidRequest", case
    assert len(answers) > 60 and recorder.calls == recorded_before  # not one call more: nothing hostile reached Temporal


async def test_a_revoked_key_stops_working_at_its_next_request(client, db_url):
    factory, _ = recording_factory(client)
    async with gateway(factory, db_url) as gw:
        info, token = gw.keys.create("erp", tenants=["acme"], agents=["it-triage"])
        headers = {"Authorization": f"Bearer {token}"}
        before = await gw.http.get("/v1/approvals", headers=headers)
        gw.keys.revoke(info.key_id)
        after = await gw.http.get("/v1/approvals", headers=headers)
        forged = await gw.http.get("/v1/approvals", headers={"Authorization": f"Bearer {token[:-4]}0000"})
    assert before.status_code == 200, before.text
    problems_named(after, 401, f"API key {info.key_id} was revoked on")
    assert after.headers["www-authenticate"] == 'Bearer realm="aifactory", error="invalid_token"'
    problems_named(forged, 401, "not one this gateway issued")


class Faulty(FactoryClient):
    async def start_run(self, *args: Any, **kwargs: Any):
        raise RuntimeError(f"cannot open {REPO}/secret/state.db")


async def test_no_body_carries_a_traceback_or_a_path(client, db_url):
    async with gateway(Faulty(client, AGENTS), db_url) as gw:
        anything = gw.key(tenants=["*"], agents=["*"])
        fault = await gw.http.post(STARTS.format(agent="it-triage"), json={"tenant": "acme", "run_key": "k", "input": GOOD}, headers=anything)
    async with gateway(FactoryClient(client, AGENTS), db_url) as gw:
        anything = gw.key(tenants=["*"], agents=["*"])
        unknown = await gw.http.post(STARTS.format(agent="payroll"), json={"tenant": "acme", "run_key": "k", "input": GOOD}, headers=anything)
    body = problems_named(fault, 500, "the gateway failed on this request", "reference")
    assert body["type"] == "InternalError"
    problems_named(unknown, 404, "no such agent")
    for answer in (fault, unknown):
        assert str(REPO) not in answer.text and str(AGENTS) not in answer.text and "state.db" not in answer.text


async def test_the_openapi_document_validates_and_describes_the_gateway(client, db_url):
    async with gateway(FactoryClient(client, AGENTS), db_url) as gw:
        document = (await gw.http.get("/openapi.json")).json()
        health = await gw.http.get("/healthz")
        docs = await gw.http.get("/docs")
    validate(document)
    assert health.status_code == 200 and health.json() == {"status": "ok"} and docs.status_code == 200
    info = document["info"]
    assert info["title"] == "AI Factory gateway" and info["version"] and "that have no Temporal SDK" in " ".join(info["description"].split())
    operations = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert {
        ("/v1/agents/{agent}/runs", "post"), ("/v1/runs/{run_id}", "get"), ("/v1/approvals", "get"),
        ("/v1/runs/{run_id}/decisions", "post"), ("/healthz", "get"),
    } <= operations  # fmt: skip
    bearer = document["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer") and "aifactory gateway keys create" in bearer["description"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert "422" not in op["responses"], (path, method)  # the gateway answers 400, never FastAPI's 422
            if path.startswith("/v1/"):
                assert op["security"] == [{"bearer": []}] and {"400", "401", "403"} <= set(op["responses"]), (path, method)
                assert op["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    start = document["paths"]["/v1/agents/{agent}/runs"]["post"]
    assert {"200", "201", "404", "409"} <= set(start["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in start["parameters"])
    schemas = document["components"]["schemas"]
    assert set(schemas["StartRun"]["required"]) == {"tenant", "input"} and "HTTPValidationError" not in schemas
    assert schemas["StartRun"]["properties"]["run_key"]["description"].startswith("The run's business key")
