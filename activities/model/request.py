"""The chat-completions request body of a model call, built from a `ModelCallInput` and its endpoint.

Not workflow-safe (reads the tool catalog the worker loaded). Pure: no I/O, so the body of any call
can be checked in a test without an endpoint.
"""

from __future__ import annotations

from typing import Any

from activities.model.endpoints import Endpoint
from activities.tools.catalog import CATALOG
from contracts.model import ChatMessage, ModelCallInput


def to_openai_message(m: ChatMessage) -> dict[str, Any]:
    # An empty string, not null: llama.cpp's server refuses a null content on a tool-calling turn.
    out: dict[str, Any] = {"role": m.role, "content": m.content if m.content is not None else ""}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    return out


def json_format(ep: Endpoint, schema: dict[str, Any]) -> dict[str, Any]:
    if ep.json_mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def to_openai_messages(messages: list[ChatMessage], *, tool_results_as_user: bool = False) -> list[dict[str, Any]]:
    if not tool_results_as_user:
        return [to_openai_message(m) for m in messages]
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out = []
    for m in messages:
        if m.role == "tool":
            name = names.get(m.tool_call_id or "", "the tool")
            out.append({"role": "user", "content": f"Result of {name}:\n{m.content or ''}"})
        else:
            out.append(to_openai_message(m))
    return out


def request_body(inp: ModelCallInput, ep: Endpoint, model_name: str, messages: list[ChatMessage]) -> tuple[dict[str, Any], Any, list]:
    """The body to post, the tool forced as a JSON answer (endpoints that cannot force a tool), and the tools offered."""
    tools = list(inp.tools) + [CATALOG[n].schema_for_model() for n in inp.tool_names if n in CATALOG]
    forced_as_json = None
    if inp.force_tool and ep.forced_tools_as_json and inp.force_tool in CATALOG:
        forced_as_json = CATALOG[inp.force_tool].schema_for_model()
        tools = []
    body: dict[str, Any] = {
        "model": model_name,
        "messages": to_openai_messages(messages, tool_results_as_user=ep.tool_results_as_user),
        "temperature": inp.model.temperature,
        "max_tokens": inp.model.max_tokens,
    }
    if forced_as_json is not None:
        body["messages"].append(
            {"role": "user", "content": f"Call `{forced_as_json.name}` now ({forced_as_json.description}) "
                                        "Reply with only its arguments as a JSON object."}
        )  # fmt: skip
        body["response_format"] = json_format(ep, forced_as_json.parameters)
    elif tools:
        body["tools"] = [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in tools
        ]
        body["tool_choice"] = {"type": "function", "function": {"name": inp.force_tool}} if inp.force_tool else inp.tool_choice
    elif inp.response_schema is not None:
        body["response_format"] = json_format(ep, inp.response_schema)
    return body, forced_as_json, tools
