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

from activities.audit.store import AuditAnchor, AuditCursor, AuditJob, AuditRecordRow, AuditRun, AuditWitnessed, utcnow
from activities.audit.summary import RunSummary, summarise
from activities.audit.verify import Problem, check_run, check_summary
from activities.db import engine_for
from activities.keys import KeyRing
from contracts.audit import Decision, RecordKind

log = logging.getLogger("aifactory.audit")

#: Columns of a call row, in the order the CLI prints them.
CALL_COLUMNS = (
    "at", "agent", "agent_version", "tenant", "run", "step", "tool", "arguments", "outcome", "decision",
    "approved_by", "rule", "policy", "policy_sha256", "prompt_sha256", "requester", "seq", "verified",
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


def find_calls(db_url: str, f: CallFilter, ring: KeyRing | None = None) -> list[dict[str, Any]]:
    """Tool calls of an agent, oldest first, with the versions and the person behind each.

    Only verified values are printed: the run's agent, tenant, versions and requester come from its
    chained records, not from the summary row an insider could edit, and a run is matched on those.
    With the audit key ring, each run's chain is verified too and the rows say whether it held
    (`verified`); a run whose chain does not verify is still listed, marked, never silently dropped.
    """
    q = select(AuditRecordRow).where(AuditRecordRow.kind == RecordKind.TOOL_CALL.value)
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
    runs: dict[int, VerifiedRun | None] = {}
    with Session(engine_for(db_url)) as s:
        for row in s.exec(q):
            if row.run_pk not in runs:
                runs[row.run_pk] = verified_run(s, row.run_pk, ring)
            vr = runs[row.run_pk]
            if vr is None or vr.summary.agent != f.agent or (f.tenant and vr.summary.tenant != f.tenant):
                continue
            body = json.loads(row.body)
            sm = vr.summary
            out.append(
                {
                    "at": body["at"], "agent": sm.agent, "agent_version": sm.agent_version, "tenant": sm.tenant,
                    "run": vr.run.workflow_id, "step": body.get("step"), "tool": body.get("tool"), "arguments": body.get("arguments"),
                    "outcome": body.get("outcome"), "decision": body.get("decision"), "approved_by": body.get("person"),
                    "rule": body.get("rule_id"), "policy": body.get("policy"), "policy_sha256": body.get("policy_sha256"),
                    "prompt_sha256": sm.prompt_sha256, "requester": sm.requester, "seq": row.seq,
                    "verified": None if ring is None else vr.problem is None,
                }
            )  # fmt: skip
    return out


@dataclass
class VerifiedRun:
    """A run's story as its records tell it, and whether its chain held."""

    run: AuditRun
    records: list[dict[str, Any]]
    summary: RunSummary
    problem: Problem | None
    """The first thing that does not verify (None: verified, or not checked without the key ring)."""


def verified_run(s: Session, run_pk: int, ring: KeyRing | None) -> VerifiedRun | None:
    run = s.get(AuditRun, run_pk)
    if run is None:
        return None
    rows = list(s.exec(select(AuditRecordRow).where(AuditRecordRow.run_pk == run_pk).order_by(col(AuditRecordRow.seq), col(AuditRecordRow.id))))
    records = [{"seq": r.seq, **json.loads(r.body)} for r in rows]
    problem = None
    if ring is not None:
        anchors = list(s.exec(select(AuditAnchor).where(AuditAnchor.run_pk == run_pk).order_by(col(AuditAnchor.seq))))
        problem = check_run(run, rows, anchors, ring) or check_summary(run, rows)
    s.expunge(run)
    return VerifiedRun(run, records, summarise(records), problem)


def verified_story(db_url: str, workflow_id: str, ring: KeyRing | None) -> VerifiedRun | None:
    """The newest run with this workflow id, as its records tell it (None if not exported)."""
    with Session(engine_for(db_url)) as s:
        run = s.exec(select(AuditRun).where(AuditRun.workflow_id == workflow_id).order_by(col(AuditRun.started_at).desc())).first()
        return verified_run(s, run.id, ring) if run is not None else None


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


@dataclass(frozen=True)
class Retired:
    """A run the retention job deleted, with the head its story ended at (for the witness)."""

    workflow_id: str
    first_execution: str
    head_seq: int
    head_hash: str
    job_id: int


def enforce_retention(db_url: str, days: int, *, by: str = "retention") -> list[str]:
    """Delete closed runs whose last record is older than `days`; log and record each."""
    return [r.workflow_id for r in retire_runs(db_url, days, by=by)]


def retire_runs(db_url: str, days: int, *, by: str = "retention") -> list[Retired]:
    """`enforce_retention`, returning each deleted run's last head, so the witness can be told."""
    cutoff = utcnow() - timedelta(days=days)
    retired: list[Retired] = []
    with Session(engine_for(db_url)) as s:
        job = AuditJob(kind="retention", started_at=utcnow(), by=by)
        s.add(job)
        s.flush()
        runs = list(s.exec(select(AuditRun).where(col(AuditRun.closed_at).is_not(None), col(AuditRun.closed_at) < cutoff)))
        for run in runs:
            n = s.exec(select(func.count()).select_from(AuditRecordRow).where(AuditRecordRow.run_pk == run.id)).one()
            log.info("audit retention: deleting run %s (closed %s, %d records), older than %d days", run.workflow_id, run.closed_at, n, days)
            anchors = select(AuditAnchor.id).where(AuditAnchor.run_pk == run.id)
            s.exec(delete(AuditWitnessed).where(col(AuditWitnessed.anchor_id).in_(anchors)))  # type: ignore[arg-type]
            for table in (AuditRecordRow, AuditAnchor, AuditCursor):
                s.exec(delete(table).where(table.run_pk == run.id))  # type: ignore[arg-type]
            s.delete(run)
            retired.append(Retired(run.workflow_id, run.first_execution, run.head_seq, run.head_hash, job.id or 0))
            job.records += n
        deleted = [r.workflow_id for r in retired]
        job.runs, job.finished_at = len(deleted), utcnow()
        job.detail = json.dumps({"retention_days": days, "cutoff": cutoff.isoformat(), "deleted": deleted})[:100000]
        s.add(job)
        s.commit()
    return retired
