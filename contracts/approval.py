"""Approval contracts: requests, decisions and refusals of a run.

Workflow-safe data; the rules that decide who may approve are in
`policies.approvals`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from contracts.policy import ApprovalSpec, Calendar
from contracts.signing import Signature


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalRequest(BaseModel):
    id: str
    """`<step>.<call index>` within the run."""
    tool: str
    arguments: dict[str, Any]
    rule_id: str
    reason: str
    approval: ApprovalSpec
    requester: str
    tenant: str
    requested_at: datetime
    tier: int = 0
    deadline: datetime
    status: RequestStatus = RequestStatus.PENDING
    decided_by: str | None = None
    note: str | None = None
    decided_at: datetime | None = None
    escalations: list[str] = Field(default_factory=list)
    """Groups the request escalated to, in order."""

    @property
    def group(self) -> str:
        return self.approval.chain[self.tier].group

    @property
    def terminal(self) -> bool:
        return self.status is not RequestStatus.PENDING


class DecisionAnswer(BaseModel):
    """What an approver gets back, synchronously on the update and recorded for signals."""

    accepted: bool
    request_id: str | None
    status: RequestStatus | None
    reason: str
    duplicate: bool = False
    """True when the same person's same decision arrived again: counted once."""


class Refusal(BaseModel):
    """A decision attempt that did not count, kept for the audit trail."""

    request_id: str | None
    person: str
    verdict: Verdict
    reason: str
    at: datetime


class ApprovalLedger(BaseModel):
    """Every approval request of a run and every decision attempt that did not count."""

    requests: list[ApprovalRequest] = Field(default_factory=list)
    refusals: list[Refusal] = Field(default_factory=list)


class ApprovalDecision(BaseModel):
    """Payload of the `approve` / `reject` signals and the `decide_approval` update."""

    approver: str
    """Person id from the approver directory."""
    note: str | None = None
    """Why; required to reject."""
    request_id: str | None = None
    """Which request (default: the one pending now)."""
    verdict: Verdict = Verdict.APPROVE
    """Only read by the update; the signal name gives the verdict."""
    signature: Signature | None = None
    """Proof that `approver` made this decision (`contracts.signing`); runs refuse unsigned ones
    unless the directory says `require_signatures: false`."""


class BusinessDeadlineInput(BaseModel):
    """Input of `compute_business_deadline`: when a business-clock tier's SLA starts and how long it is."""

    calendar: Calendar
    """The tier group's working hours, from the run's pinned directory."""
    start: datetime
    """When the SLA starts running (the run's `workflow.now()`), UTC."""
    sla: timedelta
    """Working time the tier has."""


class BusinessDeadlineResult(BaseModel):
    deadline: datetime
    """When the SLA runs out, UTC; recorded in history so a replay never recomputes it."""
