"""Run contracts: what a business system sends to start a run and gets back.

Workflow-safe. A start names the agent, the tenant, the run key and the business
input (and optionally a version pin and labels): nothing that governs the run.
The worker resolves the release, its prompt, its policy, its envelope and the
kill switches itself, and pins them in the run's history.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from contracts.agent import AGENT_NAME, AgentRelease, PinnedRelease
from contracts.approval import ApprovalLedger, ApprovalRequest
from contracts.policy import PolicySet
from contracts.model import ChatMessage, Usage
from contracts.tools import ToolCallRecord

TENANT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
RUN_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
MAX_LABELS = 16

#: The run protocol of today's starts: the worker resolves release, policy, envelope and switches
#: in the run's first (local) activity. It is recorded as the `worker-resolves-release` patch
#: marker, never read from a run input.
PROTOCOL = 4


def run_workflow_id(agent: str, tenant: str, run_key: str) -> str:
    """The business key of a run: starting the same run twice starts it once."""
    return f"agent/{agent}/{tenant}/{run_key}"


class RunState(StrEnum):
    STARTING = "starting"
    CALLING_MODEL = "calling_model"
    CALLING_TOOL = "calling_tool"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_OPERATOR = "awaiting_operator"
    """A write or external tool ran out of retries: an operator retries it now or gives it up."""
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
    release: PinnedRelease | None = None
    """The release the run was admitted under (None in carries recorded before workers resolved releases)."""
    lineage: str = ""
    """The run's first execution id: a carry is taken only by a continuation of that run."""
    nonces: list[str] = Field(default_factory=list)
    """Nonces of the signed decisions the run took (a replay is refused across continue-as-new too)."""


class RunFailure(BaseModel):
    """Details attached to a run's typed failure: what history holds nowhere else."""

    step: int
    usage: Usage
    settled: list[ToolCallRecord] = Field(default_factory=list)
    """Tool calls since the last model call that ran no activity (the one that ended the run, often)."""


class AgentRunInput(BaseModel):
    """Input of `AgentWorkflow`: what a starter asks for, in any language.

    `{"agent": "it-triage", "tenant": "acme", "run_key": "T-1001", "input": {...}}` is a whole
    start. Nothing here turns governance on or off: the worker resolves the release, prompt,
    policy, envelope and kill switches from its own deployment.
    """

    agent: str = ""
    """The agent to run (its folder name)."""
    tenant: str
    """Tenant the run belongs to (job order)."""
    run_key: str
    """Business key of the run within the tenant (ticket number, order id, ...)."""
    input: dict[str, Any]
    """The business input; must satisfy the agent's input schema."""
    version: str | None = None
    """Pin a release (`1.3.0`, or `1.3.0+prompt.<12 hex>`); default: the worker's current one."""
    requester: str = ""
    """Who asked for the run (person or system); may not decide the run's approvals."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Caller's labels for the run (source system, ticket url, ...), kept in its audit story."""
    history_budget_events: int = Field(default=0, ge=0)
    """Continue as new once history has this many events (0: when Temporal suggests it)."""
    carry: RunCarry | None = None
    """Set only by the run's own continue-as-new; a start that sets it is refused."""
    release: AgentRelease | None = None
    """Recorded by starters before workers resolved releases; read only when such a history replays."""
    protocol: int = 0
    """The run protocol of a history recorded without the `worker-resolves-release` marker, read
    from the flags its starter set then (`policy_gate`, `kill_switch_check`, `admit_in_first_call`).
    Ignored for every run started since."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_flags(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(k in data for k in ("policy_gate", "kill_switch_check", "admit_in_first_call")):
            data = dict(data)
            gate, switch, first = (bool(data.pop(k, False)) for k in ("policy_gate", "kill_switch_check", "admit_in_first_call"))
            data.setdefault("protocol", 3 if first else 2 if switch else 1 if gate else 0)
        return data

    @field_validator("agent")
    @classmethod
    def _agent(cls, v: str) -> str:
        if v and not AGENT_NAME.fullmatch(v):
            raise ValueError("must be an agent name: lowercase letters, digits and dashes, starting with a letter")
        return v

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if not TENANT.fullmatch(v):
            raise ValueError("must be 1-63 lowercase letters, digits, '.', '_' or '-'")
        return v

    @field_validator("run_key")
    @classmethod
    def _run_key(cls, v: str) -> str:
        if not RUN_KEY.fullmatch(v):
            raise ValueError("must be 1-128 letters, digits, '.', '_', ':' or '-'")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for key, value in v.items():
            if not LABEL_KEY.match(key):
                raise ValueError(f"label {key!r}: keys are 1-63 lowercase letters, digits, '.', '_' or '-'")
            if len(value) > 256:
                raise ValueError(f"label {key!r}: values are at most 256 characters")
        return v

    @model_validator(mode="after")
    def _names_an_agent(self) -> "AgentRunInput":
        if not self.agent and self.release is None:
            raise ValueError("agent: required (the agent to run)")
        return self

    @property
    def agent_name(self) -> str:
        return self.agent or (self.release.spec.name if self.release else "")

    @property
    def workflow_id(self) -> str:
        return run_workflow_id(self.agent_name, self.tenant, self.run_key)


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
