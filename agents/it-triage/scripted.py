"""it-triage's scripted rules: the offline stand-in for a language model, kept with the agent.

Found by convention (`agents/<name>/scripted.py`, see `aifactory.scripted_agents`): tests,
`aifactory eval --model scripted` and `aifactory demo --model scripted` serve `respond` over
the OpenAI chat protocol, so the whole path (workflow, model activity over HTTP, tools, SQL)
runs without a model. `respond` gets the request body and returns the next `Reply`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from activities.model.scripted import Reply

RULES: list[tuple[str, tuple[str, ...]]] = [
    ("security", ("phishing", "malware", "virus", "stolen", "suspicious", "hacked", "ransom")),
    ("access", ("locked out", "password", "login", "log in", "mfa", "permission", "access")),
    ("network", ("wi-fi", "wifi", "network", "internet", "vpn", "ethernet")),
    ("email", ("outlook", "mailbox", "calendar", "distribution list", "email")),
    ("hardware", ("laptop", "monitor", "printer", "keyboard", "mouse", "dock", "screen", "headset")),
    ("software", ("install", "licence", "license", "crash", "update", "application", "app ")),
]
MANY_PEOPLE = ("whole", "everyone", "nobody", "all users", "entire", "floor")
BLOCKED = ("cannot", "can't", "unable", "down", "locked out", "not working")
NO_RUSH = ("no rush", "when you can", "could i get", "request")


def classify(text: str) -> tuple[str, str]:
    t = text.lower()
    category = next((cat for cat, words in RULES if any(w in t for w in words)), "other")
    if category == "security" or any(w in t for w in MANY_PEOPLE):
        priority = "P1"
    elif any(w in t for w in BLOCKED):
        priority = "P2"
    elif any(w in t for w in NO_RUSH):
        priority = "P4"
    else:
        priority = "P3"
    return category, priority


def _summary(text: str) -> str:
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return first[:117] + "…" if len(first) > 120 else first


def respond(body: dict[str, Any]) -> Reply:
    messages = body["messages"]
    request = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
    tool_results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    text, email = request["ticket_text"], request["requester_email"]
    category, priority = classify(text)
    if not tool_results:
        return Reply.tool("lookup_requester", {"email": email})
    person = tool_results[0]
    if len(tool_results) == 1:
        if person.get("vip") and priority in ("P2", "P3"):
            priority = "P1" if priority == "P2" else "P2"
        return Reply.tool(
            "create_ticket",
            {"requester_email": email, "category": category, "priority": priority, "summary": _summary(text)},
        )
    ticket = tool_results[-1]
    if "error" in ticket:  # denied, rejected or expired: no ticket, and say why
        return Reply.text(
            {
                "category": category,
                "priority": priority,
                "ticket_id": None,
                "summary": f"not opened: {ticket.get('reason', ticket['error'])}"[:200],
                "requester_department": person.get("department"),
            }
        )
    args = next(
        json.loads(c["function"]["arguments"])
        for m in messages
        if m["role"] == "assistant"
        for c in (m.get("tool_calls") or [])
        if c["function"]["name"] == "create_ticket"
    )
    return Reply.text(
        {
            "category": args["category"],
            "priority": args["priority"],
            "ticket_id": ticket.get("ticket_id", "INC0000000"),
            "summary": args["summary"],
            "requester_department": person.get("department"),
        }
    )
