"""The audit store's schema (sqlmodel): runs, their records in order, anchors, jobs.

Not workflow-safe (SQL). SQLite embedded, PostgreSQL in production: the URL is
the one `AIFACTORY_DB_URL` setting. The tables:

``audit_run``
    One row per agent run (a workflow id and its first execution, across
    continue-as-new): agent, version (with the prompt hash), policy bundle and
    its hash, tenant, requester, status, outcome, totals, and the chain head.
    A summary derived from the records (`activities.audit.summary`), for queries;
    not itself chained, so `audit verify` recomputes it from the records.
``audit_record``
    The run's story, one row per record, numbered from 1 (``seq``). ``body``
    is the record as canonical JSON; the other columns are copies for queries
    and must agree with it. ``hash`` is HMAC-SHA256 under the audit key
    ``key_id`` over the run, ``seq``, ``prev_hash`` and ``body``: an edit, a
    gap, a swap, an insertion or a forged hash breaks the chain at that row.
``audit_anchor``
    The chain head (``seq``, ``head_hash``) each export left, with its own MAC:
    a truncated tail cannot pass as a complete chain.
``audit_witnessed``
    Which anchors a pass has sent to the witness (`AuditWitnessWorkflow`), whose
    Temporal history keeps the chain heads where a store insider cannot reach.
``audit_cursor``
    How far each execution's history has been exported (``through_event_id``).
``audit_job``
    Every export and retention pass: when, what it did, and (for retention)
    which runs it deleted.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AuditRun(SQLModel, table=True):
    __tablename__ = "audit_run"
    __table_args__ = (UniqueConstraint("workflow_id", "first_execution", name="uq_audit_run"),)
    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(index=True)
    first_execution: str
    agent: str = Field(index=True)
    agent_version: str
    """Semantic version plus the prompt hash (`1.1.0+prompt.<12 hex>`)."""
    prompt_sha256: str
    policy_bundle: str | None = None
    policy_sha256: str | None = None
    tenant: str = Field(index=True)
    run_key: str
    requester: str = ""
    status: str = "running"
    """running, completed, failed, canceled, terminated, timed_out."""
    outcome: str | None = None
    """The failure type of a run that did not complete."""
    started_at: datetime = Field(index=True)
    closed_at: datetime | None = Field(default=None, index=True)
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    tool_calls: int = 0
    denials: int = 0
    head_seq: int = 0
    head_hash: str = ""


class AuditRecordRow(SQLModel, table=True):
    __tablename__ = "audit_record"
    __table_args__ = (UniqueConstraint("run_pk", "seq", name="uq_audit_record_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    run_pk: int = Field(index=True, foreign_key="audit_run.id")
    seq: int
    kind: str = Field(index=True)
    at: datetime = Field(index=True)
    execution: str
    event_id: int
    step: int | None = None
    tool: str | None = Field(default=None, index=True)
    outcome: str | None = None
    decision: str | None = None
    person: str | None = Field(default=None, index=True)
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    idempotency_key: str | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))
    key_id: str
    prev_hash: str
    hash: str


class AuditAnchor(SQLModel, table=True):
    __tablename__ = "audit_anchor"
    id: int | None = Field(default=None, primary_key=True)
    run_pk: int = Field(index=True, foreign_key="audit_run.id")
    seq: int
    head_hash: str
    job_id: int
    at: datetime
    key_id: str
    mac: str


class AuditWitnessed(SQLModel, table=True):
    __tablename__ = "audit_witnessed"
    anchor_id: int = Field(primary_key=True, foreign_key="audit_anchor.id")
    at: datetime


class AuditCursor(SQLModel, table=True):
    __tablename__ = "audit_cursor"
    run_pk: int = Field(primary_key=True, foreign_key="audit_run.id")
    execution: str = Field(primary_key=True, index=True)
    started_at: datetime
    through_event_id: int = 0
    closed: bool = False


class AuditJob(SQLModel, table=True):
    __tablename__ = "audit_job"
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    """export or retention."""
    started_at: datetime
    finished_at: datetime | None = None
    by: str = ""
    runs: int = 0
    records: int = 0
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


#: Columns copied out of the body for queries; verify checks they still agree with it.
COPIED = ("kind", "step", "tool", "outcome", "decision", "person", "model", "input_tokens", "output_tokens", "cost_usd", "idempotency_key")
