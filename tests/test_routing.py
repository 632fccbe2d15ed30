"""Cost-aware routing: a run escalates to the next model tier when its answer fails validation,
and drops back to the cheapest tier once its cost envelope runs low."""

from __future__ import annotations

import uuid

from activities.model.scripted import Reply, ScriptedModel, Turns
from contracts.agent import Breakers, Envelope, ModelSettings, Routing
from tests.support.harness import factory_with, replay

TICKET = {"ticket_text": "My laptop screen is flickering badly.", "requester_email": "ana.silva@example.com"}
FINAL = {"category": "hardware", "priority": "P3", "ticket_id": None, "summary": "Screen flickers"}
SMALL = ModelSettings(name="gpt-4o-mini", max_tokens=400)
LARGE = ModelSettings(name="gpt-4.1", max_tokens=50)


async def test_invalid_answer_is_repaired_on_the_next_tier(client, db_url):
    model = ScriptedModel(Turns([Reply.text({"category": "furniture"}), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, required_tools=[], model=SMALL, model_tiers=[LARGE])
        result = await run.result()
        await replay(run.handle)
    assert [r.body["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4.1"]
    assert result.output == FINAL


async def test_no_escalation_when_the_agent_says_so(client, db_url):
    model = ScriptedModel(Turns([Reply.text({"category": "furniture"}), Reply.text(FINAL)]))
    async with factory_with(client, db_url, model) as f:
        run = await f.start(TICKET, required_tools=[], model=SMALL, model_tiers=[LARGE], routing=Routing(escalate_on_invalid_output=False))
        await run.result()
    assert [r.body["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4o-mini"]


async def test_a_low_envelope_sends_the_run_back_to_the_cheapest_tier(client, db_url):
    # Call 1 (small) is invalid: escalate. Call 2 (large, $0.002 of prompt) spends past half of the
    # $0.004 envelope: call 3 goes back to the small model.
    model = ScriptedModel(
        Turns([
            Reply.text({"category": "furniture"}, prompt_tokens=1000),
            Reply.tool("lookup_requester", {"email": "ana.silva@example.com"}, prompt_tokens=1000),
            Reply.text(FINAL, prompt_tokens=1000),
        ])
    )  # fmt: skip
    async with factory_with(client, db_url, model) as f:
        run = await f.start(
            TICKET, tenant=f"r-{uuid.uuid4().hex[:6]}", required_tools=[], model=SMALL, model_tiers=[LARGE],
            routing=Routing(economise_at=0.5), envelope=Envelope(limit_usd=0.004), breakers=Breakers(max_context_tokens=1200),
        )  # fmt: skip
        result = await run.result()
        await replay(run.handle)
    assert [r.body["model"] for r in model.requests] == ["gpt-4o-mini", "gpt-4.1", "gpt-4o-mini"]
    assert result.output == FINAL and result.usage.cost_usd <= 0.004
