"""A throwaway second agent, written as a folder the way a team would add one: `hw-orders`.

It reads an equipment order ("Please order 2 monitors"), looks up the requester with the
IT desk family's `lookup_requester`, opens an order with `create_ticket` and answers with
an output schema of its own (`item`, `quantity`, `department`, `order_id`): nothing of it
is it-triage's. Its bundle (`orders`, in a policies folder written next to it) sends every
order to the neutral `approvers` group of the shipped directory, as the default bundle does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.support.harness import AGENTS, REPO

NAME = "hw-orders"
PROMPT = """You take equipment orders for the IT desk. Call `lookup_requester` with the requester's email,
then call `create_ticket` once (category hardware, priority P4, a one-line summary naming the item and the
quantity), then answer with the item (singular, lower case), the quantity, the requester's department and
the ticket id as the order id.
"""

SCRIPTED = '''
"""hw-orders' scripted rules: the item and quantity are read off the text."""
import json
import re

from activities.model.scripted import Reply

WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}


def parse(text):
    m = re.search(r"order (\\d+|a|an|one|two|three) ([a-z-]+?)s?\\b", text.lower())
    if not m:
        return "unknown", 1
    n = m.group(1)
    return m.group(2), int(n) if n.isdigit() else WORDS[n]


def respond(body):
    messages = body["messages"]
    request = json.loads(next(m["content"] for m in messages if m["role"] == "user"))
    results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    item, quantity = parse(request["request_text"])
    if not results:
        return Reply.tool("lookup_requester", {"email": request["requester_email"]})
    if len(results) == 1:
        return Reply.tool("create_ticket", {
            "requester_email": request["requester_email"], "category": "hardware", "priority": "P4",
            "summary": f"order {quantity} x {item}",
        })
    ticket = results[-1]
    return Reply.text({"item": item, "quantity": quantity, "department": results[0].get("department"),
                       "order_id": ticket.get("ticket_id")})
'''

CASES = {
    "min_accuracy": 0.5,
    "min_tool_accuracy": 0.9,
    "defaults": {
        "expect": {
            "tools": [
                {"name": "lookup_requester", "args": {"email": {"equals": "$input.requester_email", "ignore_case": True}}},
                {"name": "create_ticket", "args": {"category": "hardware", "summary": {"contains": "$output.item"}}},
            ],
            "output": {"order_id": {"present": True, "weight": 0, "metric": "orders_opened"}},
        }
    },
    "cases": [
        {
            "id": "two-monitors",
            "input": {"request_text": "Please order 2 monitors for my desk.", "requester_email": "Jonas.Berg@example.com"},
            "expect": {"output": {"item": {"equals": "MONITOR", "ignore_case": True}, "quantity": {"near": 2},
                                  "department": "Finance"}},
        },
        {
            "id": "a-headset",
            "input": {"request_text": "Could you order a headset? Thanks.", "requester_email": "ana.silva@example.com"},
            "expect": {"output": {"item": ["headset", "headphones"], "quantity": 1}},
        },
        {   # the rules read one keyboard where the requester wants three: quantity is wrong, weighted 3 of 4
            "id": "three-keyboards",
            "input": {"request_text": "We need to order one keyboard per new hire, three people start Monday.",
                      "requester_email": "maria.keller@example.com"},
            "expect": {"output": {"item": "keyboard", "quantity": {"near": 3, "tolerance": 0.5, "weight": 3}}},
        },
    ],
}  # fmt: skip

BUNDLE = {
    "name": "orders",
    "version": "1.0.0",
    "default_approval": {"chain": [{"group": "approvers", "sla": "PT30M"}], "safe_default": "deny"},  # as the default bundle
    "rules": [
        {"id": "lookups", "match": {"tools": ["lookup_requester"]}, "decision": "allow", "reason": "read-only directory lookup"},
        {"id": "orders-need-approval", "match": {"tools": ["create_ticket"]}, "decision": "require_approval",
         "reason": "equipment costs money"},
    ],
}  # fmt: skip


def write_agent(root: Path, task_queue: str) -> tuple[Path, Path]:
    """The agent folder under `root/agents` and a policies folder under `root/policies` (the shipped
    bundles and directory plus `orders`). Returns (agents folder, policies folder)."""
    agents, policies = root / "agents", root / "policies"
    folder = agents / NAME
    (folder / "eval").mkdir(parents=True)
    (folder / "samples").mkdir()
    (folder / "seed").mkdir()
    spec = yaml.safe_load((AGENTS / "it-triage" / "agent.yaml").read_text())
    spec.update(
        name=NAME, version="0.1.0", description="Takes equipment orders and opens them at the IT desk.",
        business_function="IT procurement", policy="orders", task_queue=task_queue, autonomy="supervised",
        input_schema={
            "type": "object", "additionalProperties": False, "required": ["request_text", "requester_email"],
            "properties": {"request_text": {"type": "string", "minLength": 5}, "requester_email": {"type": "string"}},
        },
        output_schema={
            "type": "object", "additionalProperties": False, "required": ["item", "quantity", "order_id"],
            "properties": {
                "item": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1},
                "department": {"type": ["string", "null"]}, "order_id": {"type": ["string", "null"]},
            },
        },
    )  # fmt: skip
    spec["rollback_to"] = "0.0.1"  # the standard asks for a version to roll back to, even for a first one
    (folder / "agent.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (folder / "prompt.md").write_text(PROMPT)
    (folder / "runbook.md").write_text("# hw-orders runbook\n\nOrders wait for an approver; nothing else pages anyone.\n")
    (folder / "scripted.py").write_text(SCRIPTED)
    (folder / "eval" / "cases.yaml").write_text(yaml.safe_dump(CASES, sort_keys=False))
    (folder / "samples" / "monitors.json").write_text('{"request_text": "Please order 2 monitors.", "requester_email": "jonas.berg@example.com"}')
    shutil.copy(AGENTS / "it-triage" / "seed" / "it_desk.json", folder / "seed" / "it_desk.json")
    shutil.copytree(REPO / "policies" / "bundles", policies / "bundles")
    shutil.copy(REPO / "policies" / "directory.yaml", policies / "directory.yaml")
    (policies / "bundles" / "orders.yaml").write_text(yaml.safe_dump(BUNDLE, sort_keys=False))
    return agents, policies
