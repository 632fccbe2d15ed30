"""The auditor's questions, answered from the audit store.

Not workflow-safe (SQL). `find_calls` answers "did agent A do X on day D, who
approved it, under which policy version and prompt version"; `run_story` gives
one run's records in order; `enforce_retention` deletes runs past the store's
retention and logs each one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, delete, func, select

from activities.audit.store import AuditAnchor, AuditCursor, AuditJob, AuditRecordRow, AuditRun, utcnow
from activities.db import engine_for
from contracts.audit import Decision, RecordKind

log = logging.getLogger("aifactory.audit")

#: Columns of a call row, in the order the CLI prints them.
CALL_COLUMNS = (
    "at", "agent", "agent_version", "tenant", "run", "step", "tool", "arguments", "outcome", "decision",
    "approved_by", "rule", "policy", "policy_sha256", "prompt_sha256", "requester", "seq",
)  # fmt: skip


@dataclass(frozen=True)
class CallFilter:
    agent: str
    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tool: str | None = None
    decision: Decision | None = None
    approver: str | None = None


def find_calls(db_url: str, f: CallFilter) -> list[dict[str, Any]]:
    """Tool calls of an agent, oldest first, with the versions and the person behind each."""
    q = (
        select(AuditRecordRow, AuditRun)
        .join(AuditRun, col(AuditRun.id) == col(AuditRecordRow.run_pk))
        .where(AuditRun.agent == f.agent, AuditRecordRow.kind == RecordKind.TOOL_CALL.value)
    )
    if f.tenant:
        q = q.where(AuditRun.tenant == f.tenant)
    if f.since:
        q = q.where(col(AuditRecordRow.at) >= f.since)
    if f.until:
        q = q.where(col(AuditRecordRow.at) < f.until)
    if f.tool:
        q = q.where(AuditRecordRow.tool == f.tool)
    if f.decision:
        q = q.where(AuditRecordRow.decision == f.decision.value)
    if f.approver:
        q = q.where(AuditRecordRow.person == f.approver)
    q = q.order_by(col(AuditRecordRow.at), col(AuditRecordRow.run_pk), col(AuditRecordRow.seq))
    out = []
    with Session(engine_for(db_url)) as s:
        for row, run in s.exec(q):
            body = json.loads(row.body)
            out.append(
                {
                    "at": body["at"], "agent": run.agent, "agent_version": run.agent_version, "tenant": run.tenant,
                    "run": run.workflow_id, "step": row.step, "tool": row.tool, "arguments": body.get("arguments"),
                    "outcome": row.outcome, "decision": row.decision, "approved_by": row.person,
                    "rule": body.get("rule_id"), "policy": body.get("policy"), "policy_sha256": body.get("policy_sha256"),
                    "prompt_sha256": run.prompt_sha256, "requester": run.requester, "seq": row.seq,
                }
            )  # fmt: skip
    return out


def run_story(db_url: str, workflow_id: str) -> tuple[AuditRun, list[dict[str, Any]]] | None:
    """The newest run with this workflow id and its records in order (None if not exported)."""
    with Session(engine_for(db_url)) as s:
        run = s.exec(select(AuditRun).where(AuditRun.workflow_id == workflow_id).order_by(col(AuditRun.started_at).desc())).first()
        if run is None:
            return None
        rows = s.exec(select(AuditRecordRow).where(AuditRecordRow.run_pk == run.id).order_by(col(AuditRecordRow.seq)))
        records = [{"seq": r.seq, **json.loads(r.body)} for r in rows]
        s.expunge(run)
        return run, records


def enforce_retention(db_url: str, days: int, *, by: str = "retention") -> list[str]:
    """Delete closed runs whose last record is older than `days`; log and record each."""
    cutoff = utcnow() - timedelta(days=days)
    deleted: list[str] = []
    with Session(engine_for(db_url)) as s:
        job = AuditJob(kind="retention", started_at=utcnow(), by=by)
        runs = list(s.exec(select(AuditRun).where(col(AuditRun.closed_at).is_not(None), col(AuditRun.closed_at) < cutoff)))
        for run in runs:
            n = s.exec(select(func.count()).select_from(AuditRecordRow).where(AuditRecordRow.run_pk == run.id)).one()
            log.info("audit retention: deleting run %s (closed %s, %d records), older than %d days", run.workflow_id, run.closed_at, n, days)
            for table in (AuditRecordRow, AuditAnchor, AuditCursor):
                s.exec(delete(table).where(table.run_pk == run.id))  # type: ignore[arg-type]
            s.delete(run)
            deleted.append(run.workflow_id)
            job.records += n
        job.runs, job.finished_at = len(deleted), utcnow()
        job.detail = json.dumps({"retention_days": days, "cutoff": cutoff.isoformat(), "deleted": deleted})[:100000]
        s.add(job)
        s.commit()
    return deleted
