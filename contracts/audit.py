"""Audit records: one run's story in order, as the audit store keeps it.

Workflow-safe: models only. Records are derived from workflow history by the
audit export (`activities.audit`), never written by the workflow itself.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from contracts.wire import Workflow


class RecordKind(StrEnum):
    RUN_STARTED = "run_started"
    RUN_ADMITTED = "run_admitted"
    """The worker resolved the run's release and policy (or refused it): what governs the run."""
    RUN_CONTINUED = "run_continued"
    """The run continued as new: same run, a fresh history."""
    MODEL_CALL = "model_call"
    TOOL_CALL = "tool_call"
    """A tool call the model asked for, with the policy decision and what became of it."""
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_ESCALATED = "approval_escalated"
    APPROVAL_ATTEMPT = "approval_attempt"
    """Somebody approved or rejected through a signal or an update (accepted or not)."""
    APPROVAL_REFUSED = "approval_refused"
    """A decision from somebody not entitled to make it."""
    APPROVAL_DECIDED = "approval_decided"
    APPROVAL_EXPIRED = "approval_expired"
    BUDGET_EXCEEDED = "budget_exceeded"
    KILLED = "killed"
    """A kill switch's stop order reached the run (person: the operator; detail: the switch and reason)."""
    BUDGET_DECISION = "budget_decision"
    """An operator resumed or stopped a run paused on its spent cost envelope."""
    TOOL_STUCK = "tool_stuck"
    """A write or external tool ran out of retries: the run waits for an operator (tool, error)."""
    TOOL_RESOLVED = "tool_resolved"
    """An operator retried a stuck call or gave it up (person, outcome retry or give_up, note the reason)."""
    MESSAGE_REFUSED = "message_refused"
    """A signal or update the run could not read or does not take (a stop or budget order, an unknown name)."""
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELED = "run_canceled"
    RUN_TERMINATED = "run_terminated"
    RUN_TIMED_OUT = "run_timed_out"


CLOSING_KINDS = frozenset(
    {RecordKind.RUN_COMPLETED, RecordKind.RUN_FAILED, RecordKind.RUN_CANCELED, RecordKind.RUN_TERMINATED, RecordKind.RUN_TIMED_OUT}
)


class Decision(StrEnum):
    """The policy gate's outcome for a tool call, as an auditor asks for it."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVAL = "approval"
    """Allowed only once a person approved (or refused: see the outcome)."""


class AuditRecord(BaseModel):
    """One entry of a run's story. Fields that do not apply to a kind stay None."""

    kind: RecordKind
    at: datetime
    """When history recorded it (the server's clock)."""
    execution: str
    """Temporal run id of the history it came from (several after continue-as-new)."""
    event_id: int
    """The history event that completed it."""
    step: int | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: int | None = None
    """Scheduled to closed, retries included."""
    attempts: int | None = None
    tool: str | None = None
    arguments: Any = None
    result: Any = None
    idempotency_key: str | None = None
    outcome: str | None = None
    """ok / failed / denied / invalid_arguments / ... for calls; verdicts and failure types elsewhere."""
    decision: Decision | None = None
    rule_id: str | None = None
    policy: str | None = None
    """`name@version` of the policy bundle that decided."""
    policy_sha256: str | None = None
    person: str | None = None
    """Who: approver, requester, or the operator who stopped the run."""
    group: str | None = None
    note: str | None = None
    request_id: str | None = None
    """Approval request id (step.call)."""
    detail: str | None = None
    """Free text: error messages, reasons, channel."""
    agent: str | None = None
    """run_started, run_admitted: the agent asked for, and the one admitted."""
    version: str | None = None
    """run_admitted (and runs started with their release): the release version with its prompt hash."""
    prompt_sha256: str | None = None
    """run_admitted: the pinned prompt's hash; model_call: the hash of the prompt the call actually sent."""
    tenant: str | None = None
    """run_started: the tenant the run belongs to."""
    run_key: str | None = None
    """run_started: the run's business key within the tenant."""
    signer: str | None = None
    """Decisions: whose key signed it (the person, or a service acting for them); None when unsigned."""


#: The workflow type that keeps the chain heads (`workflows.audit_witness`); one workflow per store and UTC day.
WITNESS_WORKFLOW = Workflow.AUDIT_WITNESS
WITNESS_PREFIX = "aifactory-audit-witness/"


def witness_id(scope: str, day: str) -> str:
    """The witness workflow of one audit store (`scope`, derived from its audit key) for a UTC day."""
    return f"{WITNESS_PREFIX}{scope}/{day}"


class WitnessEntry(BaseModel):
    """One run's chain head, as an export pass left it, MACed under the audit key."""

    workflow_id: str
    first_execution: str
    seq: int
    head_hash: str
    closed: bool
    """The run had closed: this head is its last."""
    retired: bool = False
    """The run was deleted by the store's retention job (its story ended at this head)."""
    job_id: int
    at: datetime
    key_id: str
    mac: str


class WitnessBatch(BaseModel):
    """What one export pass tells the witness: every head it anchored (and any not yet witnessed)."""

    entries: list[WitnessEntry]


class AuditPassInput(BaseModel):
    """One export pass (and, optionally, the retention job)."""

    overlap_minutes: int = 10
    """Re-read runs closed this long before the previous pass started (export is idempotent)."""
    enforce_retention: bool = True


class AuditPassResult(BaseModel):
    job_id: int
    runs_changed: int
    records: int
    errors: list[str] = []
    deleted_runs: int = 0
    queues_without_workers: dict[str, int] = {}
    """Task queues with running agent runs and no worker polling them: how many runs wait on each."""
