"""Tool contracts: how a tool is declared, invoked and recorded.

Workflow-safe. A tool is an activity with a pydantic input and output model; its
`ToolDefinition` (in `contracts.catalog`) pairs those models with the
metadata below, which the workflow reads to validate arguments and schedule the
activity.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.classes import DataClass, SideEffect
from contracts.policy import PolicyDecision


class ToolMeta(BaseModel):
    """Declared properties of a tool, as the workflow and the policy gate see them."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    """Tool name, as the model calls it (wire API: never renamed once shipped). The activity it
    schedules is `ToolDefinition.activity_name` (`tool.<family>.<name>`, or a declared legacy name)."""
    description: str
    """What the tool does, as the model reads it."""
    side_effect: SideEffect
    """Read, write or external."""
    data_classes: tuple[DataClass, ...] = ()
    """Data classes the tool touches."""
    start_to_close: timedelta = timedelta(seconds=30)
    """How long one attempt may take."""
    schedule_to_close: timedelta = timedelta(minutes=10)
    """How long the call may take across all retries."""
    max_attempts: int = 10
    """Attempts before the call fails (1 = no retry). With the default back-off a call rides out
    about two and a half minutes of an unreachable store; a write that still fails parks the run
    for an operator (retry or give up) rather than letting it go on as if it had acted."""
    initial_retry_interval: timedelta = timedelta(seconds=1)
    """First back-off between attempts; doubles each time, up to `maximum_retry_interval`."""
    maximum_retry_interval: timedelta = timedelta(seconds=30)
    """Longest back-off between two attempts."""

    @property
    def needs_idempotency_key(self) -> bool:
        """Write and external tools get a key so a retried call has one effect."""
        return self.side_effect is not SideEffect.READ


class ToolContext(BaseModel):
    """Who is calling a tool, passed to every tool activity with its arguments."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    """Business key of the run (the workflow id)."""
    agent: str
    tenant: str
    step: int
    call_index: int
    agent_version: str = ""
    """Release version of the calling agent (a metric label; empty in older histories)."""
    idempotency_key: str | None = None
    """Set for write and external tools: the same for every retry of this call."""
    decision: PolicyDecision | None = None
    """The policy decision that allowed this call (so it is in history with the call)."""
    approved_by: str | None = None
    """Who approved the call, when it needed approval."""


class ToolOutcome(StrEnum):
    OK = "ok"
    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_GRANTED = "not_granted"
    UNKNOWN_TOOL = "unknown_tool"
    DENIED = "denied"
    """The policy denied it, an approver rejected it, or its approval expired."""
    FAILED = "failed"
    STOPPED = "stopped"
    """Not run: a circuit breaker tripped on it, or a kill switch stopped the run."""


class ToolCallRecord(BaseModel):
    """One tool call the model asked for and what became of it."""

    step: int
    call_id: str
    tool: str
    outcome: ToolOutcome
    arguments: dict[str, Any] | None = None
    """The validated arguments (None when they could not be parsed)."""
    error: str | None = None
    idempotency_key: str | None = None
    decision: PolicyDecision | None = None
    approval_request: str | None = None
    """Id of the approval request, when one was needed."""
    approved_by: str | None = None
