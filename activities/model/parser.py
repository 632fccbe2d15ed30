"""Tool calls that a model wrote as JSON in its message text.

Not workflow-safe only by location; pure functions. Small open models asked
with `tool_choice="auto"` often answer with a JSON block instead of
`tool_calls`; these shapes are understood, and only for tools that were offered:

    {"name": "lookup_requester", "arguments": {...}}          (also "parameters")
    {"tool": "...", "args": {...}} / {"function": {"name":..., "arguments":...}}
    [ {...}, {...} ]                                           several calls
    fenced as ```json ... ``` or wrapped in <tool_call> ... </tool_call>
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from contracts.model import ToolCall

_FENCE = re.compile(r"```(?:json|tool_call)?\s*(.*?)```", re.DOTALL)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def _candidates(text: str) -> list[str]:
    found = _TAGGED.findall(text) + _FENCE.findall(text)
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        found.append(stripped)
    return found


def _as_call(obj: Any) -> tuple[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    if not isinstance(name, str):
        return None
    args = obj.get("arguments", obj.get("parameters", obj.get("args", {})))
    return name, args


def parse_text_tool_calls(text: str | None, offered: set[str]) -> list[ToolCall]:
    """Tool calls found in `text` for tools in `offered`; empty when there are none."""
    if not text or not offered:
        return []
    for blob in _candidates(text):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        items = data if isinstance(data, list) else [data]
        calls: list[ToolCall] = []
        for i, item in enumerate(items):
            parsed = _as_call(item)
            if parsed is None or parsed[0] not in offered:
                calls = []
                break
            name, args = parsed
            arguments = args if isinstance(args, str) else json.dumps(args, sort_keys=True)
            digest = hashlib.sha256(f"{i}:{name}:{arguments}".encode()).hexdigest()[:16]
            calls.append(ToolCall(id=f"text_{digest}", name=name, arguments=arguments))
        if calls:
            return calls
    return []
