"""Model-call contracts: chat messages, the model activity's input and result.

Workflow-safe. The model activity receives only the *new* messages of a turn
(`delta`) plus a reference to the run's transcript, so history grows with each
message once instead of carrying the whole conversation on every call.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts.agent import ModelSettings, PromptRef
from contracts.budget import BudgetNote, EnvelopeRef
from contracts.control import Admission, Admitted
from contracts.tools import ToolCallRecord


def system_prompt(prompt: str, output_schema: dict[str, Any]) -> str:
    """The system message a run's conversation opens with: the agent's prompt and its answer's schema."""
    return (
        f"{prompt.strip()}\n\n"
        "When you have finished, reply with only a JSON object (no prose) that matches this JSON Schema:\n"
        f"{json.dumps(output_schema, sort_keys=True)}"
    )


class ToolCall(BaseModel):
    """A tool call proposed by the model. `arguments` is the raw JSON text."""

    id: str
    name: str
    arguments: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None


class ToolSchema(BaseModel):
    """A tool as offered to the model (OpenAI `tools` entry)."""

    name: str
    description: str
    parameters: dict[str, Any]


class Usage(BaseModel):
    """Tokens and cost; added up across every model call of a run, retries included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
            model_calls=self.model_calls + other.model_calls,
        )


class ModelCallInput(BaseModel):
    transcript_id: str
    """Stable id of the run's conversation (survives continue-as-new)."""
    base_seq: int
    """Number of messages the store must already hold before `delta` is appended."""
    delta: list[ChatMessage]
    """Messages new since the last call (or the whole conversation when `base_seq` is 0)."""
    model: ModelSettings
    tools: list[ToolSchema] = Field(default_factory=list)
    """Tools offered with their schemas (kept for runs recorded before `tool_names`)."""
    tool_names: list[str] = Field(default_factory=list)
    """Tools offered by catalog name; the activity sends their schemas, keeping history small."""
    tool_choice: Literal["auto", "none", "required"] = "auto"
    force_tool: str | None = None
    """When set, the model must call this tool now (a forced tool choice)."""
    response_schema: dict[str, Any] | None = None
    """When set and no tools are offered, ask the endpoint for JSON matching it."""
    step: int = 0
    """The run's step this call belongs to (0 in histories recorded before it was sent)."""
    release_version: str = ""
    """The agent release making the call (a metric label; empty in older histories)."""
    envelope: EnvelopeRef | None = None
    """The agent's cost envelope: the call reserves against it first and is not made without room."""
    admission: Admission | None = None
    """Set on a run's first call in runs recorded before the worker resolved releases at start:
    check the kill switches and resolve the run's policy first."""
    prompt: PromptRef | None = None
    """Set when the conversation starts here (`base_seq` 0): the activity opens it with this
    release's system prompt, from the worker's own registry, ahead of `delta`."""
    settled: list[ToolCallRecord] = Field(default_factory=list)
    """Tool calls since the last model call that ran no activity (outside the grant, invalid
    arguments, denied, not approved). The model reads the same outcome as tool messages in
    `delta`; this structured copy is what the audit export reads from history."""


class ModelCallResult(BaseModel):
    message: ChatMessage
    """The assistant's reply, with tool calls normalised (also when written as text)."""
    usage: Usage
    model: str
    """Model name the endpoint reported."""
    finish_reason: str | None = None
    tool_calls_from_text: bool = False
    """True when the model wrote its tool call as JSON in the message text."""
    attempt: int = 1
    """Activity attempt that produced this result."""
    budget: BudgetNote | None = None
    """The envelope's answer; `granted` False means the call was not made (nothing was spent)."""
    admitted: Admitted | None = None
    """The answer to the call's `admission`; a kill switch in it means the call was not made."""
    prompt_sha256: str | None = None
    """SHA-256 of the prompt text this call sent as the system prompt (calls with `prompt`):
    what the audit trail records as the run's prompt."""
