"""parse_text_tool_calls: tool calls a model wrote as JSON in its message text."""

from __future__ import annotations

import json

import pytest

from activities.model.parser import parse_text_tool_calls

OFFERED = {"lookup_requester", "create_ticket"}
LOOKUP = {"email": "jonas.berg@example.com"}
TICKET = {"requester_email": "jonas.berg@example.com", "category": "access", "priority": "P2", "summary": "Locked out"}


def calls_of(text: str, offered: set[str] = OFFERED) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for c in parse_text_tool_calls(text, offered)]


# -- where the JSON sits ------------------------------------------------------------------------


def test_fenced_json_block_after_prose():
    text = f'I will look that up.\n```json\n{json.dumps({"name": "lookup_requester", "arguments": LOOKUP})}\n```'
    assert calls_of(text) == [("lookup_requester", LOOKUP)]


@pytest.mark.parametrize("fence", ["```", "```tool_call"])
def test_other_fences(fence):
    text = f'{fence}\n{{"name": "lookup_requester", "arguments": {json.dumps(LOOKUP)}}}\n```'
    assert calls_of(text) == [("lookup_requester", LOOKUP)]


def test_tool_call_tags():
    text = f'<tool_call>\n{{"name": "lookup_requester", "arguments": {json.dumps(LOOKUP)}}}\n</tool_call>'
    assert calls_of(text) == [("lookup_requester", LOOKUP)]


def test_several_tool_call_tags_take_the_first():
    text = (
        f'<tool_call>{{"name": "lookup_requester", "arguments": {json.dumps(LOOKUP)}}}</tool_call>\n'
        f'<tool_call>{{"name": "create_ticket", "arguments": {json.dumps(TICKET)}}}</tool_call>'
    )
    assert calls_of(text) == [("lookup_requester", LOOKUP)]


def test_bare_json_message():
    assert calls_of(f'  {{"name": "lookup_requester", "arguments": {json.dumps(LOOKUP)}}}\n') == [
        ("lookup_requester", LOOKUP)
    ]


def test_a_list_is_several_calls_in_order():
    text = json.dumps(
        [{"name": "lookup_requester", "arguments": LOOKUP}, {"name": "create_ticket", "arguments": TICKET}]
    )
    assert calls_of(text) == [("lookup_requester", LOOKUP), ("create_ticket", TICKET)]


def test_a_fenced_list():
    block = json.dumps([{"name": "lookup_requester", "arguments": LOOKUP}])
    assert calls_of(f"Calling:\n```json\n{block}\n```\nDone.") == [("lookup_requester", LOOKUP)]


def test_an_unparseable_block_is_skipped_for_the_next_one():
    text = (
        '```json\n{"name": "lookup_requester", "arguments": {"email": \n```\n'
        f'<tool_call>{{"name": "lookup_requester", "arguments": {json.dumps(LOOKUP)}}}</tool_call>'
    )
    assert calls_of(text) == [("lookup_requester", LOOKUP)]


# -- shapes of one call -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        {"name": "lookup_requester", "arguments": LOOKUP},
        {"name": "lookup_requester", "parameters": LOOKUP},
        {"tool": "lookup_requester", "args": LOOKUP},
        {"tool_name": "lookup_requester", "arguments": LOOKUP},
        {"function": {"name": "lookup_requester", "arguments": LOOKUP}},
        {"type": "function", "function": {"name": "lookup_requester", "parameters": LOOKUP}},
    ],
    ids=["arguments", "parameters", "tool-args", "tool_name", "function", "openai-style"],
)
def test_call_shapes(call):
    assert calls_of(json.dumps(call)) == [("lookup_requester", LOOKUP)]


def test_arguments_given_as_a_string_are_kept_verbatim():
    raw = '{"email": "jonas.berg@example.com"}'
    (call,) = parse_text_tool_calls(json.dumps({"name": "lookup_requester", "arguments": raw}), OFFERED)
    assert call.arguments == raw


def test_arguments_given_as_an_object_become_canonical_json():
    (call,) = parse_text_tool_calls('{"name": "create_ticket", "arguments": {"priority": "P2", "category": "access"}}', OFFERED)
    assert call.arguments == '{"category": "access", "priority": "P2"}'


def test_missing_arguments_are_an_empty_object():
    (call,) = parse_text_tool_calls('{"name": "lookup_requester"}', OFFERED)
    assert call.arguments == "{}"


# -- what is not a tool call ------------------------------------------------------------------


def test_a_tool_that_was_not_offered_is_ignored():
    assert calls_of(json.dumps({"name": "delete_everything", "arguments": {}})) == []
    assert calls_of(json.dumps({"name": "create_ticket", "arguments": TICKET}), offered={"lookup_requester"}) == []


def test_one_unknown_tool_rejects_the_whole_block():
    text = json.dumps(
        [{"name": "lookup_requester", "arguments": LOOKUP}, {"name": "delete_everything", "arguments": {}}]
    )
    assert calls_of(text) == []


def test_one_entry_without_a_name_rejects_the_whole_block():
    assert calls_of(json.dumps([{"name": "lookup_requester", "arguments": LOOKUP}, {"arguments": {}}])) == []


@pytest.mark.parametrize(
    "text",
    [
        "The requester is in Finance; I have opened ticket INC0000001.",
        "",
        "   ",
        "Call lookup_requester with email jonas.berg@example.com",
        '{"category": "access", "priority": "P2", "ticket_id": "INC0000001", "summary": "Locked out"}',
        "[]",
        '"lookup_requester"',
        "```json\nnot json at all\n```",
        '{"name": 42, "arguments": {}}',
    ],
    ids=["prose", "empty", "blank", "prose-naming-tool", "final-answer", "empty-list", "string", "bad-fence", "bad-name"],
)
def test_text_without_a_tool_call_gives_nothing(text):
    assert parse_text_tool_calls(text, OFFERED) == []


def test_nothing_when_no_text_or_no_tools():
    call = json.dumps({"name": "lookup_requester", "arguments": LOOKUP})
    assert parse_text_tool_calls(None, OFFERED) == []
    assert parse_text_tool_calls(call, set()) == []


# -- ids --------------------------------------------------------------------------------------


def test_ids_are_stable_for_the_same_text():
    text = json.dumps([{"name": "lookup_requester", "arguments": LOOKUP}, {"name": "create_ticket", "arguments": TICKET}])
    first = parse_text_tool_calls(text, OFFERED)
    again = parse_text_tool_calls(text, OFFERED)
    assert [c.id for c in first] == [c.id for c in again]
    assert all(c.id.startswith("text_") for c in first)
    assert len({c.id for c in first}) == 2


def test_ids_do_not_depend_on_formatting_or_key_order():
    a = parse_text_tool_calls('{"name": "create_ticket", "arguments": {"priority": "P2", "category": "access"}}', OFFERED)
    b = parse_text_tool_calls('```json\n{"arguments": {"category":"access","priority":"P2"}, "name":"create_ticket"}\n```', OFFERED)
    assert a[0].id == b[0].id


def test_same_call_twice_in_one_block_gets_two_ids():
    call = {"name": "lookup_requester", "arguments": LOOKUP}
    first, second = parse_text_tool_calls(json.dumps([call, call]), OFFERED)
    assert first.id != second.id


def test_different_arguments_give_different_ids():
    a = parse_text_tool_calls(json.dumps({"name": "lookup_requester", "arguments": LOOKUP}), OFFERED)
    b = parse_text_tool_calls(json.dumps({"name": "lookup_requester", "arguments": {"email": "ana.silva@example.com"}}), OFFERED)
    assert a[0].id != b[0].id
