"""The tool catalog: every tool's models, declared properties and activity name, by tool name.

Workflow-safe: data and pure functions only. A tool family's declarations module
calls `declare(...)` when it is imported; the worker loads the installed
families (`activities.tools.families`) before it runs a workflow, so by then the
catalog holds every tool it can schedule. The workflow reads a tool's
definition here to offer it to the model (JSON schema generated from the input
model), to validate the arguments the model proposes before anything is
scheduled, and to schedule the activity, by its activity name, with the
declared timeouts and retry policy.

Two names per tool: the model-facing `name` (short, what the model calls) and the
`activity_name` that Temporal records in history (`tool.<family>.<name>`, or a
declared legacy name for tools that shipped before families were namespaced).
Both are wire API: never renamed once shipped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.common import RetryPolicy

from contracts.model import ToolSchema
from contracts.tools import ToolMeta

#: A family's name: the middle part of its tools' activity names (`tool.<family>.<name>`).
FAMILY_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class ArgumentsRejected(ValueError):
    """The model's arguments for a tool did not validate; the message says why."""


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as the workflow sees it: metadata, argument and result models, and its activity name."""

    meta: ToolMeta
    args_model: type[BaseModel]
    result_model: type[BaseModel]
    family: str = ""
    """The family that declared it (`ToolFamily.name`)."""
    legacy_activity_name: str | None = None
    """The activity name of a tool that shipped before activity names were namespaced by family:
    recorded histories schedule it under this name, so it is kept."""

    @property
    def name(self) -> str:
        """The name the model calls the tool by."""
        return self.meta.name

    @property
    def activity_name(self) -> str:
        """The activity type the workflow schedules and history records."""
        return self.legacy_activity_name or f"tool.{self.family}.{self.name}"

    def schema_for_model(self) -> ToolSchema:
        """The tool as the model sees it; parameters come from the input model."""
        return self._model_schema

    @cached_property
    def _model_schema(self) -> ToolSchema:
        # Built once per tool: the model activity offers it on every call.
        schema = _without_large_bounds(self.args_model.model_json_schema())
        schema.pop("title", None)
        return ToolSchema(name=self.name, description=self.meta.description, parameters=schema)

    def parse_arguments(self, raw: str | dict[str, Any]) -> BaseModel:
        """Validate model-proposed arguments, or raise `ArgumentsRejected` naming each problem."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw or "{}")
            except json.JSONDecodeError as e:
                raise ArgumentsRejected(f"arguments are not valid JSON ({e.msg} at position {e.pos})")
        if not isinstance(raw, dict):
            raise ArgumentsRejected("arguments must be a JSON object")
        try:
            return self.args_model.model_validate(raw)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in e.errors()
            )
            raise ArgumentsRejected(problems) from None

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=self.meta.initial_retry_interval,
            maximum_interval=self.meta.maximum_retry_interval,
            maximum_attempts=self.meta.max_attempts,
            non_retryable_error_types=["ToolFailed"],
        )


CATALOG: dict[str, ToolDefinition] = {}


def declare(
    meta: ToolMeta,
    args_model: type[BaseModel],
    result_model: type[BaseModel],
    *,
    family: str,
    legacy_activity_name: str | None = None,
) -> ToolDefinition:
    """Add a tool of `family` to the catalog. Tool names are unique across families and never reused.

    Args:
        meta: The tool's declared properties; `meta.name` is the name the model calls it by.
        args_model: The arguments the model must send.
        result_model: What the activity returns.
        family: The declaring family's name; the activity is `tool.<family>.<name>`.
        legacy_activity_name: Only for tools whose activity shipped under another name before
            families existed; new tools leave it unset.
    """
    if not FAMILY_NAME.match(family):
        raise ValueError(f"family {family!r} is not a valid family name (lowercase letters, digits and _)")
    previous = CATALOG.get(meta.name)
    if previous is not None and (previous.args_model is not args_model or previous.family != family):
        raise ValueError(f"tool {meta.name!r} is declared twice (families {previous.family!r} and {family!r})")
    definition = ToolDefinition(meta, args_model, result_model, family, legacy_activity_name)
    CATALOG[meta.name] = definition
    return definition


def get_tool(name: str) -> ToolDefinition | None:
    return CATALOG.get(name)


def tool_for_activity(activity_name: str) -> ToolDefinition | None:
    """The tool scheduled as `activity_name` (its namespaced or legacy activity name), if any."""
    for definition in CATALOG.values():
        if definition.activity_name == activity_name:
            return definition
    return None


#: Array bounds above this are left out of the schema a model is shown (its arguments are still held
#: to them): grammar-constrained endpoints such as llama.cpp unroll `maxItems` into one rule per
#: item, and a bound of 500 makes a grammar the server cannot parse (it crashed on one, measured).
MODEL_MAX_ITEMS = 32


def _without_large_bounds(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_large_bounds(v) for k, v in schema.items() if not (k == "maxItems" and isinstance(v, int) and v > MODEL_MAX_ITEMS)}
    if isinstance(schema, list):
        return [_without_large_bounds(v) for v in schema]
    return schema
