"""Slack approvals, end to end over real HTTP: the run posts a Block Kit message with buttons to the
approver group's channel (a Slack Web API double on loopback), a button press is posted to
`aifactory slack serve`'s app signed as Slack signs it, and the run resumes decided by the directory
person the Slack user maps to, signed by the endpoint's service key with the Slack user as evidence.
Forged, stale, replayed and unknown-user requests are refused and change nothing. Owner alerts
(breaker trips, kill switches) reach the owner's Slack channel and escalation webhook."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import yaml

from activities.audit.export import AuditExporter
from activities.audit.query import run_story
from activities.keys import KeyRing
from activities.model.scripted import Reply, ScriptedModel, Turns
from activities.notify import read_outbox
from activities.slack import APPROVE, REJECT, SlackSettings, read_slack_messages
from aifactory import RepeatedToolCall, RunStopped
from tests.support.failures import fails_with
from aifactory.slack.app import SlackEndpoint, create_app
from contracts.agent import Breakers, Owner
from contracts.control import SwitchScope
from policies.loader import load_directory
from tests.support.gateway import serve
from aifactory.signing import Signer
from tests.support.harness import directory_keys, factory_with, people_keys, replay, write_policy
from tests.support.slack import SIGNING_SECRET, TOKEN, FakeSlack, signed_request
from tests.support.webhook import WebhookReceiver
from tests.test_approvals_devserver import DONE, P1, RULES, TICKET, parked, tickets

SLACK_IDS = {"maria.keller": "U0MARIA01", "tom.becker": "U0TOMB001", "sara.lind": "U0SARA001"}
CHANNEL = "#it-desk-leads"


def slack_directory(root) -> None:
    """The test policy's directory, with Slack user ids and the leads' channel."""
    path = root / "directory.yaml"
    data = yaml.safe_load(path.read_text())
    for person in data["people"]:
        if person["id"] in SLACK_IDS:
            person["slack_user_id"] = SLACK_IDS[person["id"]]
    data["groups"] = [{"id": "it-desk-leads", "slack_channel": CHANNEL}]
    path.write_text(yaml.safe_dump(data))


async def message_in(fake: FakeSlack, channel: str, count: int = 1):
    for _ in range(300):
        if len(fake.in_channel(channel)) >= count:
            return fake.in_channel(channel)[count - 1]
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing posted to {channel}: {fake.messages}")


async def post(http: httpx.AsyncClient, url: str, body: bytes, headers: dict) -> httpx.Response:
    return await http.post(f"{url}/slack/interactions", content=body, headers=headers)


async def test_a_button_press_in_slack_decides_as_the_mapped_person_and_forgeries_change_nothing(client, db_url, tmp_path):
    root = write_policy(tmp_path / "pol", "chain", RULES, [("it-desk-leads", 120), ("it-managers", 120)])
    slack_directory(root)
    fake = FakeSlack()
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text(DONE)]))
    with fake.serve() as api_url:
        settings = SlackSettings(token=TOKEN, api_url=api_url, ui_url="http://temporal-ui.test:8233")
        async with factory_with(client, db_url, model, policy_root=root, slack=settings) as f:
            f.factory.signer = Signer([people_keys()["aifactory-slack"]], service="aifactory-slack")  # its own key only
            endpoint = SlackEndpoint(f.factory, lambda: load_directory(root / "directory.yaml", directory_keys()), SIGNING_SECRET, db_url, fake.url)
            run = await f.start(TICKET, requester="tom.becker", policy="chain")
            await parked(run)
            message = await message_in(fake, CHANNEL)
            # The message asks: summary, deadline, a link to the run, Approve and Reject for this request.
            request = (await run.status()).approval
            assert {b["action_id"] for b in message.buttons()} == {APPROVE, REJECT}
            assert request.id in message.buttons()[0]["value"] and run.workflow_id in message.buttons()[0]["value"]
            text = str(message.body["blocks"])
            assert "deadline" in text and f"/workflows/{run.workflow_id.replace('/', '%2F')}" in text
            async with serve(create_app(endpoint)) as url, httpx.AsyncClient(timeout=30) as http:
                press = fake.press(message, APPROVE, SLACK_IDS["maria.keller"])
                forged = await post(http, url, *signed_request(press, secret="not-the-signing-secret"))
                stale = await post(http, url, *signed_request(press, timestamp=int(time.time()) - 6 * 60))
                stranger = await post(http, url, *signed_request(fake.press(message, APPROVE, "U0NOBODY9")))
                own = await post(http, url, *signed_request(fake.press(message, APPROVE, SLACK_IDS["tom.becker"])))
                # None of them moved the run.
                assert (await run.status()).state.value == "awaiting_approval" and tickets(db_url) == []
                body, headers = signed_request(press)
                accepted = await post(http, url, body, headers)
                replayed = await post(http, url, body, headers)
                result = await run.result()
            await replay(run.handle)
            store = f"sqlite:///{tmp_path / 'audit.db'}"
            await AuditExporter(client, store, KeyRing.generate("a1"), witness_queue=None).export(workflow_id=run.workflow_id)
    assert forged.status_code == 401 and "signature" in forged.json()["error"]
    assert stale.status_code == 401 and "stale" in stale.json()["error"]
    assert stranger.status_code == 403 and "U0NOBODY9" in stranger.json()["error"]
    assert own.status_code == 200 and own.json()["ok"] is False and "requested" in own.json()["refused"]
    assert accepted.status_code == 200 and accepted.json() == {"ok": True, "person": "maria.keller", "request": request.id}
    assert replayed.status_code == 409 and "replay" in replayed.json()["error"]
    assert result.approvals[0].decided_by == "maria.keller" and result.output == DONE and len(tickets(db_url)) == 1
    # The audit record names the directory person, the endpoint that signed for her and her Slack user id.
    _, story = run_story(store, run.workflow_id)
    (decided,) = [r for r in story if r["kind"] == "approval_decided"]
    (taken,) = [r for r in story if r["kind"] == "approval_attempt" and r["detail"].startswith("update accepted")]
    assert decided["person"] == taken["person"] == "maria.keller" and taken["signer"] == "aifactory-slack"
    assert f"for the person, on slack:{SLACK_IDS['maria.keller']}" in taken["detail"]
    # The message was rewritten in place: the outcome, no buttons left to press.
    assert message.updates and message.buttons() == [] and "Approved* by maria.keller" in str(message.current["blocks"])
    assert [m.kind for m in read_slack_messages(db_url, run.workflow_id)] == ["approval_requested", "approval_decided"]
    # The people who pressed were told, privately, what happened.
    said = [r["text"] for r in fake.responses]
    assert any("not in the approver directory" in s for s in said) and any(s.startswith("Recorded: approve by Maria Keller") for s in said)
    assert all(r["response_type"] == "ephemeral" for r in fake.responses)
    assert fake.refused_auth == 0


async def test_an_escalation_rewrites_the_first_tiers_message_and_asks_the_next(client, db_url, tmp_path):
    root = write_policy(tmp_path / "pol", "chain", RULES, [("it-desk-leads", 1), ("it-managers", 1)])
    slack_directory(root)
    data = yaml.safe_load((root / "directory.yaml").read_text())
    data["groups"].append({"id": "it-managers", "slack_channel": "C0MANAGERS"})
    (root / "directory.yaml").write_text(yaml.safe_dump(data))
    fake = FakeSlack()
    model = ScriptedModel(Turns([Reply.tool("create_ticket", P1), Reply.text({**DONE, "ticket_id": None})]))
    with fake.serve() as api_url:
        settings = SlackSettings(token=TOKEN, api_url=api_url)
        async with factory_with(client, db_url, model, policy_root=root, slack=settings) as f:
            run = await f.start(TICKET, requester="tom.becker", policy="chain")
            result = await run.result()
    first, second = fake.in_channel(CHANNEL)[0], fake.in_channel("C0MANAGERS")[0]
    assert result.approvals[0].status.value == "expired"
    assert "Escalated* to it-managers" in str(first.updates[0]["blocks"]) and "Expired*" in str(first.current["blocks"])
    assert second.updates and "Expired*" in str(second.current["blocks"]) and second.buttons() == []
    assert first.buttons() == [] and len(fake.messages) == 2  # rewritten in place: nothing else posted


async def test_breaker_trips_and_kill_switches_reach_the_owner_and_the_escalation_contact(client, db_url):
    fake, hook = FakeSlack(), WebhookReceiver()
    same = Reply.tool("lookup_requester", {"email": "ana.silva@example.com"})
    model = ScriptedModel(Turns([same] * 3 + [Reply.tool("lookup_requester", {"email": f"u{i}@example.com"}, delay=0.3) for i in range(60)]))
    with fake.serve() as api_url, hook.serve() as hook_url:
        async with factory_with(client, db_url, model, slack=SlackSettings(token=TOKEN, api_url=api_url)) as f:
            f.factory.db_url = db_url
            owned = dict(owner=Owner(name="Maria Keller", contact="#triage-owners"), escalation_contact=hook_url)
            tripped = await f.start(TICKET, step_limit=20, breakers=Breakers(max_repeated_calls=2), **owned)
            with fails_with(RepeatedToolCall) as failed:
                await tripped.result()
            tenant = "kill-" + tripped.workflow_id[-6:]
            # The script is per run: these repeat the first lookup three times too, under a looser breaker.
            runs = [await f.start(TICKET, tenant=tenant, step_limit=60, breakers=Breakers(max_repeated_calls=5), **owned) for _ in range(2)]
            for _ in range(300):  # both admitted and going
                if all([(await r.status()).usage.model_calls >= 1 for r in runs]):
                    break
                await asyncio.sleep(0.1)
            report = await f.factory.kill(SwitchScope.TENANT, tenant, reason="runaway lookups", by="maria.keller")
            for run in runs:
                with fails_with(RunStopped, match="kill switch"):
                    await run.result()
            await replay(runs[0].handle)
    assert failed.value.type == "RepeatedToolCall" and len(report.stopped) == 2
    kinds = [m.kind for m in read_outbox(db_url) if m.kind in ("breaker_tripped", "kill_switch")]
    assert kinds == ["breaker_tripped", "kill_switch"]  # one kill-switch alert for the switch, not one per run
    posted = fake.in_channel("#triage-owners")
    assert [m.body["text"].split(":")[1].strip().split(" ")[0] for m in posted] == ["circuit", "kill"]
    assert "RepeatedToolCall" in posted[0].body["text"] and "Maria Keller" in str(posted[0].body["blocks"])
    hooked = [body["text"] for _, body in hook.posts]
    assert len(hooked) == 2 and "circuit breaker tripped" in hooked[0] and "kill switch" in hooked[1]
