"""The Block Kit messages the notifier posts keep to the shape Slack documents (blocks, elements,
composition objects and their limits), for ordinary and for oversized content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from activities.slack import APPROVE, REJECT, alert_message, approval_message, outcome_message, run_link
from contracts.notify import Notification

SCHEMA = json.loads((Path(__file__).parent / "support" / "block_kit.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
LINK = run_link("http://localhost:8233", "default", "agent/it-triage/acme/T-1001")


def problems(message: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in VALIDATOR.iter_errors(message)]


def request(kind: str = "approval_requested", **details) -> Notification:
    return Notification(
        key=f"agent/it-triage/acme/T-1001/r1/{kind}", kind=kind, run_id="agent/it-triage/acme/T-1001", agent="it-triage", tenant="acme",
        group="it-desk-leads", recipients=["maria.keller", "tom.becker"], subject="Approval needed: create_ticket for it-triage",
        details={"request": "r1", "tool": "create_ticket", "arguments": "{priority: P1}", "rule": "p1-needs-a-lead",
                 "reason": "P1 pages on-call", "deadline": "2026-11-30T10:15:00+00:00", "tier": 1, **details},
    )  # fmt: skip


def test_the_approval_request_is_valid_block_kit_with_approve_and_reject():
    message = approval_message(request(), LINK, buttons=True)
    assert problems(message) == []
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e.get("action_id") for e in actions["elements"]] == [APPROVE, REJECT, "aifactory_open_run"]
    assert json.loads(actions["elements"][0]["value"]) == {"run": "agent/it-triage/acme/T-1001", "request": "r1"}
    assert actions["elements"][2]["url"] == LINK == "http://localhost:8233/namespaces/default/workflows/agent%2Fit-triage%2Facme%2FT-1001"
    shown = json.dumps(message["blocks"])
    assert "2026-11-30T10:15:00" in shown and "P1 pages on-call" in shown and "it-desk-leads" in shown


@pytest.mark.parametrize("kind", ["approval_decided", "approval_expired", "approval_escalated_tier2"])
def test_outcomes_and_alerts_are_valid_block_kit_without_buttons(kind):
    n = request(kind, verdict="approved", by="maria.keller", note="confirmed")
    for message in (outcome_message(n, LINK), alert_message(n.model_copy(update={"kind": "envelope_alert"}), LINK)):
        assert problems(message) == [] and not any(b["type"] == "actions" for b in message["blocks"])


def test_oversized_content_is_clipped_to_slacks_limits():
    huge = request(arguments="x" * 10_000, reason="y" * 5_000).model_copy(update={"subject": "S" * 500})
    for message in (approval_message(huge, LINK, buttons=True), outcome_message(huge, LINK), alert_message(huge, LINK)):
        assert problems(message) == []


def test_the_schema_refuses_what_slack_refuses():
    message = approval_message(request(), LINK, buttons=True)
    long_button = json.loads(json.dumps(message))
    long_button["blocks"][-1]["elements"][0]["text"]["text"] = "A" * 76
    emoji_on_mrkdwn = json.loads(json.dumps(message))
    emoji_on_mrkdwn["blocks"][1]["text"]["emoji"] = True
    unknown = {**message, "blocks": [*message["blocks"], {"type": "carousel"}]}
    too_many = {**message, "blocks": [message["blocks"][1]] * 51}
    for bad in (long_button, emoji_on_mrkdwn, unknown, too_many):
        assert problems(bad), bad
