"""The procedure a small model is walked through (`required_tools`, `required_per_item`): each
required call asked for in turn, per-item tools once per input item and interleaved, a call that
concluded (ran, denied, failed) counted, one with invalid arguments asked for again. Pure: no server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from activities.releases.loader import load_agent
from contracts.agent import AgentSpec, PinnedRelease
from contracts.run import AgentRunInput
from contracts.tools import ToolCallRecord, ToolOutcome
from tests.support.harness import AGENTS
from workflows.agent.model import item_hint, next_required, next_step, procedure
from workflows.agent.state import AgentState

FINANCE = load_agent(AGENTS / "finance-reconciliation").release.spec
DOCS = ["doc:sha256:" + c * 64 for c in "abc"]


def state(spec: AgentSpec, given: dict) -> AgentState:
    st = AgentState()
    st.release = PinnedRelease(spec=spec, prompt_sha256="0" * 64)
    st.inp = AgentRunInput(agent=spec.name, tenant="acme", run_key="k", input=given)
    return st


def called(st: AgentState, tool: str, outcome: ToolOutcome = ToolOutcome.OK) -> None:
    st.carry.tool_calls.append(ToolCallRecord(call_id=f"c{len(st.carry.tool_calls)}", tool=tool, arguments={}, outcome=outcome, step=st.carry.step))


def test_per_item_tools_are_asked_for_item_by_item_then_the_rest_once():
    st = state(FINANCE, {"invoices": DOCS[:2], "statement": DOCS[2]})
    assert procedure(st) == [
        "ocr_document", "extract_invoice", "ocr_document", "extract_invoice", "match_transactions", "post_reconciliation",
        "report_reconciliation",
    ]  # fmt: skip
    asked = []
    for _ in range(7):
        tool = next_required(st)
        asked.append(tool)
        called(st, tool, ToolOutcome.FAILED if tool == "ocr_document" and len(asked) == 1 else ToolOutcome.OK)
    assert asked == procedure(st) and next_required(st) is None


def test_a_call_with_invalid_arguments_is_asked_for_again():
    st = state(FINANCE, {"invoices": DOCS[:1], "statement": DOCS[2]})
    called(st, "ocr_document", ToolOutcome.INVALID_ARGUMENTS)
    assert next_required(st) == "ocr_document"
    called(st, "ocr_document", ToolOutcome.DENIED)
    assert next_required(st) == "extract_invoice"


def test_a_per_item_tool_must_be_required_and_name_an_array_of_the_input():
    data = FINANCE.model_dump()
    with pytest.raises(ValidationError, match="'match_transactions' names 'statement', which must be an array property"):
        AgentSpec.model_validate({**data, "required_per_item": {"match_transactions": "statement"}})
    with pytest.raises(ValidationError, match="must also be listed in required_tools"):
        AgentSpec.model_validate({**data, "required_tools": ["ocr_document"], "required_per_item": {"extract_invoice": "invoices"}})


def test_a_per_item_step_names_its_item():
    st = state(FINANCE, {"invoices": DOCS[:2], "statement": DOCS[2]})
    for tool in ("ocr_document", "extract_invoice"):
        called(st, tool)
    assert next_step(st) == ("ocr_document", 1)
    assert item_hint(st, "ocr_document", 1).content == f'Next: `ocr_document` for invoices item 2 of 2: "{DOCS[1]}"'
    for tool in ("ocr_document", "extract_invoice"):
        called(st, tool)
    assert next_step(st) == ("match_transactions", None)
