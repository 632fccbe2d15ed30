"""JSON Schema checks shared by the client, the admission gate and the workflow.

Workflow-safe: pure functions over data (jsonschema is passed through the sandbox).
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def _path(err) -> str:
    parts = [str(p) for p in err.absolute_path]
    return ".".join(parts) if parts else "(root)"


_VALIDATORS: dict[str, Draft202012Validator] = {}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    # Pure cache keyed by the schema's content: safe to share across runs and replays.
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        if len(_VALIDATORS) > 256:
            _VALIDATORS.clear()
        validator = _VALIDATORS[key] = Draft202012Validator(schema)
    return validator


def schema_problems(schema: dict[str, Any], instance: Any, limit: int = 5) -> list[str]:
    """Sentences naming each field that breaks `schema`, most specific first; empty when valid."""
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    out = []
    for err in errors[:limit]:
        if err.validator == "required" and isinstance(err.instance, dict):
            missing = [f for f in err.validator_value if f not in err.instance]
            where = _path(err)
            for m in missing:
                out.append(f"field {m!r} is required" + ("" if where == "(root)" else f" in {where}"))
            continue
        out.append(f"field {_path(err)!r}: {err.message}")
    return list(dict.fromkeys(out))  # jsonschema reports each missing field once per missing field


def schema_definition_problems(schema: Any) -> list[str]:
    """Problems with a JSON Schema itself (for the admission gate)."""
    if not isinstance(schema, dict):
        return ["must be a JSON Schema object"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as e:
        return [f"not a valid JSON Schema: {e.message}"]
    return []


_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_answer(text: str | None) -> tuple[Any, str | None]:
    """Parse a model's final answer as JSON, tolerating a Markdown fence. Returns (value, problem)."""
    if not text or not text.strip():
        return None, "the answer was empty"
    body = text.strip()
    m = _FENCED.match(body)
    if m:
        body = m.group(1)
    try:
        return json.loads(body), None
    except json.JSONDecodeError as e:
        start, end = body.find("{"), body.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(body[start : end + 1]), None
            except json.JSONDecodeError:
                pass
        return None, f"the answer is not JSON ({e.msg})"
