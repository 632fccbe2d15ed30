"""Run contracts: what a business system sends to start a run and gets back.

Workflow-safe.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from contracts.agent import AgentRelease
from contracts.approval import ApprovalLedger, ApprovalRequest
from contracts.policy import PolicySet
from contracts.model import ChatMessage, Usage
from contracts.tools import ToolCallRecord

TENANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
RUN_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def run_workflow_id(agent: str, tenant: str, run_key: str) -> str:
    """The business key of a run: starting the same run twice starts it once."""
    return f"agent/{agent}/{tenant}/{run_key}"


class RunState(StrEnum):
    STARTING = "starting"
    CALLING_MODEL = "calling_model"
    CALLING_TOOL = "calling_tool"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_BUDGET = "awaiting_budget"
    """The envelope is spent; the run waits for an operator to raise it or stop the run."""
    STOPPING = "stopping"
    """A kill switch stopped it; it ends at the current step boundary."""
    COMPLETED = "completed"
    FAILED = "failed"


class RunCarry(BaseModel):
    """State handed across continue-as-new, kept small on purpose."""

    step: int
    transcript_seq: int
    usage: Usage
    invalid_tool_calls: int = 0
    repairs: int = 0
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    pending: list[ChatMessage] = Field(default_factory=list)
    """Tool results not yet sent to the model."""
    policy: PolicySet | None = None
    ledger: ApprovalLedger = Field(default_factory=ApprovalLedger)
    denials: int = 0
    settled: list[ToolCallRecord] = Field(default_factory=list)
    """Tool calls that ran no activity and have not yet been reported with a model call."""
    context_tokens: int = 0
    """Prompt tokens of the last model call (for the context breaker)."""
    tier: int = 0
    """Model tier the run has reached (0: the spec's `model`)."""


class RunFailure(BaseModel):
    """Details attached to a run's typed failure: what history holds nowhere else."""

    step: int
    usage: Usage
    settled: list[ToolCallRecord] = Field(default_factory=list)
    """Tool calls since the last model call that ran no activity (the one that ended the run, often)."""


class AgentRunInput(BaseModel):
    """Input of `AgentWorkflow`."""

    release: AgentRelease
    """The agent spec and prompt this run uses, fixed for the whole run."""
    input: dict[str, Any]
    """The business input; must satisfy the agent's input schema."""
    tenant: str
    """Tenant the run belongs to (job order)."""
    run_key: str
    """Business key of the run within the tenant (ticket number, order id, ...)."""
    requester: str = ""
    """Who asked for the run (person or system)."""
    history_budget_events: int = 0
    """Continue as new once history has this many events (0: when Temporal suggests it)."""
    carry: RunCarry | None = None
    """Set only by continue-as-new."""
    policy_gate: bool = False
    """Set by every starter that knows the policy gate is always on (`FactoryClient` does): the
    run then resolves its policy without a `policy-gate-v1` patch marker and the search-attribute
    write that comes with it. False in histories recorded before the field, which replay through
    the patch as they were recorded."""

    kill_switch_check: bool = False
    """Set by every starter that knows runs check the kill switches at start (`FactoryClient`
    does): the run then asks `check_kill_switch` without a `kill-switch-v1` patch marker."""

    admit_in_first_call: bool = False
    """Set by starters that know runs are admitted by their first model call (`FactoryClient`
    does): that call checks the kill switches and resolves the policy before it is made, in
    place of the two local activities of runs recorded before the field."""

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if not TENANT.match(v):
            raise ValueError("must be 1-63 lowercase letters, digits, '.', '_' or '-'")
        return v

    @field_validator("run_key")
    @classmethod
    def _run_key(cls, v: str) -> str:
        if not RUN_KEY.match(v):
            raise ValueError("must be 1-128 letters, digits, '.', '_', ':' or '-'")
        return v

    @property
    def workflow_id(self) -> str:
        return run_workflow_id(self.release.spec.name, self.tenant, self.run_key)


class AgentRunResult(BaseModel):
    """Result of `AgentWorkflow`: the validated output and how it was reached."""

    output: dict[str, Any]
    agent: str
    agent_version: str
    """Release version, including the prompt hash."""
    prompt_sha256: str
    tenant: str
    run_key: str
    steps: int
    usage: Usage
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    policy_bundle: str | None = None
    """`name@version` of the policy bundle that gated the run."""
    policy_sha256: str | None = None
    denials: int = 0
    approvals: list[ApprovalRequest] = Field(default_factory=list)


class RunStatus(BaseModel):
    """What the `status` query answers."""

    state: RunState
    step: int
    step_limit: int
    usage: Usage
    waiting_on: str
    """What the run waits on right now: the model, a tool, or nothing."""
    tool_calls: int = 0
    invalid_tool_calls: int = 0
    denials: int = 0
    approval: ApprovalRequest | None = None
    """The request the run is parked on, if any."""
