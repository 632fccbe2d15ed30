"""What the gateway's endpoints take and answer, as pydantic models.

Not workflow-safe (imports nothing that does I/O, but belongs to the face).
Field docstrings become the descriptions in the OpenAPI document. Request
bodies refuse unknown fields, so a typo (`runKey`) is named instead of ignored.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from contracts.approval import ApprovalRequest, RequestStatus, Verdict
from contracts.run import RUN_KEY, TENANT, AgentRunResult, RunStatus

REQUEST_ID = re.compile(r"^\d{1,6}\.\d{1,4}$")
TICKET = {"ticket_text": "The VPN drops every ten minutes since this morning.", "requester_email": "ana.silva@example.com"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class _Answer(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


def tenant_problem(value: str) -> str | None:
    return None if TENANT.fullmatch(value) else "must be 1-63 lowercase letters, digits, '.', '_' or '-'"


def run_key_problem(value: str) -> str | None:
    return None if RUN_KEY.fullmatch(value) else "must be 1-128 letters, digits, '.', '_', ':' or '-'"


class StartRun(_Body):
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"tenant": "acme", "run_key": "T-1001", "input": TICKET, "labels": {"source": "servicenow"}}]},
    )  # fmt: skip

    tenant: str
    """The tenant the run belongs to; the caller's key or token must cover it."""
    run_key: str | None = None
    """The run's business key within the tenant (ticket number, order id). Starting the same key
    again returns the first run. Absent: the `Idempotency-Key` header is the run key."""
    input: dict[str, Any]
    """The business input, checked against the agent's input schema before anything starts."""
    version: str | None = Field(default=None, max_length=100)
    """Pin a release (`1.3.0`, or `1.3.0+prompt.<12 hex>`); default: the factory's current one."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Your labels for the run (source system, ticket url, ...), kept in its audit story."""
    requester: str = Field(default="", max_length=200)
    """Who asked for the run, for a system's key (the employee behind a ticket); that person may not
    approve it. A key or token that acts for a person starts runs as that person."""

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        if problem := tenant_problem(v):
            raise ValueError(problem)
        return v

    @field_validator("run_key")
    @classmethod
    def _run_key(cls, v: str | None) -> str | None:
        if v is not None and (problem := run_key_problem(v)):
            raise ValueError(problem)
        return v


class Links(_Answer):
    run: str
    """Where to read the run: `GET` it."""
    decisions: str
    """Where to approve or reject what the run waits for: `POST` a decision."""


class RunStarted(_Answer):
    run_id: str
    """The run's id, its business key: `agent/<agent>/<tenant>/<run key>`."""
    started: bool
    """True for a new run (201); false when a run with this business key already existed (200)."""
    agent: str
    tenant: str
    run_key: str
    links: Links


class Phase(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"


class Failure(_Answer):
    type: str
    """The typed failure (`PolicyDenied`, `BudgetExceeded`, `ApprovalExpired`, ...; README "Runs"), or
    `Terminated` / `Canceled` when an operator ended the run."""
    message: str


class RunView(_Answer):
    run_id: str
    agent: str
    tenant: str
    run_key: str
    status: Phase
    """Where the run is: `running` until it ends."""
    progress: RunStatus | None = None
    """While it runs: the run's `status` query (state, step, tokens, cost, what it waits on, the
    approval it is parked on). Null if the run did not answer in time."""
    result: AgentRunResult | None = None
    """When completed: the validated output and how it was reached, decoded."""
    failure: Failure | None = None
    """When it ended without a result."""
    links: Links


class PendingDecision(_Answer):
    run_id: str
    agent: str
    tenant: str
    request: ApprovalRequest
    """What the run asks to do (tool, arguments), under which rule, of which group, and by when."""
    links: Links


class PendingDecisions(_Answer):
    approvals: list[PendingDecision]
    """Runs waiting for a person, in the caller's scope, the nearest deadline first."""


class Decide(_Body):
    model_config = ConfigDict(
        extra="forbid", use_attribute_docstrings=True,
        json_schema_extra={"examples": [{"verdict": "approve", "note": "confirmed with the site"}]},
    )  # fmt: skip

    verdict: Verdict
    note: str | None = Field(default=None, max_length=2000, validate_default=True)
    """Why; required to reject."""
    request_id: str | None = None
    """Which request (`<step>.<call>`, as listed); default: the one pending now."""

    @field_validator("note")
    @classmethod
    def _note(cls, v: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("verdict") is Verdict.REJECT and not (v or "").strip():
            raise ValueError("a rejection needs a note saying why")
        return v

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, v: str | None) -> str | None:
        if v is not None and not REQUEST_ID.fullmatch(v):
            raise ValueError("must be a request id such as '2.0' (`<step>.<call>`, as GET /v1/approvals lists it)")
        return v


class Decision(_Answer):
    run_id: str
    person: str
    """Who the decision was made as: the person of the caller's key or token."""
    accepted: bool
    request_id: str | None
    status: RequestStatus | None
    reason: str
    duplicate: bool = False
    """True when the same person's same decision arrived again: it counted once."""


class ErrorBody(_Answer):
    error: str
    """One sentence saying what is wrong."""
    type: str
    """The kind of refusal: `InvalidRequest`, `Unauthenticated`, `Forbidden`, `NotFound`, `RunInputRejected`,
    `AgentNotFound`, `AgentNotAdmitted`, `RunRefused`, `ApprovalRefused`, `Unavailable`, ..."""
    problems: list[str] = Field(default_factory=list)
    """One sentence per problem, naming the field, parameter or header."""


class Health(_Answer):
    status: Literal["ok"] = "ok"
