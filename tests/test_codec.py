"""Payloads are encrypted at rest in history: canaries planted in inputs, tool results and
failures are nowhere in a raw history, and every history decodes and replays with the key
ring, also across a key rotation. The codec server decodes for the UI, and only that."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.worker import Replayer

from activities.keys import KeyRing, KeyRingError
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.tools.it_desk_activities import seed_directory
from aifactory import ModelCallRejected
from tests.support.failures import fails_with
from contracts.run import AgentRunResult
from tests.support.harness import encrypted_client, factory_with, replay
from tests.test_approvals_devserver import parked
from workers.codec import EncryptionCodec, data_converter, key_ids
from workers.codec_server import CodecServer, CodecServerConfig
from workers.worker import WORKFLOWS, sandbox_runner

CARD = "4111 1111 1111 1111"
SECRET = "sk-live-canary-7f3a9"
NAME = "Quillon Canarywood"
CANARIES = (CARD, SECRET, NAME, "canary.person@example.com")
EMAIL = "canary.person@example.com"
TICKET = {"ticket_text": f"Card {CARD} was charged twice, my token {SECRET} leaked.", "requester_email": EMAIL}


def script(priority: str) -> list[Reply]:
    args = {"requester_email": EMAIL, "category": "access", "priority": priority, "summary": f"Leaked token {SECRET}"}
    answer = {"category": "access", "priority": priority, "ticket_id": "INC0000001", "summary": f"card {CARD}"}
    return [Reply.tool("lookup_requester", {"email": EMAIL}), Reply.tool("create_ticket", args), Reply.text(answer)]


async def raw_bytes(handle) -> bytes:
    """Everything the server stores for the run: history, memo and search attributes, unencoded."""
    history = await handle.fetch_history()
    description = await handle.describe()
    return b"".join(e.SerializeToString() for e in history.events) + description.raw_description.SerializeToString()


def found(blob: bytes) -> list[str]:
    return [c for c in CANARIES if c.encode() in blob]


async def replay_with(ring: KeyRing, handle) -> None:
    history = await handle.fetch_history()
    await Replayer(workflows=WORKFLOWS, data_converter=data_converter(ring), workflow_runner=sandbox_runner()).replay_workflow(history)


async def test_canaries_are_nowhere_in_raw_history_and_rotated_keys_still_decode(client, db_url):
    seed_directory(db_url, [{"email": EMAIL, "name": NAME, "department": "Treasury", "location": "Basel", "vip": False}])
    ring1 = KeyRing.generate("k1")
    ring2 = ring1.rotated("k2")
    enc1, enc2 = encrypted_client(client, ring1), encrypted_client(client, ring2)

    # Control: without the codec the same run leaves every canary in history (the check can fail).
    async with factory_with(client, db_url, ScriptedModel(Turns(script("P3")))) as f:
        plain = await f.start(TICKET)
        await plain.result()
        assert set(found(await raw_bytes(plain.handle))) == set(CANARIES)

    # A completed run, encrypted.
    async with factory_with(enc1, db_url, ScriptedModel(Turns(script("P3")))) as f:
        done = await f.start(TICKET)
        await done.result()
    # A run that fails with the endpoint's error message (holding a canary) in its failure.
    async with factory_with(enc1, db_url, ScriptedModel(Turns([Reply.error(400, f"bad request: {SECRET} {CARD}")]))) as f:
        failed = await f.start(TICKET)
        with fails_with(ModelCallRejected) as failure:
            await failed.result()
    assert SECRET in str(failure.value)  # the client with the key reads the real message
    # A run that parks on an approval under k1, and is approved and finished after rotating to k2.
    model = ScriptedModel(Turns(script("P1")))
    async with factory_with(enc1, db_url, model) as f:
        rotated = await f.start(TICKET, requester="jonas.berg")
        await parked(rotated)
    async with factory_with(enc2, db_url, model, task_queue=f.task_queue) as f2:
        await f2.factory.decide(rotated.workflow_id, "tom.becker", "approve", note=f"ok, card {CARD} confirmed")
        result = await enc2.get_workflow_handle(rotated.workflow_id, result_type=AgentRunResult).result()
    assert result.approvals[0].decided_by == "tom.becker"

    for run in (done, failed, rotated):
        handle = client.get_workflow_handle(run.workflow_id)
        assert found(await raw_bytes(handle)) == [], run.workflow_id
        await replay_with(ring2, handle)
    history = await client.get_workflow_handle(rotated.workflow_id).fetch_history()
    payloads = [p for e in history.events for p in _payloads(e)]
    assert key_ids(payloads) == {"k1", "k2"}
    old = [p for p in payloads if key_ids([p]) == {"k1"}]
    with pytest.raises(KeyRingError, match="encrypted with key 'k1', which is not in the key ring"):
        await data_converter(ring2.without("k1")).decode(old)
    with pytest.raises(Exception):  # nor does the run replay without it
        await replay_with(ring2.without("k1"), client.get_workflow_handle(rotated.workflow_id))


def _payloads(event):
    a = event.activity_task_scheduled_event_attributes
    yield from a.input.payloads
    yield from event.activity_task_completed_event_attributes.result.payloads
    yield from event.workflow_execution_started_event_attributes.input.payloads
    yield from event.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads


async def test_codec_server_decodes_for_the_ui_and_nothing_else(client, db_url):
    ring = KeyRing.generate("k1")
    codec = EncryptionCodec(ring)
    original = Payloads(payloads=[pl for pl in await data_converter(None).encode([{"ticket": CARD}])])
    sealed = Payloads(payloads=await codec.encode(original.payloads))
    body = json_format.MessageToJson(sealed)
    assert CARD not in body
    config = CodecServerConfig(codec, tokens=("t0ken",))
    with CodecServer(config) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            ok = await http.post("/t0ken/decode", content=body, headers={"Content-Type": "application/json", "X-Namespace": "default"})
            bearer = await http.post("/decode", content=body, headers={"Authorization": "Bearer t0ken"})
            anonymous = await http.post("/decode", content=body)
            wrong = await http.post("/nope/decode", content=body)
            encode = await http.post("/t0ken/encode", content=json_format.MessageToJson(original))
            garbage = await http.post("/t0ken/decode", content=b"not json")
            preflight = await http.options("/t0ken/decode", headers={"Origin": "http://localhost:8233", "Access-Control-Request-Method": "POST"})
            foreign = await http.options("/t0ken/decode", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert ok.status_code == 200 and bearer.status_code == 200
    decoded = json_format.ParseDict(ok.json(), Payloads())
    assert json.loads(decoded.payloads[0].data) == {"ticket": CARD}
    assert decoded == original
    assert (anonymous.status_code, wrong.status_code, encode.status_code, garbage.status_code) == (401, 401, 403, 400)
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"
    assert "x-namespace" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in foreign.headers
