"""The agent spec: what every agent must declare to be admitted to the factory.

Workflow-safe. The spec is data (`agents/<name>/agent.yaml` + `prompt.md` +
`runbook.md`); the loader, the admission gate and the worker's registry of
releases live in `activities.releases`. Field docstrings are the reference documentation and
become the JSON schema descriptions.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.policy import Autonomy

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
)
AGENT_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
EMAIL_OR_CHANNEL = re.compile(r"^(\S+@\S+\.\S+|#[\w.-]+|https?://\S+)$")

#: `rollback_to` value for a first release: roll back by taking the agent out of service.
WITHDRAW = "withdraw"


def semver_key(version: str) -> tuple[int, int, int]:
    """The (major, minor, patch) of a semantic version, for ordering."""
    m = SEMVER.fullmatch(version)
    if not m:
        raise ValueError(f"not a semantic version: {version!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Owner(_Strict):
    """The named person who answers for the agent."""

    name: str = Field(min_length=3)
    """Full name of the accountable person (not a team alias)."""
    contact: str
    """Where to reach them: an email address, a chat channel (`#team-x`) or a URL."""

    @field_validator("name")
    @classmethod
    def _named_person(cls, v: str) -> str:
        if len(v.split()) < 2:
            raise ValueError("must be a named person: first and last name")
        return v

    @field_validator("contact")
    @classmethod
    def _reachable(cls, v: str) -> str:
        if not EMAIL_OR_CHANNEL.fullmatch(v):
            raise ValueError("must be an email address, a #channel or an http(s) URL")
        return v


class ModelSettings(_Strict):
    """Which model the agent talks to and how."""

    name: str = Field(min_length=1)
    """Model name as the endpoint knows it (for example `gpt-4o-mini`, `qwen2.5-coder`)."""
    endpoint: str = Field(default="default", pattern=r"^[a-z][a-z0-9_]*$")
    """Endpoint profile; its URL and key come from the worker's environment
    (`AIFACTORY_ENDPOINT_<PROFILE>_BASE_URL`, `..._API_KEY`), never from the spec."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature; 0 for repeatable behaviour."""
    max_tokens: int = Field(default=512, ge=1, le=32768)
    """Upper bound on tokens generated per model call."""
    timeout_seconds: float = Field(default=60.0, gt=0, le=900)
    """How long one model call may take before Temporal retries it."""


class SLO(_Strict):
    """Service level objective the agent is operated against."""

    latency_p95_seconds: float = Field(gt=0)
    """95th percentile of run duration, start to result, in seconds."""
    success_rate: float = Field(gt=0, le=1)
    """Fraction of runs that must end with a valid result (for example 0.98)."""


class Breakers(_Strict):
    """Circuit breakers: each trip ends the run with a named failure that says why."""

    max_repeated_calls: int = Field(default=3, ge=1, le=100)
    """How often one tool may run with the same arguments in one run; the next identical call is
    not run and the run ends with `RepeatedToolCall`."""
    max_context_tokens: int = Field(default=24000, ge=256, le=2_000_000)
    """Ceiling on the prompt of one model call, in tokens. Once a call's prompt reaches it, the run
    ends with `ContextLimitExceeded` instead of making another call (overshoot: that one call)."""


class Routing(_Strict):
    """Cost-aware routing across `model_tiers` (the spec's `model` is the first, cheapest tier)."""

    escalate_on_invalid_output: bool = True
    """A final answer that fails validation is repaired on the next (larger) tier."""
    economise_at: float | None = Field(default=0.8, gt=0, le=1)
    """Once this share of the cost envelope is spent, calls go to the first (cheapest) tier;
    None keeps the tier a run has reached."""


class Envelope(_Strict):
    """The agent's cost envelope per period, kept in a ledger shared by every worker."""

    limit_usd: float = Field(gt=0)
    """What the agent may spend per period, in US dollars."""
    period: Literal["day", "month"] = "day"
    """The period the envelope renews on (UTC)."""
    per: Literal["tenant", "global"] = "tenant"
    """One envelope per tenant, or one for all tenants together."""
    on_exhausted: Literal["pause", "stop"] = "pause"
    """What runs in flight do when it is spent: wait for an operator (`aifactory envelope raise`
    or `stop`), or end at once with `BudgetExceeded`. New runs are refused either way."""

    def tenant_of(self, tenant: str) -> str:
        """The ledger's tenant for a run of `tenant`: itself, or `*` for a global envelope."""
        return tenant if self.per == "tenant" else "*"

    def key(self, agent: str, tenant: str, day: date) -> str:
        """The ledger key of the period `day` falls in: `agent|tenant|2026-11-21` (or `|2026-11`)."""
        period = day.isoformat() if self.period == "day" else day.isoformat()[:7]
        return f"{agent}|{self.tenant_of(tenant)}|{period}"


class AgentSpec(_Strict):
    """An agent, as admitted to the factory. Every field is part of the deployment standard."""

    name: str
    """Agent name: lowercase letters, digits and dashes; also the folder name."""
    version: str
    """Semantic version of this agent (`MAJOR.MINOR.PATCH`)."""
    owner: Owner
    """The named person accountable for this agent."""
    description: str = Field(min_length=10)
    """What the agent does, in a sentence or two."""
    business_function: str = Field(min_length=2)
    """The business function it serves (for example `IT service desk`)."""
    input_schema: dict[str, Any]
    """JSON Schema of the run input; business systems are held to it at start."""
    output_schema: dict[str, Any]
    """JSON Schema the final answer must satisfy."""
    model: ModelSettings
    """Model settings."""
    tools: list[str] = Field(default_factory=list)
    """Tools the agent may call (least privilege: nothing else is offered or run)."""
    required_tools: list[str] = Field(default_factory=list)
    """Tools every run calls, in this order, before its final answer (a procedure). The workflow
    asks the model for each in turn with a forced tool choice, then for the final answer as JSON
    matching the output schema: small models follow a procedure far more reliably this way than
    with a free choice. A call that was denied or failed counts as done; invalid arguments do not."""
    required_per_item: dict[str, str] = Field(default_factory=dict)
    """Required tools called once per item of an array in the run input: tool name -> input field
    (for example `{ocr_document: invoices}`: one call per invoice document). Consecutive required
    tools that name the same field are asked for item by item (`ocr`, `extract` for the first
    invoice, then for the second, ...). A tool not named here is required once."""
    answer_tool: str | None = None
    """A tool whose result is the run's final answer: when a call of it succeeds and its result
    validates against `output_schema`, the run completes with it and the model writes no answer
    (for answers that are bookkeeping over tool results, which a small model copies badly).
    Otherwise the model answers as usual."""
    step_limit: int = Field(ge=1, le=1000)
    """Maximum model turns in one run; stops reasoning loops."""
    cost_limit_usd: float = Field(ge=0)
    """Hard cap on model cost per run, in US dollars."""
    model_tiers: list[ModelSettings] = Field(default_factory=list)
    """Larger models to escalate to, in order, after `model` (small first)."""
    routing: Routing = Field(default_factory=Routing)
    """When a run moves between `model` and `model_tiers`."""
    breakers: Breakers = Field(default_factory=Breakers)
    """Circuit breakers besides the step limit and the cost cap."""
    envelope: Envelope | None = None
    """Cost envelope per period, with alerts at 50, 80 and 100%."""
    slo: SLO
    """Service level objective."""
    escalation_contact: str
    """Who is called when the agent misbehaves or its SLO is breached."""
    runbook: str
    """Path of the runbook, relative to the agent folder (usually `runbook.md`)."""
    rollback_to: str
    """Version to roll back to, or `withdraw` for a first release."""
    task_queue: str = "aifactory-agents"
    """Task queue whose workers run this agent."""
    autonomy: Autonomy = Autonomy.SUPERVISED
    """How far it may act without a person; new agents are supervised (human in the loop)."""
    policy: str = "default"
    """Policy bundle (`policies/bundles/<policy>.yaml`) that gates its tool calls."""
    clear_payloads: bool = False
    """Whether runs of this agent may be started, and decided on, with clear-text payloads.
    Off by default: a worker with a key ring fails a clear-text start with `PayloadNotEncrypted`.
    The admission gate allows it only for agents whose tools touch none of the data classes
    that need encryption (pii, financial, health, credentials)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not AGENT_NAME.fullmatch(v):
            raise ValueError("must be lowercase letters, digits and dashes, starting with a letter")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not SEMVER.fullmatch(v) or "+" in v:
            raise ValueError("must be a semantic version MAJOR.MINOR.PATCH")
        return v

    @field_validator("rollback_to")
    @classmethod
    def _rollback(cls, v: str) -> str:
        if v != WITHDRAW and not SEMVER.fullmatch(v):
            raise ValueError(f"must be an earlier semantic version or {WITHDRAW!r}")
        return v

    @field_validator("escalation_contact")
    @classmethod
    def _escalation(cls, v: str) -> str:
        if not EMAIL_OR_CHANNEL.fullmatch(v):
            raise ValueError("must be an email address, a #channel or an http(s) URL")
        return v

    @model_validator(mode="after")
    def _per_item(self) -> "AgentSpec":
        for tool, field in self.required_per_item.items():
            if tool not in self.required_tools:
                raise ValueError(f"required_per_item: {tool!r} must also be listed in required_tools")
            if (self.input_schema.get("properties") or {}).get(field, {}).get("type") != "array":
                raise ValueError(f"required_per_item: {tool!r} names {field!r}, which must be an array property of input_schema")
        return self

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _object_schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError('must be a JSON Schema with "type": "object"')
        return v


class PromptRef(_Strict):
    """Which release's prompt a model call sends: the worker looks the text up in its own registry."""

    agent: str
    version: str
    """The spec's semantic version."""
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class PinnedRelease(_Strict):
    """The release a run runs under, as the worker resolved it and history pins it.

    The spec and the prompt's SHA-256; the prompt text stays with the workers (the model
    activity sends it from their registry), so it is not copied into every run's history.
    """

    spec: AgentSpec
    """The admitted spec."""
    prompt_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the prompt text, hex."""

    @property
    def release_version(self) -> str:
        """Semantic version with the prompt hash as build metadata."""
        return f"{self.spec.version}+prompt.{self.prompt_sha256[:12]}"

    @property
    def prompt_ref(self) -> PromptRef:
        return PromptRef(agent=self.spec.name, version=self.spec.version, prompt_sha256=self.prompt_sha256)


class AgentRelease(PinnedRelease):
    """An agent spec bound to the exact prompt it runs with, as loaded from its folder.

    The prompt's SHA-256 is part of the release version (`1.2.0+prompt.<12 hex>`),
    so every run records which prompt it used. Runs recorded before workers resolved
    releases themselves carry one of these in their input.
    """

    prompt: str
    """The system prompt text (`prompt.md`)."""

    def pinned(self) -> PinnedRelease:
        """The release without its prompt text, as a run's history pins it."""
        return PinnedRelease(spec=self.spec, prompt_sha256=self.prompt_sha256)
