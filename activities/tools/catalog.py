"""The tool catalog: every tool's models and declared properties, by name.

Workflow-safe. The workflow reads a tool's definition here to offer it to the
model (JSON schema generated from the input model), to validate the arguments
the model proposes before anything is scheduled, and to schedule the activity
with the declared timeouts and retry policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.common import RetryPolicy

from contracts.model import ToolSchema
from contracts.tools import ToolMeta


class ArgumentsRejected(ValueError):
    """The model's arguments for a tool did not validate; the message says why."""


@dataclass(frozen=True)
class ToolDefinition:
    meta: ToolMeta
    args_model: type[BaseModel]
    result_model: type[BaseModel]

    @property
    def name(self) -> str:
        return self.meta.name

    def schema_for_model(self) -> ToolSchema:
        """The tool as the model sees it; parameters come from the input model."""
        return self._model_schema

    @cached_property
    def _model_schema(self) -> ToolSchema:
        # Built once per tool: the model activity offers it on every call.
        schema = self.args_model.model_json_schema()
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


def declare(meta: ToolMeta, args_model: type[BaseModel], result_model: type[BaseModel]) -> ToolDefinition:
    """Add a tool to the catalog. Names are unique and never reused."""
    if meta.name in CATALOG and CATALOG[meta.name].args_model is not args_model:
        raise ValueError(f"tool {meta.name!r} is declared twice")
    definition = ToolDefinition(meta, args_model, result_model)
    CATALOG[meta.name] = definition
    return definition


def get_tool(name: str) -> ToolDefinition | None:
    return CATALOG.get(name)


# Declaration modules register their tools on import.
from activities.tools import it_desk_tools  # noqa: E402,F401
